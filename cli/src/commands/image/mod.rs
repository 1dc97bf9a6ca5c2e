//! Image commands: pull, push, images, rmi, tag, inspect, history, save, load, login, logout,
//! prune, key generate, sign, verify. Each calls `a3s_image` and formats the result.

pub(crate) mod args;
mod progress;

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use a3s_image::archive::{self, ArchiveFormat};
use a3s_image::cosign::{self, PrivateKey, PublicKey, SignaturePolicy};
use a3s_image::pull::{self, PullOptions};
use a3s_image::registry::{
    CredentialStore, Credentials, NoProgress, Progress, Registry, RegistryOptions,
};
use a3s_image::{ImageRef, ImageStore};
use a3s_runtime::A3sHome;
use anyhow::Context;
use serde::Serialize;

use self::args::{ArchiveKind, ImageCommand, ImageSub, KeySub, RegistryArgs};
use crate::args::Format;
use crate::{output, usage_error, ExitCodeError, ExitStatus};

/// Runs one image command.
pub(crate) fn run(cmd: ImageCommand) -> anyhow::Result<ExitStatus> {
    match cmd {
        ImageCommand::Pull(a) | ImageCommand::Image(ImageSub::Pull(a)) => pull_cmd(&a),
        ImageCommand::Push(a) | ImageCommand::Image(ImageSub::Push(a)) => push_cmd(&a),
        ImageCommand::Images(a) | ImageCommand::Image(ImageSub::Ls(a)) => list(&a),
        ImageCommand::Rmi(a) | ImageCommand::Image(ImageSub::Rm(a)) => rmi(&a),
        ImageCommand::Tag(a) | ImageCommand::Image(ImageSub::Tag(a)) => tag(&a),
        ImageCommand::Save(a) | ImageCommand::Image(ImageSub::Save(a)) => save(&a),
        ImageCommand::Load(a) | ImageCommand::Image(ImageSub::Load(a)) => load(&a),
        ImageCommand::Login(a) => login(&a),
        ImageCommand::Logout(a) => logout(&a),
        ImageCommand::Image(ImageSub::Inspect(a)) => inspect(&a),
        ImageCommand::Image(ImageSub::History(a)) => history(&a),
        ImageCommand::Image(ImageSub::Prune(a)) => prune(&a),
        ImageCommand::Image(ImageSub::Sign(a)) => sign(&a),
        ImageCommand::Image(ImageSub::Verify(a)) => verify(&a),
        ImageCommand::Key(KeySub::Generate(a)) => key_generate(&a),
    }
}

fn home() -> anyhow::Result<A3sHome> {
    A3sHome::from_env().map_err(|e| usage_error(e.into()))
}

fn store() -> anyhow::Result<ImageStore> {
    let home = home()?;
    Ok(ImageStore::open(home.root().join("images"))?)
}

fn credentials() -> anyhow::Result<CredentialStore> {
    Ok(CredentialStore::new(home()?.root().join("auth.json")))
}

fn parse_ref(s: &str) -> anyhow::Result<ImageRef> {
    s.parse::<ImageRef>().map_err(|e| usage_error(e.into()))
}

