//! `a3s-box kbs`: the key broker service, its client and admin commands.

pub(crate) mod args;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use a3s_attestation::hw::{Attester, HardwareAttester};
use a3s_attestation::kds::{CertSource, KdsCache, KdsClient, DEFAULT_BASE_URL};
use a3s_attestation::Product;
use a3s_kbs::client::{AdminClient, AdminPolicy, ClientError, Credential, KbsClient};
use a3s_kbs::jwe::{TeeKeyKind, TeeKeyPair};
use a3s_kbs::policy::{self, PolicyKind};
use a3s_kbs::protocol::ResourcePath;
use a3s_kbs::storage::{EncryptedStorage, Kek, PostgresStorage, SqliteStorage, Storage};
use a3s_kbs::verifier::EvidenceVerifier;
use a3s_kbs::{AdminAuth, AppState, Config, Limits};
use a3s_runtime::A3sHome;
use a3s_simulator::{GuestContext, SimAttester, Simulator};
use anyhow::Context;

use self::args::{
    AdminArgs, AdminTokenArgs, GetArgs, KbsCommand, PolicyCommand, PolicyKindArg,
    ReferenceValueCommand, ResourceCommand, ServeArgs, TeeKeyArg, UrlArgs,
};
use crate::commands::report::hex_padded;
use crate::{usage_error, ExitStatus};

/// Runs `a3s-box kbs ...`.
pub(crate) fn run(command: KbsCommand) -> anyhow::Result<ExitStatus> {
    match command {
        KbsCommand::Serve(args) => serve(&args),
        KbsCommand::AdminToken(args) => admin_token(&args),
        KbsCommand::Get(args) => get(&args),
        KbsCommand::Resource(ResourceCommand::Set {
            admin,
            resource,
            file,
        }) => {
            let path = resource_path(&resource)?;
            let bytes =
                crate::input::read_limited(&file, crate::input::SECRET_MAX_BYTES, "secret file")?;
            admin_client(&admin)?.set_resource(&path, &bytes)?;
            eprintln!("stored {path} ({} bytes)", bytes.len());
            Ok(ExitStatus::Success)
        }
        KbsCommand::Resource(ResourceCommand::Rm { admin, resource }) => {
            let path = resource_path(&resource)?;
            admin_client(&admin)?.delete_resource(&path)?;
            eprintln!("removed {path}");
            Ok(ExitStatus::Success)
        }
        KbsCommand::Policy(PolicyCommand::Set {
            admin,
            kind,
            file,
            builtin,
        }) => {
            let (kind, admin_kind) = match kind {
                PolicyKindArg::Attestation => (PolicyKind::Attestation, AdminPolicy::Attestation),
                PolicyKindArg::Resource => (PolicyKind::Resource, AdminPolicy::Resource),
            };
            let rego = match (&file, &builtin) {
                (Some(f), _) => {
                    crate::input::read_text_limited(f, crate::input::TEXT_MAX_BYTES, "policy")?
                }
                (None, Some(name)) => policy::builtin(kind, name)
                    .ok_or_else(|| {
                        usage_error(anyhow::anyhow!(
                            "no built-in {kind:?} policy {name:?} (attestation: default, allow-all; resource: default, allow-all, deny-all)"
                        ))
                    })?
                    .to_owned(),
                (None, None) => unreachable!("clap requires --file or --builtin"),
            };
            policy::check_kind(kind, &rego)
                .with_context(|| "the policy cannot be used".to_string())
                .map_err(usage_error)?;
            admin_client(&admin)?.set_policy(admin_kind, &rego)?;
            eprintln!("set the {kind:?} policy");
            Ok(ExitStatus::Success)
        }
        KbsCommand::ReferenceValue(ReferenceValueCommand::Set { admin, name, value }) => {
            let value: serde_json::Value = serde_json::from_str(&value)
                .with_context(|| {
                    format!("{value:?} is not JSON (quote strings, e.g. '[\"ab..\"]')")
                })
                .map_err(usage_error)?;
            let mut map = serde_json::Map::new();
            map.insert(name.clone(), value);
            admin_client(&admin)?.set_reference_values(&map)?;
            eprintln!("set reference value {name}");
            Ok(ExitStatus::Success)
        }
        KbsCommand::ReferenceValue(ReferenceValueCommand::Add {
            admin,
            name,
            from_image,
            launch,
            value,
        }) => {
            let item = list_item(from_image.as_deref(), &launch, value.as_deref())?;
            let list = admin_client(&admin)?.add_reference_value(&name, &item)?;
            eprintln!("added {item} to {name}");
            println!("{list}");
            Ok(ExitStatus::Success)
        }
        KbsCommand::ReferenceValue(ReferenceValueCommand::Remove {
            admin,
            name,
            from_image,
            launch,
            value,
        }) => {
            let item = list_item(from_image.as_deref(), &launch, value.as_deref())?;
            let list = admin_client(&admin)?.remove_reference_value(&name, &item)?;
            eprintln!("removed {item} from {name}");
            println!("{list}");
            Ok(ExitStatus::Success)
        }
        KbsCommand::ReferenceValue(ReferenceValueCommand::List { admin }) => {
            let all = admin_client(&admin)?.reference_values()?;
            println!("{}", serde_json::to_string_pretty(&all)?);
            Ok(ExitStatus::Success)
        }
        KbsCommand::ReferenceValue(ReferenceValueCommand::Get { admin, name }) => {
            let v = admin_client(&admin)?.reference_value(&name)?;
            println!("{v}");
            Ok(ExitStatus::Success)
        }
    }
}

