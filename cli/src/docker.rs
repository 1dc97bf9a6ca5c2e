//! Docker's JSON shapes: the `ps` and `images` `--format json` rows, the top-level fields
//! of `docker inspect` (`Id`, `State`, `Config`, `HostConfig`, `NetworkSettings`, `Mounts`,
//! ...) and of `docker image inspect` (`Id`, `RepoTags`, `Config`, `RootFS`, ...), so scripts
//! written against Docker read ours unchanged.
//! (Keys are Docker's; Go marshals its maps sorted, as a `serde_json::Map` does here.)

use std::time::Duration;

use serde_json::{json, Map, Value};

use a3s_image::store::RefRecord;
use a3s_image::ImageRef;
use a3s_runtime::boxes::{BoxRecord, BoxState};
use a3s_runtime::engine::BoxAttachments;
use a3s_runtime::network::NetMode;
use a3s_runtime::network::Network;
use a3s_runtime::volumes::{MountSource, VolumeInfo, ANONYMOUS_LABEL};

use crate::commands::boxes::human_duration;

/// Docker's zero time, for a start or finish that has not happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `ps --format json`: one object per box, every value a string, as `docker ps` prints it.
pub(crate) fn ps_row(
    rec: &BoxRecord,
    att: &BoxAttachments,
    command: String,
    status: String,
    size: Option<u64>,
    no_trunc: bool,
) -> Value {
    let id = if no_trunc {
        rec.id.as_str()
    } else {
        rec.id.short()
    };
    let labels: Vec<String> = rec
        .spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mounts: Vec<String> = att
        .mounts
        .iter()
        .map(|m| match &m.source {
            MountSource::Volume { name } => name.to_string(),
            MountSource::Bind { path } => path.display().to_string(),
            MountSource::Anonymous => String::new(),
        })
        .collect();
    let local_volumes = att
        .mounts
        .iter()
        .filter(|m| matches!(m.source, MountSource::Volume { .. }))
        .count();
    json!({
        "Command": command,
        "CreatedAt": go_time(&rec.created_at),
        "ID": id,
        "Image": rec.image,
        "Labels": labels.join(","),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": rec.name,
        "Networks": networks_column(att),
        "Ports": ports_text(att),
        "RunningFor": ago(&rec.created_at),
        "Size": size.map_or_else(|| "0B".to_owned(), human_size),
        "State": rec.status_name(),
        "Status": status,
    })
}

/// Docker's top-level `inspect` fields for `rec` (added beside the record's own).
pub(crate) fn inspect_fields(rec: &BoxRecord, att: &BoxAttachments) -> Map<String, Value> {
    let argv = &rec.spec.process.argv;
    let mut out = Map::new();
    out.insert("Id".into(), json!(rec.id.as_str()));
    out.insert("Created".into(), json!(rec.created_at));
    out.insert(
        "Path".into(),
        json!(argv.first().cloned().unwrap_or_default()),
    );
    out.insert(
        "Args".into(),
        json!(argv.iter().skip(1).collect::<Vec<_>>()),
    );
    out.insert("State".into(), state(rec));
    out.insert("Image".into(), json!(rec.image_digest));
    out.insert("Name".into(), json!(format!("/{}", rec.name)));
    out.insert(
        "RestartCount".into(),
        json!(rec.start_count.saturating_sub(1)),
    );
    out.insert("Platform".into(), json!("linux"));
    out.insert("Driver".into(), json!("a3s-box"));
    out.insert("Config".into(), config(rec));
    out.insert("HostConfig".into(), host_config(rec, att));
    out.insert("NetworkSettings".into(), network_settings(rec, att));
    out.insert("Mounts".into(), mounts(att));
    out
}

