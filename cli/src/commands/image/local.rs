//! Local store commands: images, rmi, tag, inspect, history, save, load, prune, login, logout.

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use a3s_image::archive::{self, ArchiveFormat};
use a3s_image::registry::{Credentials, Registry, RegistryOptions};
use a3s_image::ImageRef;
use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::args::{self, ArchiveKind};
use a3s_runtime::engine::Engine;

use super::{credentials, home, parse_ref, runtime, store};
use crate::args::Format;
use crate::commands::EngineResult;
use crate::list_format::{print_rows, ListFormat};
use crate::{output, usage_error, ExitStatus};

#[cfg(test)]
mod filter_tests {
    use super::*;

    #[test]
    fn reference_globs_labels_and_dangling() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("*", "busybox:latest"));
        assert!(!glob("*", "library/busybox"));
        assert!(glob("127.0.0.1:5000/*", "127.0.0.1:5000/app"));
        assert!(glob("a?c", "abc") && !glob("a?c", "a/c"));
        let f = ImageFilter::parse(&["reference=busy*".into(), "label=tier=web".into()]).unwrap();
        let r: ImageRef = "busybox:1".parse().unwrap();
        let mut labels = std::collections::BTreeMap::new();
        assert!(!f.matches(&r, &labels));
        labels.insert("tier".into(), "web".into());
        assert!(f.matches(&r, &labels));
        let dangling = ImageFilter::parse(&["dangling=true".into()]).unwrap();
        assert!(!dangling.matches(&r, &labels));
        assert!(ImageFilter::parse(&["colour=red".into()]).is_err());
        assert!(ImageFilter::parse(&["dangling=maybe".into()]).is_err());
    }
}

#[derive(Serialize)]
struct ImageRow {
    reference: String,
    repository: String,
    tag: Option<String>,
    digest: String,
    size: u64,
}

/// `images --filter`: Docker's `reference`, `label` and `dangling` keys.
#[derive(Debug, Default)]
struct ImageFilter {
    references: Vec<String>,
    labels: Vec<String>,
    dangling: Option<bool>,
}

impl ImageFilter {
    fn parse(filters: &[String]) -> anyhow::Result<Self> {
        let mut f = Self::default();
        for raw in filters {
            let (k, v) = raw.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("bad filter {raw:?}: use KEY=VALUE, e.g. reference=busy*")
            })?;
            match k.trim().to_ascii_lowercase().as_str() {
                "reference" => f.references.push(v.to_owned()),
                "label" => f.labels.push(v.to_owned()),
                "dangling" => {
                    f.dangling = Some(match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => anyhow::bail!("bad filter {raw:?}: dangling is true or false"),
                    })
                }
                other => {
                    anyhow::bail!("unknown filter key {other:?}: use reference, label or dangling")
                }
            }
        }
        Ok(f)
    }

    /// Every listed image has a name, so none is dangling.
    fn matches(
        &self,
        reference: &ImageRef,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> bool {
        let familiar = reference.familiar();
        let repo = familiar
            .rsplit_once(':')
            .map_or(familiar.as_str(), |(r, _)| r);
        (self.references.is_empty()
            || self
                .references
                .iter()
                .any(|p| glob(p, &familiar) || glob(p, repo)))
            && self.labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(l),
            })
            && self.dangling != Some(true)
    }
}

/// Go's `path.Match` subset Docker's reference filter uses: `*` (not across `/`) and `?`.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len())
                .take_while(|&i| i == 0 || t[i - 1] != '/')
                .any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => t.first().is_some_and(|c| *c != '/') && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