/// The item of `reference-value add|remove`: the predicted launch measurement of
/// `from_image`, else `value` as JSON when it parses (8, true), else as a string.
fn list_item(
    from_image: Option<&str>,
    launch: &crate::commands::measure::LaunchFlags,
    value: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    if let Some(image) = from_image {
        let predicted = launch.predict(image)?;
        eprintln!(
            "{image} ({}) measures {} on this host ({} launch, {} vCPU)",
            predicted.image_digest,
            predicted.measurement,
            if predicted.simulated {
                "simulated"
            } else {
                "SEV-SNP"
            },
            predicted.inputs.vcpus
        );
        return Ok(serde_json::Value::String(predicted.measurement));
    }
    let Some(text) = value else {
        anyhow::bail!("give a VALUE or --from-image IMAGE");
    };
    Ok(serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned())))
}

fn home() -> anyhow::Result<A3sHome> {
    A3sHome::from_env().map_err(|e| usage_error(e.into()))
}

fn resource_path(text: &str) -> anyhow::Result<ResourcePath> {
    text.parse()
        .map_err(|e: a3s_kbs::protocol::InvalidResourcePath| usage_error(e.into()))
}

fn read_ca(url: &UrlArgs) -> anyhow::Result<Option<Vec<u8>>> {
    url.ca
        .as_ref()
        .map(|p| crate::input::read_limited(p, crate::input::CERT_MAX_BYTES, "CA certificate"))
        .transpose()
}

/// Largest key or token file read (PEM keys and JWTs are a few hundred bytes).
const MAX_CREDENTIAL_BYTES: u64 = 64 * 1024;

fn read_small(what: &str, p: &Path) -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(p)
        .and_then(|f| f.take(MAX_CREDENTIAL_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("reading {what} {}", p.display()))
        .map_err(usage_error)?;
    if text.len() as u64 > MAX_CREDENTIAL_BYTES {
        return Err(usage_error(anyhow::anyhow!(
            "{what} {} is larger than {MAX_CREDENTIAL_BYTES} bytes: not a key or token",
            p.display()
        )));
    }
    Ok(text)
}

fn admin_signer(p: &Path) -> anyhow::Result<a3s_kbs::jwt::AdminSigner> {
    a3s_kbs::jwt::AdminSigner::from_pem(&read_small("admin key", p)?)
        .map_err(|e| usage_error(anyhow::anyhow!("admin key {}: {e}", p.display())))
}

fn admin_client(args: &AdminArgs) -> anyhow::Result<AdminClient> {
    let credential = match (&args.admin_key, &args.admin_token_file) {
        (Some(p), _) => Some(Credential::Key(Box::new(admin_signer(p)?))),
        (None, Some(p)) => {
            let token = read_small("admin token file", p)?.trim().to_owned();
            a3s_kbs::jwt::claims_unverified(&token).map_err(|e| {
                usage_error(anyhow::anyhow!("admin token file {}: {e}", p.display()))
            })?;
            Some(Credential::Token(token))
        }
        (None, None) => None,
    };
    let ca = read_ca(&args.url)?;
    AdminClient::with_credential(&args.url.url, credential, ca.as_deref())
        .map_err(|e| usage_error(e.into()))
}

/// `kbs admin-token`: a token file trustee's `kbs-client --admin-token-file` reads too (the
/// compact JWT, no newline).
fn admin_token(args: &AdminTokenArgs) -> anyhow::Result<ExitStatus> {
    if args.ttl == 0 {
        return Err(usage_error(anyhow::anyhow!(
            "--ttl must be at least 1 second"
        )));
    }
    let signer = admin_signer(&args.key)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    let token = signer.admin_token(now, args.ttl);
    match &args.out {
        Some(out) => write_secret(out, token.as_bytes())?,
        None => println!("{token}"),
    }
    Ok(ExitStatus::Success)
}