fn state(rec: &BoxRecord) -> Value {
    let (pid, exit_code, error) = match &rec.state {
        BoxState::Running { qemu_pid, .. } => (*qemu_pid, 0, String::new()),
        BoxState::Restarting { exit_code, .. } => (0, *exit_code, String::new()),
        BoxState::Exited { exit_code, error } => (0, *exit_code, error.clone().unwrap_or_default()),
        _ => (0, 0, String::new()),
    };
    let status = rec.status_name();
    let mut s = json!({
        "Status": status,
        "Running": matches!(rec.state, BoxState::Running { .. }) || status == "paused",
        "Paused": status == "paused",
        "Restarting": matches!(rec.state, BoxState::Restarting { .. }),
        "OOMKilled": rec.oom_killed,
        "Dead": false,
        "Pid": pid,
        "ExitCode": exit_code,
        "Error": error,
        "StartedAt": rec.started_at.as_deref().unwrap_or(ZERO_TIME),
        "FinishedAt": rec.finished_at.as_deref().unwrap_or(ZERO_TIME),
    });
    if let (Some(h), Some(obj)) = (&rec.health, s.as_object_mut()) {
        obj.insert(
            "Health".into(),
            json!({
                "Status": h.status.as_str(),
                "FailingStreak": h.failing_streak,
                "Log": serde_json::to_value(&h.log).unwrap_or(Value::Null),
            }),
        );
    }
    s
}

fn config(rec: &BoxRecord) -> Value {
    let p = &rec.spec.process;
    let mut c = json!({
        "Hostname": rec.spec.setup.hostname,
        "Domainname": "",
        "User": p.user.clone().unwrap_or_default(),
        "AttachStdin": p.stdin,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": p.tty,
        "OpenStdin": p.stdin,
        "StdinOnce": p.stdin,
        "Env": p.env,
        "Cmd": p.argv,
        "Image": rec.image,
        "WorkingDir": p.workdir.clone().unwrap_or_default(),
        "Entrypoint": Value::Null,
        "Labels": rec.spec.labels,
    });
    if let Some(obj) = c.as_object_mut() {
        if let Some(sig) = rec.spec.stop_signal {
            let name = nix::sys::signal::Signal::try_from(sig)
                .map_or_else(|_| sig.to_string(), |s| s.as_str().to_owned());
            obj.insert("StopSignal".into(), json!(name));
        }
        if let Some(t) = rec.spec.stop_timeout {
            obj.insert("StopTimeout".into(), json!(t));
        }
    }
    c
}

fn host_config(rec: &BoxRecord, att: &BoxAttachments) -> Value {
    let binds: Vec<String> = att
        .mounts
        .iter()
        .map(|m| {
            let source = match &m.source {
                MountSource::Volume { name } => name.to_string(),
                MountSource::Bind { path } => path.display().to_string(),
                MountSource::Anonymous => String::new(),
            };
            let mode = if m.readonly { ":ro" } else { "" };
            format!("{source}:{}{mode}", m.target)
        })
        .collect();
    let (policy, retries) = restart_policy(rec);
    json!({
        "AutoRemove": rec.spec.auto_remove,
        "Binds": binds,
        // Docker: `true` with --init, else null (guest-init is the init either way).
        "Init": rec.spec.security.as_ref().and_then(|s| s.init),
        // Docker's: the container's limit, 0 for none.
        "Memory": rec.spec.memory_limit_bytes.unwrap_or(0),
        "MemoryReservation": rec.spec.security.as_ref().map_or(0, |s| s.memory_reservation),
        "MemorySwap": rec.spec.security.as_ref().map_or(0, |s| s.memory_swap),
        "NanoCpus": u64::from(rec.spec.vcpus) * 1_000_000_000,
        "NetworkMode": network_name(att),
        "PortBindings": port_bindings(att),
        "RestartPolicy": { "Name": policy, "MaximumRetryCount": retries },
        "Runtime": "a3s-box",
    })
}