fn registry_options(reference: &ImageRef, args: &RegistryArgs) -> anyhow::Result<RegistryOptions> {
    Ok(RegistryOptions {
        insecure_registries: args.insecure_registries.clone(),
        credentials: credentials()?.get(reference.registry())?,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn progress(quiet: bool, verb: &'static str) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else {
        Box::new(progress::Bars::new(verb))
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    fs_err::read_to_string(path).map_err(|e| usage_error(e.into()))
}

fn public_key(path: &Path) -> anyhow::Result<PublicKey> {
    PublicKey::from_pem(&read_key_file(path)?)
        .with_context(|| format!("reading public key {}", path.display()))
        .map_err(usage_error)
}

/// COSIGN_PASSWORD, else a prompt on the terminal (twice when `confirm`).
fn password(confirm: bool) -> anyhow::Result<zeroize::Zeroizing<String>> {
    if let Some(p) = std::env::var_os("COSIGN_PASSWORD") {
        return Ok(zeroize::Zeroizing::new(p.to_string_lossy().into_owned()));
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage_error(anyhow::anyhow!(
            "no password: set COSIGN_PASSWORD (no terminal to prompt on)"
        )));
    }
    let p = zeroize::Zeroizing::new(rpassword::prompt_password(
        "Enter password for private key: ",
    )?);
    if confirm {
        let again = zeroize::Zeroizing::new(rpassword::prompt_password(
            "Enter password for private key again: ",
        )?);
        if *again != *p {
            return Err(usage_error(anyhow::anyhow!("passwords do not match")));
        }
    }
    Ok(p)
}

fn signature_policy(explicit: Option<&PathBuf>) -> anyhow::Result<SignaturePolicy> {
    match explicit {
        Some(p) => Ok(SignaturePolicy::load(p, true).map_err(|e| usage_error(e.into()))?),
        None => {
            let default = home()?.root().join("policy").join("signatures.toml");
            Ok(SignaturePolicy::load(&default, false).map_err(|e| usage_error(e.into()))?)
        }
    }
}

/// Marks a verification verdict "no" (exit 1).
fn verdict_no(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ExitCodeError { code: 1, error: e })
}

fn is_verdict(e: &a3s_image::cosign::VerifyError) -> bool {
    use a3s_image::cosign::VerifyError as V;
    matches!(
        e,
        V::NoSignatures { .. } | V::NoValidSignature { .. } | V::Rejected { .. }
    )
}

#[derive(Serialize)]
struct PullView {
    reference: String,
    digest: String,
    resolved_digest: String,
    layers: usize,
    cached_layers: usize,
    verified_by: Vec<String>,
}

fn pull_cmd(a: &args::PullArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let store = store()?;
    let mut verify_keys = Vec::new();
    for k in &a.verify_key {
        verify_keys.push(public_key(k)?);
    }
    let opts = PullOptions {
        registry: registry_options(&reference, &a.registry)?,
        policy: signature_policy(a.signature_policy.as_ref())?,
        verify_keys,
        skip_unpack: false,
    };
    if !a.quiet {
        eprintln!("Pulling {reference}");
    }
    let bars = progress(a.quiet, "downloading");
    let pulled = match runtime()?.block_on(pull::pull(&store, &reference, &opts, bars.as_ref())) {
        Ok(p) => p,
        Err(pull::TransferError::Verify(e)) if is_verdict(&e) => {
            return Err(verdict_no(
                anyhow::Error::new(e).context(format!("pulling {reference}")),
            ))
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("pulling {reference}"))),
    };
    let view = PullView {
        reference: reference.to_string(),
        digest: pulled.image.digest.to_string(),
        resolved_digest: pulled.resolved.to_string(),
        layers: pulled.layers,
        cached_layers: pulled.cached_layers,
        verified_by: pulled.verified_by.clone(),
    };
    match a.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            if !a.quiet {
                eprintln!("Digest: {}", view.resolved_digest);
                for k in &view.verified_by {
                    eprintln!("Verified signature by key {k}");
                }
            }
            output::line(&view.reference)?;
        }
    }
    Ok(ExitStatus::Success)
}

