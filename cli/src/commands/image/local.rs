//! Local store commands: images, rmi, tag, inspect, history, save, load, prune, login, logout.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use a3s_image::archive::{self, ArchiveFormat};
use a3s_image::registry::{Credentials, Registry, RegistryOptions};
use a3s_image::ImageRef;
use anyhow::Context;
use serde::Serialize;

use super::args::{self, ArchiveKind};
use a3s_runtime::engine::Engine;

use super::{credentials, home, parse_ref, runtime, store};
use crate::args::Format;
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

#[derive(Serialize)]
struct ImageRow {
    reference: String,
    repository: String,
    tag: Option<String>,
    digest: String,
    size: u64,
}

pub(super) fn list(a: &args::ListArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let mut rows = Vec::new();
    for (r, rec) in store.refs()? {
        // The unpacked size, as `system df -v` shows it (Docker's SIZE).
        let size = match store.unpacked_size(&rec.manifest) {
            Ok((bytes, _)) => bytes,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "warning: size of {r}: {e:#}");
                0
            }
        };
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
                    crate::output::human(r.size)
                )?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) fn rmi(a: &args::RmiArgs) -> anyhow::Result<ExitStatus> {
    let home = home()?;
    let engine = Engine::open(&home);
    for s in &a.images {
        let r = parse_ref(s)?;
        let removed = engine.remove_image(&r, a.force).engine()?;
        for x in removed.references {
            output::line(&format!("Untagged: {}", x.familiar()))?;
        }
    }
    // Content no name and no box reaches goes, with its filesystem images and caches.
    let report = Engine::open(&home).prune_images(false).engine()?;
    for d in &report.store.blobs {
        output::line(&format!("Deleted: {d}"))?;
    }
    Ok(ExitStatus::Success)
}

pub(super) fn tag(a: &args::TagArgs) -> anyhow::Result<ExitStatus> {
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

pub(super) fn inspect(a: &args::InspectArgs) -> anyhow::Result<ExitStatus> {
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
            ("Size", crate::output::human(view.size)),
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

pub(super) fn history(a: &args::InspectArgs) -> anyhow::Result<ExitStatus> {
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
                    r.size.map_or_else(|| "0B".into(), crate::output::human),
                    r.created_by.as_deref().unwrap_or("")
                )?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) fn save(a: &args::SaveArgs) -> anyhow::Result<ExitStatus> {
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

pub(super) fn load(a: &args::LoadArgs) -> anyhow::Result<ExitStatus> {
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

pub(super) fn login(a: &args::LoginArgs) -> anyhow::Result<ExitStatus> {
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
        mirrors: Vec::new(),
    };
    runtime()?
        .block_on(Registry::new(&probe, &opts).check_auth(&probe))
        .with_context(|| format!("logging in to {}", a.registry))?;
    credentials()?.set(probe.registry(), &creds)?;
    output::line("Login Succeeded")?;
    Ok(ExitStatus::Success)
}

pub(super) fn logout(a: &args::LogoutArgs) -> anyhow::Result<ExitStatus> {
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

pub(super) fn prune(a: &args::FormatOnly) -> anyhow::Result<ExitStatus> {
    let p = Engine::open(&home()?).prune_images(false).engine()?;
    let report = &p.store;
    #[derive(Serialize)]
    struct View {
        blobs: Vec<String>,
        rootfs: Vec<String>,
        cache: Vec<String>,
        freed_bytes: u64,
        partials: u64,
    }
    let v = View {
        blobs: report.blobs.iter().map(ToString::to_string).collect(),
        rootfs: report.rootfs.iter().map(ToString::to_string).collect(),
        cache: p.cache.removed.clone(),
        freed_bytes: p.freed().allocated,
        partials: report.partials,
    };
    match a.format {
        Format::Json => output::json(&v)?,
        Format::Text => output::line(&format!(
            "Deleted {} blobs and {} root filesystems; freed {}",
            v.blobs.len(),
            v.rootfs.len(),
            crate::output::human(v.freed_bytes)
        ))?,
    }
    Ok(ExitStatus::Success)
}