/// Docker's restart policy name and retry count.
fn restart_policy(rec: &BoxRecord) -> (String, u32) {
    let v = serde_json::to_value(rec.spec.restart).unwrap_or(Value::Null);
    let name = v["name"].as_str().unwrap_or("no").replace('_', "-");
    let retries = v["max_retries"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    (name, retries)
}

fn network_settings(rec: &BoxRecord, att: &BoxAttachments) -> Value {
    let ip = att.net.ip.map(|a| a.to_string()).unwrap_or_default();
    let mut networks = Map::new();
    if att.net.mode == NetMode::Tsi {
        networks.insert(
            network_name(att),
            json!({
                "IPAddress": ip,
                "Aliases": att.net.aliases,
                "DNSNames": [rec.name.as_str()],
            }),
        );
    }
    // Every bridge network the box is on, with its address and aliases there.
    for a in att.net.attachments() {
        let mut names = vec![rec.name.clone()];
        names.extend(a.aliases.iter().cloned());
        networks.insert(
            a.network.clone(),
            json!({
                "IPAddress": a.ip.map(|i| i.to_string()).unwrap_or_default(),
                "Aliases": a.aliases,
                "DNSNames": names,
            }),
        );
    }
    json!({
        "IPAddress": ip,
        "Ports": port_bindings(att),
        "Networks": networks,
    })
}

fn mounts(att: &BoxAttachments) -> Value {
    att.mounts
        .iter()
        .map(|m| {
            let (kind, name, source) = match &m.source {
                MountSource::Volume { name } => ("volume", name.to_string(), String::new()),
                MountSource::Bind { path } => ("bind", String::new(), path.display().to_string()),
                MountSource::Anonymous => ("volume", String::new(), String::new()),
            };
            json!({
                "Type": kind,
                "Name": name,
                "Source": source,
                "Destination": m.target,
                "Mode": if m.readonly { "ro" } else { "" },
                "RW": !m.readonly,
            })
        })
        .collect()
}

/// `{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}`.
fn port_bindings(att: &BoxAttachments) -> Value {
    let mut out: Map<String, Value> = Map::new();
    for p in &att.net.ports {
        let key = format!("{}/{}", p.guest, p.proto.as_str());
        let binding = json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host.to_string() });
        match out.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(binding),
            None => {
                out.insert(key, json!([binding]));
            }
        }
    }
    Value::Object(out)
}

/// `images --format json`: one object per image name, as `docker images` prints it.
pub(crate) fn image_row(
    repository: &str,
    tag: Option<&str>,
    digest: &str,
    created: Option<&str>,
    size: u64,
    no_trunc: bool,
) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let id = if no_trunc {
        digest.to_owned()
    } else {
        hex.chars().take(12).collect()
    };
    json!({
        "Containers": "N/A",
        "CreatedAt": created.map(go_time).unwrap_or_default(),
        "CreatedSince": created.map(ago).unwrap_or_else(|| "N/A".to_owned()),
        "Digest": digest,
        "ID": id,
        "Repository": familiar_repository(repository),
        "SharedSize": "N/A",
        "Size": human_size(size),
        "Tag": tag.unwrap_or("<none>"),
        "UniqueSize": "N/A",
        "VirtualSize": human_size(size),
    })
}

/// The keys of Docker's image `Config` (moby's `DockerOCIImageConfig`: the image spec's
/// `ImageConfig` with Docker's `Healthcheck`, `OnBuild` and `Shell`, and `ArgsEscaped`).
const IMAGE_CONFIG_KEYS: [&str; 13] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// The Go zero values of the `image inspect` fields Docker omits when empty, for
/// [`crate::template::render_with_zeros`]: `{{.Config.User}}` prints an empty line,
/// `{{.Config.Entrypoint}}` `[]` and `{{.Config.Labels}}` `map[]`, as with Docker
/// (`Healthcheck`, a pointer, has no zero value worth printing).
pub(crate) fn image_inspect_zeros() -> Value {
    json!({
        "RepoTags": [],
        "RepoDigests": [],
        "Parent": "",
        "Comment": "",
        "Created": "",
        "DockerVersion": "",
        "Author": "",
        "Config": {
            "User": "",
            "ExposedPorts": {},
            "Env": [],
            "Entrypoint": [],
            "Cmd": [],
            "Volumes": {},
            "WorkingDir": "",
            "Labels": {},
            "StopSignal": "",
            "ArgsEscaped": false,
            "OnBuild": [],
            "Shell": [],
        },
        "Architecture": "",
        "Variant": "",
        "Os": "",
        "OsVersion": "",
        "RootFS": { "Type": "", "Layers": [] },
        "GraphDriver": { "Data": {}, "Name": "" },
    })
}

/// What `image inspect` knows of one image, for [`image_inspect_fields`].
pub(crate) struct ImageFacts<'a> {
    /// The config blob's digest: Docker's image ID.
    pub(crate) config_digest: &'a str,
    /// The image config document as stored (`architecture`, `os`, `config`, `rootfs`, ...).
    pub(crate) config: &'a Value,
    /// Every local name of the image (tags, or digests) with the record it points at.
    pub(crate) names: &'a [(ImageRef, RefRecord)],
    /// The unpacked size, as `images` shows it.
    pub(crate) size: u64,
}