fn push_cmd(a: &args::PushArgs) -> anyhow::Result<ExitStatus> {
    let source = parse_ref(&a.image)?;
    let target = match &a.to {
        Some(t) => parse_ref(t)?,
        None => source.clone(),
    };
    let store = store()?;
    let opts = registry_options(&target, &a.registry)?;
    let bars = progress(a.quiet, "uploading");
    let digest = runtime()?
        .block_on(pull::push(&store, &source, &target, &opts, bars.as_ref()))
        .with_context(|| format!("pushing {target}"))?;
    if !a.quiet {
        eprintln!("Pushed {target}");
    }
    output::line(&format!("{}@{digest}", target.name()))?;
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct ImageRow {
    reference: String,
    repository: String,
    tag: Option<String>,
    digest: String,
    size: u64,
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1}KiB", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

fn list(a: &args::ListArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let mut rows = Vec::new();
    for (r, rec) in store.refs()? {
        let size = store
            .manifest(&rec.manifest)
            .map(|m| m.layers.iter().map(|l| l.size).sum::<u64>() + m.config.size)
            .unwrap_or(0);
        rows.push(ImageRow {
            reference: r.to_string(),
            repository: r.name(),
            tag: r.tag().map(str::to_owned),
            digest: rec.manifest.to_string(),
            size,
        });
    }
    match a.format {
        Format::Json => output::json(&rows)?,
        Format::Text => {
            let w = rows
                .iter()
                .map(|r| r.repository.len())
                .max()
                .unwrap_or(10)
                .max(10);
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<w$}  {:<16}  {:<12}  SIZE",
                "REPOSITORY", "TAG", "DIGEST"
            )?;
            for r in &rows {
                writeln!(
                    out,
                    "{:<w$}  {:<16}  {:<12}  {}",
                    r.repository,
                    r.tag.as_deref().unwrap_or("<none>"),
                    &r.digest["sha256:".len().."sha256:".len() + 12],
                    human(r.size)
                )?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn rmi(a: &args::RmiArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    for s in &a.images {
        let r = parse_ref(s)?;
        let mut removed = Vec::new();
        if store.remove_ref(&r)?.is_some() {
            removed.push(r.clone());
        } else if let Some(d) = r.digest() {
            for (other, rec) in store.refs()? {
                if other.name() == r.name() && (rec.manifest == *d || rec.index.as_ref() == Some(d))
                {
                    store.remove_ref(&other)?;
                    removed.push(other);
                }
            }
        }
        if removed.is_empty() {
            return Err(a3s_image::StoreError::NotFound {
                reference: r.familiar(),
            }
            .into());
        }
        for x in removed {
            output::line(&format!("Untagged: {}", x.familiar()))?;
        }
    }
    let report = store.prune()?;
    for d in &report.blobs {
        output::line(&format!("Deleted: {d}"))?;
    }
    Ok(ExitStatus::Success)
}

fn tag(a: &args::TagArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let source = parse_ref(&a.source)?;
    let target = parse_ref(&a.target)?;
    if target.digest().is_some() {
        return Err(usage_error(anyhow::anyhow!(
            "a tag target cannot contain a digest: {target}"
        )));
    }
    let record = store.lookup(&source)?;
    store.set_ref(&target, record)?;
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct InspectView {
    reference: String,
    digest: String,
    index_digest: Option<String>,
    media_type: String,
    architecture: String,
    os: String,
    created: Option<String>,
    config: a3s_image::ImageConfig,
    layers: Vec<LayerView>,
    size: u64,
}

#[derive(Serialize)]
struct LayerView {
    digest: String,
    media_type: String,
    size: u64,
    diff_id: Option<String>,
}

fn inspect(a: &args::InspectArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let r = parse_ref(&a.image)?;
    let img = store.resolve(&r)?;
    let record = store.lookup(&r)?;
    let m = store.manifest(&img.digest)?;
    let cfg = store.config_file(&m)?;
    let view = InspectView {
        reference: r.to_string(),
        digest: img.digest.to_string(),
        index_digest: record.index.map(|d| d.to_string()),
        media_type: m
            .media_type
            .clone()
            .unwrap_or_else(|| a3s_image::oci::OCI_MANIFEST.into()),
        architecture: cfg.architecture.clone(),
        os: cfg.os.clone(),
        created: cfg.created.clone(),
        config: img.config.clone(),
        layers: m
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerView {
                digest: l.digest.to_string(),
                media_type: l.media_type.clone(),
                size: l.size,
                diff_id: cfg.rootfs.diff_ids.get(i).map(|d| d.to_string()),
            })
            .collect(),
        size: m.layers.iter().map(|l| l.size).sum(),
    };
    match a.format.unwrap_or(Format::Json) {
        Format::Json => output::json(&view)?,
        Format::Text => output::rows(&[
            ("Reference", view.reference.clone()),
            ("Digest", view.digest.clone()),
            ("Platform", format!("{}/{}", view.os, view.architecture)),
            ("Entrypoint", format!("{:?}", view.config.entrypoint)),
            ("Cmd", format!("{:?}", view.config.cmd)),
            ("Env", view.config.env.join(" ")),
            (
                "WorkingDir",
                view.config.working_dir.clone().unwrap_or_default(),
            ),
            ("User", view.config.user.clone().unwrap_or_default()),
            ("Layers", view.layers.len().to_string()),
            ("Size", human(view.size)),
        ])?,
    }
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct HistoryRow {
    created: Option<String>,
    created_by: Option<String>,
    comment: Option<String>,
    empty_layer: bool,
    layer: Option<String>,
    size: Option<u64>,
}

fn history(a: &args::InspectArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let img = store.resolve(&parse_ref(&a.image)?)?;
    let m = store.manifest(&img.digest)?;
    let cfg = store.config_file(&m)?;
    let mut layers = m.layers.iter();
    let rows: Vec<HistoryRow> = cfg
        .history
        .iter()
        .map(|h| {
            let layer = if h.empty_layer { None } else { layers.next() };
            HistoryRow {
                created: h.created.clone(),
                created_by: h.created_by.clone(),
                comment: h.comment.clone(),
                empty_layer: h.empty_layer,
                layer: layer.map(|l| l.digest.to_string()),
                size: layer.map(|l| l.size),
            }
        })
        .collect();
    match a.format.unwrap_or(Format::Text) {
        Format::Json => output::json(&rows)?,
        Format::Text => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<12}  {:<25}  {:>9}  CREATED BY",
                "LAYER", "CREATED", "SIZE"
            )?;
            for r in rows.iter().rev() {
                writeln!(
                    out,
                    "{:<12}  {:<25}  {:>9}  {}",
                    r.layer
                        .as_deref()
                        .map_or("<missing>", |d| &d["sha256:".len().."sha256:".len() + 12]),
                    r.created.as_deref().unwrap_or("-"),
                    r.size.map_or_else(|| "0B".into(), human),
                    r.created_by.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn save(a: &args::SaveArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let refs: Vec<ImageRef> = a
        .images
        .iter()
        .map(|s| parse_ref(s))
        .collect::<Result<_, _>>()?;
    let format = match a.archive_format {
        ArchiveKind::Oci => ArchiveFormat::Oci,
        ArchiveKind::DockerArchive => ArchiveFormat::DockerArchive,
    };
    match &a.output {
        Some(path) => {
            // Write beside the target and rename, so a failed save leaves no partial file.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            archive::save(
                &store,
                &refs,
                format,
                std::io::BufWriter::new(tmp.as_file_mut()),
            )?;
            tmp.as_file().sync_all()?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                return Err(usage_error(anyhow::anyhow!(
                    "refusing to write a tarball to a terminal: use -o FILE or redirect stdout"
                )));
            }
            archive::save(
                &store,
                &refs,
                format,
                std::io::BufWriter::new(std::io::stdout().lock()),
            )?;
        }
    }
    Ok(ExitStatus::Success)
}

fn load(a: &args::LoadArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let loaded = archive::load(&store, &a.input)
        .with_context(|| format!("loading {}", a.input.display()))?;
    #[derive(Serialize)]
    struct Loaded {
        reference: String,
        digest: String,
    }
    let rows: Vec<Loaded> = loaded
        .iter()
        .map(|i| Loaded {
            reference: i.reference.to_string(),
            digest: i.digest.to_string(),
        })
        .collect();
    match a.format {
        Format::Json => output::json(&rows)?,
        Format::Text => {
            for r in &rows {
                output::line(&format!("Loaded image: {}", r.reference))?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

fn login(a: &args::LoginArgs) -> anyhow::Result<ExitStatus> {
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        zeroize::Zeroizing::new(s.trim_end_matches(['\n', '\r']).to_owned())
    } else if std::io::stdin().is_terminal() {
        zeroize::Zeroizing::new(rpassword::prompt_password("Password: ")?)
    } else {
        return Err(usage_error(anyhow::anyhow!(
            "no password: pass --password-stdin or run on a terminal"
        )));
    };
    if password.is_empty() {
        return Err(usage_error(anyhow::anyhow!("empty password")));
    }
    let creds = Credentials::new(a.username.clone(), password.as_str());
    let probe = parse_ref(&format!("{}/a3s-box/login-probe:latest", a.registry))?;
    let opts = RegistryOptions {
        insecure_registries: a.registry_opts.insecure_registries.clone(),
        credentials: Some(creds.clone()),
    };
    runtime()?
        .block_on(Registry::new(&probe, &opts).check_auth(&probe))
        .with_context(|| format!("logging in to {}", a.registry))?;
    credentials()?.set(probe.registry(), &creds)?;
    output::line("Login Succeeded")?;
    Ok(ExitStatus::Success)
}

fn logout(a: &args::LogoutArgs) -> anyhow::Result<ExitStatus> {
    let registry = parse_ref(&format!("{}/x", a.registry))?
        .registry()
        .to_owned();
    if credentials()?.remove(&registry)? {
        output::line(&format!("Removed login credentials for {registry}"))?;
    } else {
        output::line(&format!("Not logged in to {registry}"))?;
    }
    Ok(ExitStatus::Success)
}

fn prune(a: &args::FormatOnly) -> anyhow::Result<ExitStatus> {
    let report = store()?.prune()?;
    #[derive(Serialize)]
    struct View {
        blobs: Vec<String>,
        rootfs: Vec<String>,
        freed_bytes: u64,
        partials: u64,
    }
    let v = View {
        blobs: report.blobs.iter().map(ToString::to_string).collect(),
        rootfs: report.rootfs.iter().map(ToString::to_string).collect(),
        freed_bytes: report.blob_bytes,
        partials: report.partials,
    };
    match a.format {
        Format::Json => output::json(&v)?,
        Format::Text => output::line(&format!(
            "Deleted {} blobs and {} root filesystems; freed {}",
            v.blobs.len(),
            v.rootfs.len(),
            human(v.freed_bytes)
        ))?,
    }
    Ok(ExitStatus::Success)
}

fn key_generate(a: &args::KeyGenArgs) -> anyhow::Result<ExitStatus> {
    let key_path = a.out_dir.join("cosign.key");
    let pub_path = a.out_dir.join("cosign.pub");
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(usage_error(anyhow::anyhow!(
                "{} already exists; refusing to overwrite a key (choose another --out-dir)",
                p.display()
            )));
        }
    }
    fs_err::create_dir_all(&a.out_dir)?;
    let pw = password(true)?;
    let key = PrivateKey::generate();
    write_new(
        &key_path,
        key.to_encrypted_pem(pw.as_bytes()).as_bytes(),
        0o600,
    )?;
    write_new(&pub_path, key.public_key().to_pem().as_bytes(), 0o644)?;
    eprintln!("Private key written to {}", key_path.display());
    eprintln!("Public key written to {}", pub_path.display());
    Ok(ExitStatus::Success)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn sign(a: &args::SignArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let pem = read_key_file(&a.key)?;
    let pw = password(false)?;
    let key = PrivateKey::from_pem(&pem, pw.as_bytes())
        .with_context(|| format!("reading private key {}", a.key.display()))
        .map_err(usage_error)?;
    let opts = registry_options(&reference, &a.registry)?;
    let rt = runtime()?;
    let reg = Registry::new(&reference, &opts);
    let resolved = rt
        .block_on(reg.resolve(&reference))
        .with_context(|| format!("resolving {reference}"))?;
    let tag = rt
        .block_on(cosign::sign(&reg, &reference, &resolved.top, &key))
        .with_context(|| format!("signing {reference}"))?;
    eprintln!("Signed {} ({})", reference, resolved.top);
    output::line(&format!("Pushed signature to {tag}"))?;
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct VerifyView {
    reference: String,
    digest: String,
    verified: bool,
    signer: Option<String>,
    signatures: usize,
    error: Option<String>,
}

fn verify(a: &args::VerifyImageArgs) -> anyhow::Result<ExitStatus> {
    let reference = parse_ref(&a.image)?;
    let key = public_key(&a.key)?;
    let opts = registry_options(&reference, &a.registry)?;
    let rt = runtime()?;
    let reg = Registry::new(&reference, &opts);
    let resolved = rt
        .block_on(reg.resolve(&reference))
        .with_context(|| format!("resolving {reference}"))?;
    let result = rt.block_on(cosign::verify_remote(
        &reg,
        &reference,
        &resolved.top,
        &[key],
    ));
    let (view, err) = match result {
        Ok((sigs, signer)) => (
            VerifyView {
                reference: reference.to_string(),
                digest: resolved.top.to_string(),
                verified: true,
                signer: Some(signer),
                signatures: sigs.len(),
                error: None,
            },
            None,
        ),
        Err(e) if is_verdict(&e) => (
            VerifyView {
                reference: reference.to_string(),
                digest: resolved.top.to_string(),
                verified: false,
                signer: None,
                signatures: 0,
                error: Some(e.to_string()),
            },
            Some(e),
        ),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("verifying {reference}"))),
    };
    match a.format {
        Format::Json => output::json(&view)?,
        Format::Text => {
            if view.verified {
                output::line(&format!(
                    "Verified {} at {}: {} valid signature(s) by key {}",
                    view.reference,
                    view.digest,
                    view.signatures,
                    view.signer.as_deref().unwrap_or_default()
                ))?;
            }
        }
    }
    if let Some(e) = err {
        if a.format == Format::Json {
            return Ok(ExitStatus::Failure);
        }
        return Err(verdict_no(anyhow::Error::new(e)));
    }
    Ok(ExitStatus::Success)
}

/// Hints from image errors anywhere in the chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<a3s_image::StoreError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::registry::RegistryError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::pull::TransferError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::cosign::VerifyError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::cosign::KeyError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::archive::ArchiveError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::registry::auth::AuthFileError>() {
        e.hint()
    } else {
        None
    }
}