fn serve(args: &ServeArgs) -> anyhow::Result<ExitStatus> {
    let home = home()?;
    let kek_path = args
        .kek
        .clone()
        .unwrap_or_else(|| home.root().join("kbs/kek"));
    let kek = Kek::load_or_create(&kek_path)?;
    let storage: Arc<dyn Storage> = match args.db.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let db = PostgresStorage::connect(url).context("connecting to PostgreSQL")?;
            Arc::new(EncryptedStorage::new(db, kek)?)
        }
        Some(path) => Arc::new(EncryptedStorage::new(
            SqliteStorage::open(Path::new(path))?,
            kek,
        )?),
        None => Arc::new(EncryptedStorage::new(
            SqliteStorage::open(&home.root().join("kbs/kbs.db"))?,
            kek,
        )?),
    };
    let base = std::env::var(crate::commands::verify::KDS_URL_ENV)
        .ok()
        .filter(|v| !v.is_empty());
    let kds: Arc<dyn CertSource + Send + Sync> = Arc::new(
        KdsClient::new()
            .with_base_url(base.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()))
            .with_cache(KdsCache::new(home.kds_cache()))
            .with_offline(args.offline),
    );
    let mut verifier = EvidenceVerifier::new(Some(kds));
    if args.allow_simulated {
        let sim = Simulator::open_or_create(home.root(), Product::Milan)
            .context("opening this home's simulator")?;
        verifier = verifier.allow_simulated(sim.roots()?);
        eprintln!("warning: --allow-simulated: evidence from this home's simulator is accepted (tokens say simulated)");
    }
    let admin = match (&args.admin_public_key, args.insecure_admin) {
        (Some(p), _) => {
            let pem = read_small("admin public key", p)?;
            AdminAuth::Key {
                key: Box::new(a3s_kbs::jwt::AdminKey::from_pem(&pem).map_err(|e| {
                    usage_error(anyhow::anyhow!("admin public key {}: {e}", p.display()))
                })?),
                max_lifetime_secs: args.admin_token_max_lifetime_secs,
            }
        }
        (None, true) => {
            eprintln!("warning: --insecure-admin: anyone who can reach this KBS can change its resources and policies; use only on a local machine");
            AdminAuth::InsecureAllowAll
        }
        (None, false) => {
            eprintln!("note: no --admin-public-key: admin requests are refused");
            AdminAuth::DenyAll
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            Some(a3s_kbs::serve::tls_config(c, k).map_err(|e| usage_error(e.into()))?)
        }
        _ => None,
    };
    let mut config = Config::new(storage, verifier);
    config.admin = admin;
    config.session_timeout = Duration::from_secs(args.session_timeout_secs);
    config.token_lifetime = Duration::from_secs(args.token_lifetime_secs);
    config.limits = Limits {
        max_body_bytes: args.max_body_bytes,
    };
    let state = AppState::new(config).context("initialising the KBS state")?;
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("KBS listening on {scheme}://{}", listener.local_addr()?);
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        usize::from,
    );
    a3s_kbs::serve::serve_per_core(listener, a3s_kbs::app(state), tls, threads)?;
    Ok(ExitStatus::Success)
}

fn get(args: &GetArgs) -> anyhow::Result<ExitStatus> {
    let path = resource_path(&args.resource)?;
    let kind = match args.tee_key {
        TeeKeyArg::P256 => TeeKeyKind::P256,
        TeeKeyArg::P521 => TeeKeyKind::P521,
        TeeKeyArg::Rsa => TeeKeyKind::Rsa2048,
    };
    let ca = read_ca(&args.url)?;
    let client = KbsClient::with_key(&args.url.url, TeeKeyPair::generate(kind)?, ca.as_deref())
        .map_err(|e| usage_error(e.into()))?;
    let attester: Box<dyn Attester> = if args.simulate {
        let measurement: [u8; 48] = match &args.measurement {
            Some(m) => hex_padded("--measurement", m).map_err(usage_error)?,
            None => [0u8; 48],
        };
        let product: Product = args
            .product
            .unwrap_or(crate::args::ProductArg::Milan)
            .into();
        let home = home()?;
        let sim =
            Simulator::open_or_create(home.root(), product).context("opening the simulator")?;
        eprintln!("attesting with SIMULATED evidence");
        Box::new(SimAttester::new(sim, GuestContext::launch(measurement)))
    } else {
        Box::new(HardwareAttester::open().map_err(|e| {
            usage_error(anyhow::Error::new(e).context("use --simulate on hosts without SEV-SNP"))
        })?)
    };
    let secret = match client.get_resource(attester.as_ref(), &path) {
        Ok(secret) => secret,
        // The KBS answered "no" (refused, or no such resource): a verdict, exit 1.
        Err(e @ (ClientError::Refused { .. } | ClientError::NotFound(_))) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            return Ok(ExitStatus::Failure);
        }
        Err(e) => return Err(e.into()),
    };
    match &args.out {
        Some(out) => write_secret(out, &secret)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&secret)?;
            stdout.flush()?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Writes `secret` to `path` with mode 0600, atomically (temp file, fsync, rename).
fn write_secret(path: &Path, secret: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(secret)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    eprintln!("wrote {} bytes to {}", secret.len(), path.display());
    Ok(())
}