/// Docker's top-level `docker image inspect` fields (moby's `image.InspectResponse`) for one
/// image, added beside our own. Empty strings, lists and maps are omitted where Docker omits
/// them (`omitempty`); [`image_inspect_zeros`] has what a template reads for them.
pub(crate) fn image_inspect_fields(img: &ImageFacts<'_>) -> Map<String, Value> {
    let c = img.config;
    let text = |key: &str| c.get(key).and_then(Value::as_str).unwrap_or_default();
    let (tags, digests) = repo_tags_and_digests(img.names);
    let mut out = Map::new();
    // Docker's image ID is the config's digest (its containerd image store shows the
    // manifest's instead; `RepoDigests` has that one).
    out.insert("Id".into(), json!(img.config_digest));
    out.insert("RepoTags".into(), json!(tags));
    out.insert("RepoDigests".into(), json!(digests));
    // `Parent`: Docker only knows parents of images its classic builder made; none here.
    // Docker's own configs carry a `comment`; others leave it to the last history entry
    // (`import -m`, `build`), where Docker then reads it.
    let comment = match text("comment") {
        "" => c
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.last())
            .and_then(|h| h.get("comment"))
            .and_then(Value::as_str)
            .unwrap_or_default(),
        own => own,
    };
    let mut optional = |key: &str, v: &str| {
        if !v.is_empty() {
            out.insert(key.into(), json!(v));
        }
    };
    optional("Comment", comment);
    optional("DockerVersion", text("docker_version"));
    optional("Author", text("author"));
    optional("Variant", text("variant"));
    optional("OsVersion", text("os.version"));
    // An image without a creation time: Docker's zero time (as older Docker printed it;
    // newer omits the key), which parses as a time where an empty string would not.
    let created = c.get("created").and_then(Value::as_str);
    out.insert(
        "Created".into(),
        json!(created.map_or_else(|| ZERO_TIME.to_owned(), rfc3339_nano)),
    );
    out.insert("Config".into(), image_config(c.get("config")));
    out.insert("Architecture".into(), json!(text("architecture")));
    out.insert("Os".into(), json!(text("os")));
    out.insert("Size".into(), json!(img.size));
    out.insert(
        "GraphDriver".into(),
        json!({ "Data": Value::Null, "Name": "a3s-box" }),
    );
    out.insert("RootFS".into(), root_fs(c.get("rootfs")));
    // When the image was last tagged is not recorded here: Docker's zero time, as Docker
    // shows for an image it has not tagged itself.
    out.insert("Metadata".into(), json!({ "LastTagTime": ZERO_TIME }));
    out
}

/// `RepoTags` (`busybox:latest`) and `RepoDigests` (`busybox@sha256:...`, the digest the
/// name was pulled by: the index's for a multi-platform image), in Docker's short form.
/// Every name gets a digest, as Docker's containerd image store gives them (its classic store
/// only had digests of pulled or pushed images); each resolves here with `name@digest`.
fn repo_tags_and_digests(names: &[(ImageRef, RefRecord)]) -> (Vec<String>, Vec<String>) {
    let mut tags: Vec<String> = Vec::new();
    let mut digests: Vec<String> = Vec::new();
    for (name, rec) in names {
        if let Some(tag) = name.tag() {
            if let Ok(tagged) = name.with_tag(tag) {
                let tagged = tagged.familiar();
                if !tags.contains(&tagged) {
                    tags.push(tagged);
                }
            }
        }
        let d = name
            .digest()
            .or(rec.index.as_ref())
            .unwrap_or(&rec.manifest)
            .clone();
        let digested = name.with_digest(d).familiar();
        if !digests.contains(&digested) {
            digests.push(digested);
        }
    }
    (tags, digests)
}

