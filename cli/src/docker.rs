//! Docker's JSON shapes: the `ps` and `images` `--format json` rows and the top-level fields
//! of `docker inspect` (`Id`, `State`, `Config`, `HostConfig`, `NetworkSettings`, `Mounts`,
//! ...), so scripts written against Docker read ours unchanged.
//! (Keys are Docker's; Go marshals its maps sorted, as a `serde_json::Map` does here.)

use std::time::Duration;

use serde_json::{json, Map, Value};

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