pub(super) fn list(a: &args::ListArgs) -> anyhow::Result<ExitStatus> {
    let filter = ImageFilter::parse(&a.filter).map_err(usage_error)?;
    let store = store()?;
    let mut rows = Vec::new();
    for (r, rec) in store.refs()? {
        if !a.filter.is_empty() {
            let labels = store
                .manifest(&rec.manifest)
                .and_then(|m| store.config_file(&m))
                .map(|c| c.config.and_then(|c| c.labels).unwrap_or_default())
                .unwrap_or_default();
            if !filter.matches(&r, &labels) {
                continue;
            }
        }
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
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            let hex = &r.digest["sha256:".len()..];
            let id = if a.no_trunc {
                r.digest.as_str()
            } else {
                &hex[..12]
            };
            if seen.insert(id.to_owned()) {
                output::line(id)?;
            }
        }
        return Ok(ExitStatus::Success);
    }
    match &a.format.format {
        // Docker's `--format json`: one object per line, Docker's keys, string values; a
        // template is evaluated over the same object.
        ListFormat::Json | ListFormat::Template { .. } => {
            let mut docker_rows = Vec::with_capacity(rows.len());
            for r in &rows {
                let created = r
                    .digest
                    .parse()
                    .ok()
                    .and_then(|d| store.manifest(&d).ok())
                    .and_then(|m| store.config_file(&m).ok())
                    .and_then(|c| c.created);
                docker_rows.push(crate::docker::image_row(
                    &r.repository,
                    r.tag.as_deref(),
                    &r.digest,
                    created.as_deref(),
                    r.size,
                    a.no_trunc,
                ));
            }
            print_rows(&a.format.format, &docker_rows, &[("ID", "IMAGE ID")])?;
        }
        ListFormat::Table => {
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
                    if a.no_trunc {
                        &r.digest
                    } else {
                        &r.digest["sha256:".len().."sha256:".len() + 12]
                    },
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

/// `image inspect`: each image's view with Docker's fields beside ours; every image that
/// exists is shown, then the ones that do not are reported (exit non-zero), as Docker does.
pub(super) fn inspect(a: &args::ImageInspectArgs) -> anyhow::Result<ExitStatus> {
    let store = store()?;
    let refs = store.refs()?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.images {
        match inspect_one(&store, &refs, name) {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    match a.format.as_deref() {
        None | Some("json") => {
            // Always an array, one object per image found (`[]` when none), as Docker's
            // and as our box `inspect`: scripts read `.[0]` whatever the count.
            let views: Vec<Value> = found.into_iter().map(|(_, v)| v).collect();
            output::json(&views)?;
        }
        Some("text") => {
            for (i, (view, _)) in found.iter().enumerate() {
                if i > 0 {
                    output::line("")?;
                }
                inspect_text(view)?;
            }
        }
        Some(template) => {
            // Rendered before printing, so a bad template prints nothing. Fields Docker omits
            // when empty read as Go's zero values, as in Docker's templates.
            let zeros = crate::docker::image_inspect_zeros();
            let lines = found
                .iter()
                .map(|(_, v)| crate::template::render_with_zeros(template, v, &zeros))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| usage_error(anyhow::Error::new(e)))?;
            for l in &lines {
                output::line(l)?;
            }
        }
    }
    // Each missing image is named; the last error is returned (with its hint).
    let last = errors.pop();
    for e in &errors {
        let _ = writeln!(std::io::stderr(), "error: {e:#}");
    }
    match last {
        Some(e) => Err(e),
        None => Ok(ExitStatus::Success),
    }
}

/// Our view of one image, and it as JSON with Docker's fields beside ours.
fn inspect_one(
    store: &a3s_image::ImageStore,
    refs: &[(ImageRef, a3s_image::store::RefRecord)],
    name: &str,
) -> anyhow::Result<(InspectView, Value)> {
    let r = parse_ref(name)?;
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
    // The config document as stored: Docker's fields come from it whole (author, variant,
    // Healthcheck, OnBuild, ... that our typed view leaves out).
    let config_doc: Value = serde_json::from_slice(&store.read_blob(&m.config.digest)?)
        .with_context(|| format!("image config {}", m.config.digest))?;
    let names: Vec<(ImageRef, a3s_image::store::RefRecord)> = refs
        .iter()
        .filter(|(_, rec)| rec.manifest == img.digest)
        .cloned()
        .collect();
    // The unpacked size, as `images` shows it (Docker's `Size` is its `SIZE`).
    let size = match store.unpacked_size(&img.digest) {
        Ok((bytes, _)) => bytes,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "warning: size of {r}: {e:#}");
            0
        }
    };
    let docker = crate::docker::image_inspect_fields(&crate::docker::ImageFacts {
        config_digest: m.config.digest.as_str(),
        config: &config_doc,
        names: &names,
        size,
    });
    let mut v = serde_json::to_value(&view)?;
    if let Some(obj) = v.as_object_mut() {
        obj.extend(docker);
    }
    Ok((view, v))
}

/// `image inspect --format text`: our view as aligned rows.
fn inspect_text(view: &InspectView) -> anyhow::Result<()> {
    output::rows(&[
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
    ])
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

/// The mode a plain `creat(0666)` gets under this process's umask.
pub(crate) fn ordinary_file_mode() -> u32 {
    use nix::sys::stat::{umask, Mode};
    // umask can only be read by setting it; put it straight back.
    let mask = umask(Mode::from_bits_truncate(0o022));
    umask(mask);
    0o666 & !mask.bits()
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
            // The temporary file is 0600; a saved image is an ordinary file (0666 less the
            // umask, as `docker save -o` makes it).
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(ordinary_file_mode()))?;
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
        // A password or registry token: 64 KiB is far above any real one.
        const MAX_PASSWORD_BYTES: u64 = 64 << 10;
        let mut s = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(MAX_PASSWORD_BYTES + 1)
            .read_to_string(&mut s)?;
        if s.len() as u64 > MAX_PASSWORD_BYTES {
            return Err(usage_error(anyhow::anyhow!(
                "--password-stdin: the input exceeds {MAX_PASSWORD_BYTES} bytes, the limit for a password"
            )));
        }
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