/// The image's `config` restricted to [`IMAGE_CONFIG_KEYS`], empty values omitted as Docker
/// omits them (the keys of Docker's older `container.Config`, `Hostname`, `AttachStdin`,
/// `Image`, ..., that Docker-built configs still carry are dropped, as Docker drops them).
fn image_config(config: Option<&Value>) -> Value {
    let mut out = Map::new();
    for key in IMAGE_CONFIG_KEYS {
        let Some(v) = config.and_then(|c| c.get(key)) else {
            continue;
        };
        let empty = match v {
            Value::Null | Value::Bool(false) => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            Value::Bool(true) | Value::Number(_) => false,
        };
        if !empty {
            out.insert(key.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// `{"Type": "layers", "Layers": [diff_ids]}` (`Layers` omitted when there are none, as
/// Docker omits it).
fn root_fs(rootfs: Option<&Value>) -> Value {
    let mut out = Map::new();
    let kind = rootfs
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !kind.is_empty() {
        out.insert("Type".into(), json!(kind));
    }
    let layers: Vec<&str> = rootfs
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !layers.is_empty() {
        out.insert("Layers".into(), json!(layers));
    }
    Value::Object(out)
}

/// An RFC 3339 time as Go's `time.RFC3339Nano` prints it (UTC as `Z`, no trailing zeros in
/// the fraction); unparsable input is passed through.
fn rfc3339_nano(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| rfc3339.to_owned())
}

/// `volume ls --format json`: one object per volume, every value a string, as `docker volume
/// ls` prints it (`Labels` marks anonymous volumes as Docker does).
pub(crate) fn volume_row(v: &VolumeInfo) -> Value {
    let labels = if v.anonymous {
        format!("{ANONYMOUS_LABEL}=")
    } else {
        String::new()
    };
    json!({
        "Availability": "N/A",
        "Driver": v.driver,
        "Group": "N/A",
        "Labels": labels,
        "Links": "N/A",
        "Mountpoint": v.mountpoint.display().to_string(),
        "Name": v.name,
        "Scope": "local",
        "Size": "N/A",
        "Status": "N/A",
    })
}

/// `network ls --format json`: one object per network, every value a string, as `docker
/// network ls` prints it. `internal`: the network has no outbound NAT.
pub(crate) fn network_row(n: &Network, internal: bool) -> Value {
    json!({
        "CreatedAt": go_time(&n.created_at),
        "Driver": "bridge",
        "ID": n.id.chars().take(12).collect::<String>(),
        "IPv6": "false",
        "Internal": internal.to_string(),
        "Labels": "",
        "Name": n.name,
        "Scope": "local",
    })
}

/// `docker.io/library/busybox` as Docker shows it: `busybox`.
fn familiar_repository(name: &str) -> &str {
    let rest = name.strip_prefix("docker.io/").unwrap_or(name);
    if rest.len() == name.len() {
        return name;
    }
    rest.strip_prefix("library/").unwrap_or(rest)
}

/// The `PORTS` column: `127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp`.
pub(crate) fn ports_text(att: &BoxAttachments) -> String {
    att.net
        .ports
        .iter()
        .map(|p| format!("{}:{}->{}/{}", p.host_ip, p.host, p.guest, p.proto.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The network's name as Docker's `Networks` column gives it (`none` and the user-mode
/// network `tsi` by their mode names).
fn network_name(att: &BoxAttachments) -> String {
    match (&att.net.mode, &att.net.network) {
        (NetMode::Bridge, Some(n)) => n.clone(),
        (mode, _) => mode.as_str().to_owned(),
    }
}

/// `ps`'s `Networks` column: every network, comma-separated as Docker prints it.
fn networks_column(att: &BoxAttachments) -> String {
    match att.net.mode {
        NetMode::Bridge => att
            .net
            .attachments()
            .iter()
            .map(|a| a.network.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => network_name(att),
    }
}

/// RFC 3339 as Go's `time.Time.String()` prints it in `CreatedAt` (`2024-05-01 10:00:00
/// +0000 UTC`); unparsable input is passed through.
pub(crate) fn go_time(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let Ok(t) = time::OffsetDateTime::parse(rfc3339, &Rfc3339) else {
        return rfc3339.to_owned();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `2 minutes ago`, Docker's `RunningFor` and `CreatedSince`.
pub(crate) fn ago(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(rfc3339, &Rfc3339) {
        Ok(t) => {
            let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds();
            let d = Duration::from_secs(u64::try_from(secs).unwrap_or(0));
            format!("{} ago", human_duration(d))
        }
        Err(_) => String::new(),
    }
}

/// Docker's `units.HumanSize`: decimal units, three significant digits (`4.26MB`, `12.3kB`).
pub(crate) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    #[allow(clippy::cast_precision_loss)] // three significant digits are shown
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{v:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{text}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_985_628), "1.99MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(12_345), "12.3kB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(3_000_000_000), "3GB");
    }

    #[test]
    fn image_rows_use_docker_names() {
        let row = image_row(
            "docker.io/library/busybox",
            Some("latest"),
            "sha256:3e6dc1d14e3f87f07006dff97b772dcfc7879d82e10e4d5c4042bcbecb13f05b",
            Some("2024-01-02T03:04:05Z"),
            1_985_628,
            false,
        );
        assert_eq!(row["Repository"], "busybox");
        assert_eq!(row["ID"], "3e6dc1d14e3f");
        assert_eq!(row["Size"], "1.99MB");
        assert_eq!(row["CreatedAt"], "2024-01-02 03:04:05 +0000 UTC");
        assert_eq!(
            familiar_repository("docker.io/bitnami/nginx"),
            "bitnami/nginx"
        );
        assert_eq!(
            familiar_repository("127.0.0.1:5000/a/b"),
            "127.0.0.1:5000/a/b"
        );
    }

    /// The image config `scripts/test-images` builds for the nginx test image
    /// (`localhost/a3s-test/nginx:latest`), byte for byte (umoci ends it with a newline).
    const NGINX_CONFIG: &str = concat!(
        r#"{"created":"2024-01-01T00:00:00Z","author":"a3s-test-images","architecture":"amd64","os":"linux","config":{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["nginx","-g","daemon off;"],"WorkingDir":"/","StopSignal":"SIGQUIT"},"rootfs":{"type":"layers","diff_ids":["sha256:e73a3e309653646efac8b97f90e52261dd2864b754f99465a5e37082d2298627"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"scripts/test-images nginx (mmdebstrap/busybox rootfs)"},{"created":"2024-01-01T00:00:00Z","created_by":"umoci config","author":"a3s-test-images","empty_layer":true}]}"#,
        "\n"
    );
    const NGINX_CONFIG_DIGEST: &str =
        "sha256:8f8adbb1cba056d571c93f715cc0fae31c94984a4c85084a635d00583fdb0e7f";
    const NGINX_MANIFEST: &str =
        "sha256:3e373f51eabf9f3e5c7d751a1e04ef07b87479445c47c3b2a3489230f2d41e5e";

    fn reference(s: &str) -> ImageRef {
        s.parse().expect("a valid reference")
    }

    fn digest(s: &str) -> a3s_image::Digest {
        s.parse().expect("a valid digest")
    }

    /// Our fields and Docker's, as `image inspect` joins them, for templates.
    fn render(template: &str, v: &Map<String, Value>) -> String {
        crate::template::render_with_zeros(
            template,
            &Value::Object(v.clone()),
            &image_inspect_zeros(),
        )
        .expect("template renders")
    }

    #[test]
    fn image_inspect_of_the_nginx_test_image_reads_like_docker() {
        use sha2::Digest as _;
        // It is the real blob: its bytes hash to the digest its manifest names.
        assert_eq!(
            format!("sha256:{:x}", sha2::Sha256::digest(NGINX_CONFIG.as_bytes())),
            NGINX_CONFIG_DIGEST
        );
        let config: Value = serde_json::from_str(NGINX_CONFIG).expect("JSON");
        let names = [(
            reference("localhost/a3s-test/nginx:latest"),
            RefRecord {
                manifest: digest(NGINX_MANIFEST),
                index: None,
            },
        )];
        let d = image_inspect_fields(&ImageFacts {
            config_digest: NGINX_CONFIG_DIGEST,
            config: &config,
            names: &names,
            size: 184_896_865,
        });
        assert_eq!(d["Id"], NGINX_CONFIG_DIGEST);
        assert_eq!(d["RepoTags"], json!(["localhost/a3s-test/nginx:latest"]));
        assert_eq!(
            d["RepoDigests"],
            json!([format!("localhost/a3s-test/nginx@{NGINX_MANIFEST}")])
        );
        assert_eq!(d["Created"], "2024-01-01T00:00:00Z");
        assert_eq!(d["Author"], "a3s-test-images");
        assert_eq!(d["Architecture"], "amd64");
        assert_eq!(d["Os"], "linux");
        assert_eq!(d["Size"], 184_896_865);
        assert_eq!(
            d["Config"],
            json!({
                "ExposedPorts": {"80/tcp": {}},
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["nginx", "-g", "daemon off;"],
                "WorkingDir": "/",
                "StopSignal": "SIGQUIT",
            })
        );
        assert_eq!(
            d["RootFS"],
            json!({
                "Type": "layers",
                "Layers": ["sha256:e73a3e309653646efac8b97f90e52261dd2864b754f99465a5e37082d2298627"],
            })
        );
        assert_eq!(d["Metadata"], json!({"LastTagTime": ZERO_TIME}));
        // Omitted when empty, as Docker omits them.
        for key in ["Parent", "Comment", "DockerVersion", "Variant", "OsVersion"] {
            assert!(!d.contains_key(key), "{key}");
        }
        // What Docker's templates print for them.
        assert_eq!(render("{{.Config.ExposedPorts}}", &d), "map[80/tcp:{}]");
        assert_eq!(
            render("{{json .Config.ExposedPorts}}", &d),
            r#"{"80/tcp":{}}"#
        );
        assert_eq!(render("{{.Config.Cmd}}", &d), "[nginx -g daemon off;]");
        assert_eq!(render("{{.Config.User}}|{{.Comment}}", &d), "|");
        assert_eq!(render("{{.Config.Entrypoint}}", &d), "[]");
        assert_eq!(render("{{json .Config.Entrypoint}}", &d), "null");
        assert_eq!(render("{{.Config.Labels}}", &d), "map[]");
        assert_eq!(render("{{.Size}}", &d), "184896865");
    }

    #[test]
    fn image_inspect_of_the_default_busybox_image_reads_like_docker() {
        // The image `run busybox` imports, through the store's own import.
        let dir = tempfile::tempdir().expect("temp dir");
        let tar = dir.path().join("busybox.tar");
        a3s_runtime::boxes::busybox::write_rootfs_tar(&tar).expect("busybox-static is installed");
        let store = a3s_image::ImageStore::open(dir.path().join("images")).expect("store");
        let busybox = reference("busybox");
        let img = store.import_rootfs(&tar, &busybox).expect("import");
        // A second name, in a registry, and a digest-pinned name of the same image.
        let record = store.lookup(&busybox).expect("lookup");
        store
            .set_ref(&reference("127.0.0.1:5000/tools/bb:1"), record.clone())
            .expect("tag");
        let names: Vec<(ImageRef, RefRecord)> = store
            .refs()
            .expect("refs")
            .into_iter()
            .filter(|(_, r)| r.manifest == img.digest)
            .collect();
        let m = store.manifest(&img.digest).expect("manifest");
        let config: Value =
            serde_json::from_slice(&store.read_blob(&m.config.digest).expect("config blob"))
                .expect("JSON");
        let d = image_inspect_fields(&ImageFacts {
            config_digest: m.config.digest.as_str(),
            config: &config,
            names: &names,
            size: 1_982_412,
        });
        let hex = img.digest.as_str();
        assert_eq!(d["Id"], m.config.digest.as_str());
        assert_ne!(d["Id"], hex, "Docker's ID is the config's digest");
        assert_eq!(
            d["RepoTags"],
            json!(["127.0.0.1:5000/tools/bb:1", "busybox:latest"])
        );
        assert_eq!(
            d["RepoDigests"],
            json!([
                format!("127.0.0.1:5000/tools/bb@{hex}"),
                format!("busybox@{hex}")
            ])
        );
        // Imported without a creation time: Docker's zero time.
        assert_eq!(d["Created"], ZERO_TIME);
        assert_eq!(
            render("{{.Config.Env}}", &d),
            "[PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin]"
        );
        assert_eq!(render("{{.Config.Cmd}}", &d), "[/bin/sh]");
        assert_eq!(
            render("{{.RepoTags}}", &d),
            "[127.0.0.1:5000/tools/bb:1 busybox:latest]"
        );
        assert_eq!(render("{{.Config.WorkingDir}}", &d), "");
        assert_eq!(render("{{.Config.ExposedPorts}}", &d), "map[]");
        assert_eq!(
            render("{{json .RootFS.Layers}}", &d),
            serde_json::to_string(&config["rootfs"]["diff_ids"]).expect("JSON")
        );
        assert_eq!(
            render("{{json .Config}}", &d),
            r#"{"Cmd":["/bin/sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}"#
        );
    }

    #[test]
    fn image_inspect_reads_import_changes_and_the_history_comment() {
        // `import -c 'EXPOSE 53/udp' -c 'LABEL tier=dns' -c 'ENTRYPOINT ["/bin/sh"]' -m MSG`.
        let dir = tempfile::tempdir().expect("temp dir");
        let tar = dir.path().join("busybox.tar");
        a3s_runtime::boxes::busybox::write_rootfs_tar(&tar).expect("busybox-static is installed");
        let store = a3s_image::ImageStore::open(dir.path().join("images")).expect("store");
        let mut run = a3s_image::store::Import::default_config();
        run.exposed_ports = Some([("53/udp".to_owned(), json!({}))].into());
        run.labels = Some([("tier".to_owned(), "dns".to_owned())].into());
        run.entrypoint = Some(vec!["/bin/sh".into()]);
        run.user = Some("nobody".into());
        let import = a3s_image::store::Import {
            config: Some(run),
            message: Some("imported for the test".into()),
        };
        let dns = reference("dns:1");
        let img = store
            .import_rootfs_with(&tar, &dns, &import)
            .expect("import");
        let m = store.manifest(&img.digest).expect("manifest");
        let config: Value =
            serde_json::from_slice(&store.read_blob(&m.config.digest).expect("config blob"))
                .expect("JSON");
        let names = store.refs().expect("refs");
        let d = image_inspect_fields(&ImageFacts {
            config_digest: m.config.digest.as_str(),
            config: &config,
            names: &names,
            size: 0,
        });
        assert_eq!(d["Comment"], "imported for the test");
        assert_eq!(d["Config"]["ExposedPorts"], json!({"53/udp": {}}));
        assert_eq!(render("{{.Config.ExposedPorts}}", &d), "map[53/udp:{}]");
        assert_eq!(render("{{.Config.Labels}}", &d), "map[tier:dns]");
        assert_eq!(render(r#"{{index .Config.Labels "tier"}}"#, &d), "dns");
        assert_eq!(render("{{.Config.Entrypoint}}", &d), "[/bin/sh]");
        assert_eq!(render("{{.Config.User}}", &d), "nobody");
        assert_eq!(render("{{.RepoTags}}", &d), "[dns:1]");
    }

    #[test]
    fn repo_digests_name_the_index_an_image_was_pulled_by() {
        let index =
            digest("sha256:ad9fa4d07136a83e69a54ef00102f579d04eba431932de3b0f098cc5d5948f9f");
        let names = [
            (
                reference("busybox:1.36"),
                RefRecord {
                    manifest: digest(NGINX_MANIFEST),
                    index: Some(index.clone()),
                },
            ),
            (
                reference(&format!("busybox@{index}")),
                RefRecord {
                    manifest: digest(NGINX_MANIFEST),
                    index: Some(index.clone()),
                },
            ),
        ];
        let (tags, digests) = repo_tags_and_digests(&names);
        assert_eq!(tags, ["busybox:1.36"]);
        assert_eq!(digests, [format!("busybox@{index}")]);
    }

    #[test]
    fn created_times_print_as_go_rfc3339_nano() {
        assert_eq!(
            rfc3339_nano("2023-05-19T20:19:22.751398522Z"),
            "2023-05-19T20:19:22.751398522Z"
        );
        assert_eq!(
            rfc3339_nano("2022-01-01T00:00:00.000000000Z"),
            "2022-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339_nano("2024-01-01T00:00:00+00:00"),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339_nano("2024-01-01T01:00:00.5+01:00"),
            "2024-01-01T01:00:00.5+01:00"
        );
        assert_eq!(rfc3339_nano("yesterday"), "yesterday");
    }

    #[test]
    fn times_read_like_go() {
        assert_eq!(
            go_time("2026-12-05T13:52:19.943471629Z"),
            "2026-12-05 13:52:19 +0000 UTC"
        );
        assert_eq!(
            go_time("2026-12-05T14:52:19+01:00"),
            "2026-12-05 13:52:19 +0000 UTC"
        );
        assert_eq!(go_time("garbage"), "garbage");
        assert!(ago("2000-01-01T00:00:00Z").ends_with(" years ago"));
    }
}
