//! Running one CNI plugin (the CNI exec protocol): `CNI_COMMAND`, `CNI_CONTAINERID`,
//! `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS` and `CNI_PATH` in the environment, the plugin's
//! configuration on stdin (with the network's `name` and `cniVersion`, the previous plugin's
//! result as `prevResult`, and the capability arguments it declared as `runtimeConfig`), its
//! result or error JSON on stdout. Output is bounded and a hung plugin is killed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::config::{plugin_capable, NetworkList};
use super::CniError;

/// A plugin printing more than this is refused (results are a few kilobytes).
const MAX_STDOUT: u64 = 1 << 20;
/// Kept of a plugin's stderr, for messages.
const MAX_STDERR: u64 = 64 << 10;
/// A plugin that has not finished by then is killed (bridge and host-local take milliseconds;
/// iptables under a busy lock can take seconds).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The CNI operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Attach the container to the network.
    Add,
    /// Release what ADD set up (idempotent).
    Del,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
        }
    }
}

/// What every plugin of one pod's chain is invoked with.
#[derive(Clone, Debug)]
pub struct Invocation<'a> {
    /// `CNI_CONTAINERID`: the pod's id.
    pub container_id: &'a str,
    /// `CNI_NETNS`: the pod's network namespace (empty when it is gone, on DEL).
    pub netns: &'a Path,
    /// `CNI_IFNAME`: the interface to create in it.
    pub ifname: &'a str,
    /// `CNI_ARGS`: `K=V` pairs (Kubernetes' pod name, namespace, uid).
    pub args: &'a [(String, String)],
    /// `CNI_PATH`: where plugin binaries are looked up.
    pub bin_dirs: &'a [PathBuf],
    /// Capability arguments (`portMappings`, ...), passed to the plugins that declare them.
    pub capability_args: &'a Map<String, Value>,
}

/// The binary of plugin `kind` in the first of `dirs` that has it.
///
/// # Errors
/// [`CniError::PluginMissing`].
pub fn locate(kind: &str, dirs: &[PathBuf]) -> Result<PathBuf, CniError> {
    dirs.iter()
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| CniError::PluginMissing {
            plugin: kind.to_owned(),
            dirs: dirs.to_vec(),
        })
}

/// The configuration plugin `plugin` of `net` reads on stdin.
pub fn stdin_config(
    net: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(net.name.clone()));
    conf.insert("cniVersion".into(), Value::String(net.cni_version.clone()));
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime: Map<String, Value> = capability_args
        .iter()
        .filter(|(k, _)| plugin_capable(plugin, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// The environment of one invocation (besides the inherited one: plugins run `iptables`).
pub fn environment(op: Op, inv: &Invocation<'_>) -> Vec<(String, String)> {
    let args = inv
        .args
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    let path = std::env::join_paths(inv.bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    vec![
        ("CNI_COMMAND".into(), op.as_str().into()),
        ("CNI_CONTAINERID".into(), inv.container_id.into()),
        ("CNI_NETNS".into(), inv.netns.to_string_lossy().into_owned()),
        ("CNI_IFNAME".into(), inv.ifname.into()),
        ("CNI_ARGS".into(), args),
        ("CNI_PATH".into(), path),
    ]
}

/// Spawns `command`, again while its binary is "text file busy" (ETXTBSY): a file is busy
/// while any process holds it open for writing, and a process that forks while this one (or
/// an installer) has the plugin open inherits that descriptor until its own exec. libcni
/// retries the same way.
fn spawn_unless_busy(command: &mut Command) -> std::io::Result<std::process::Child> {
    let mut wait = Duration::from_millis(50);
    for _ in 0..5 {
        match command.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            other => return other,
        }
    }
    command.spawn()
}

/// Runs plugin `plugin` of `net` for `op`; returns its result (ADD) or `None` (DEL).
///
/// # Errors
/// [`CniError::PluginMissing`], [`CniError::Plugin`] with the plugin's own error,
/// [`CniError::PluginOutput`] for output that is not a result.
pub fn run(
    op: Op,
    inv: &Invocation<'_>,
    net: &NetworkList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
) -> Result<Option<Value>, CniError> {
    let kind = plugin
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let binary = locate(&kind, inv.bin_dirs)?;
    let input =
        serde_json::to_vec(&stdin_config(net, plugin, prev, inv.capability_args)).map_err(|e| {
            CniError::PluginOutput {
                plugin: kind.clone(),
                why: format!("encoding its configuration: {e}"),
            }
        })?;
    let spawn_err = |e: std::io::Error| CniError::Plugin {
        plugin: kind.clone(),
        op: op.as_str(),
        code: None,
        message: format!("cannot run {}: {e}", binary.display()),
    };
    let mut command = Command::new(&binary);
    command
        .envs(environment(op, inv))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_unless_busy(&mut command).map_err(spawn_err)?;
    let stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&input);
        }
    });
    let out = child.stdout.take().map(|s| bounded_reader(s, MAX_STDOUT));
    let err = child.stderr.take().map(|s| bounded_reader(s, MAX_STDERR));
    let deadline = Instant::now() + PLUGIN_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CniError::Plugin {
                    plugin: kind,
                    op: op.as_str(),
                    code: None,
                    message: format!("did not finish in {PLUGIN_TIMEOUT:?} and was killed"),
                });
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = writer.join();
    let (stdout, over) = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stderr, _) = err.and_then(|h| h.join().ok()).unwrap_or_default();
    if over {
        return Err(CniError::PluginOutput {
            plugin: kind,
            why: format!("it printed more than {MAX_STDOUT} bytes"),
        });
    }
    if !status.success() {
        return Err(plugin_error(&kind, op, &stdout, &stderr, status.code()));
    }
    if op == Op::Del {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&stdout) {
        Ok(v @ Value::Object(_)) => Ok(Some(v)),
        _ => Err(CniError::PluginOutput {
            plugin: kind,
            why: format!(
                "its ADD result is not a JSON object: {:?}",
                String::from_utf8_lossy(&stdout[..stdout.len().min(200)])
            ),
        }),
    }
}

/// The plugin's error JSON (`{"code": N, "msg": "...", "details": "..."}`), else its stderr.
fn plugin_error(kind: &str, op: Op, stdout: &[u8], stderr: &[u8], exit: Option<i32>) -> CniError {
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(stdout).ok();
    let text = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (code, message) = match parsed {
        Some(m) => {
            let msg = text(&m, "msg").unwrap_or_else(|| "no message".into());
            let message = match text(&m, "details") {
                Some(d) => format!("{msg}: {d}"),
                None => msg,
            };
            (m.get("code").and_then(Value::as_u64), message)
        }
        None => {
            let e = String::from_utf8_lossy(stderr).trim().to_owned();
            let e = if e.is_empty() {
                format!("exited with {exit:?} and printed no error")
            } else {
                e
            };
            (None, e)
        }
    };
    CniError::Plugin {
        plugin: kind.to_owned(),
        op: op.as_str(),
        code,
        message,
    }
}

/// Reads at most `limit` bytes (the rest is drained so the plugin never blocks on a full
/// pipe); the flag says whether there was more.
fn bounded_reader(
    mut r: impl Read + Send + 'static,
    limit: u64,
) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut r).take(limit + 1).read_to_end(&mut buf);
        let over = buf.len() as u64 > limit;
        if over {
            buf.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        }
        (buf, over)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn net() -> NetworkList {
        let text = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
            {"type":"bridge","bridge":"cni0"},
            {"type":"portmap","capabilities":{"portMappings":true}}]}"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("10.conflist");
        std::fs::write(&p, text).unwrap();
        NetworkList::load(&p).unwrap()
    }

    #[test]
    fn stdin_carries_name_version_prev_result_and_declared_capabilities_only() {
        let n = net();
        let caps: Map<String, Value> = serde_json::from_str(
            r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#,
        )
        .unwrap();
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let bridge = stdin_config(&n, &n.plugins[0], None, &caps);
        assert_eq!(bridge["name"], "podnet");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert_eq!(bridge["bridge"], "cni0");
        assert!(bridge.get("prevResult").is_none());
        assert!(bridge.get("runtimeConfig").is_none(), "{bridge}");
        let portmap = stdin_config(&n, &n.plugins[1], Some(&prev), &caps);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
    }

    #[test]
    fn the_environment_names_the_command_pod_netns_interface_args_and_path() {
        let caps = Map::new();
        let args = vec![
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("K8S_POD_NAME".to_owned(), "web".to_owned()),
        ];
        let dirs = vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")];
        let inv = Invocation {
            container_id: "abc",
            netns: Path::new("/run/netns/a3s-abc"),
            ifname: "eth0",
            args: &args,
            bin_dirs: &dirs,
            capability_args: &caps,
        };
        let env: std::collections::BTreeMap<_, _> =
            environment(Op::Del, &inv).into_iter().collect();
        assert_eq!(env["CNI_COMMAND"], "DEL");
        assert_eq!(env["CNI_CONTAINERID"], "abc");
        assert_eq!(env["CNI_NETNS"], "/run/netns/a3s-abc");
        assert_eq!(env["CNI_IFNAME"], "eth0");
        assert_eq!(env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(env["CNI_PATH"], "/usr/lib/cni:/opt/cni/bin");
    }

    /// A real executable standing in for a plugin: the protocol is what is under test here
    /// (the real plugins are driven by the CRI e2e tests).
    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Pod `abc`'s eth0 in `/run/netns/x`, plugins looked up in `dirs`.
    fn invocation<'a>(dirs: &'a [PathBuf], caps: &'a Map<String, Value>) -> Invocation<'a> {
        Invocation {
            container_id: "abc",
            netns: Path::new("/run/netns/x"),
            ifname: "eth0",
            args: &[],
            bin_dirs: dirs,
            capability_args: caps,
        }
    }

    #[test]
    fn results_errors_and_missing_binaries_come_back_as_the_plugin_said() {
        let dir = tempfile::tempdir().unwrap();
        // Echoes what it was given, as a result.
        script(
            dir.path(),
            "bridge",
            r#"conf=$(cat); printf '{"cniVersion":"1.0.0","ips":[],"dns":{"nameservers":["%s","%s"]}}' "$CNI_COMMAND" "$CNI_IFNAME""#,
        );
        script(
            dir.path(),
            "portmap",
            r#"cat >/dev/null; echo '{"code":7,"msg":"failed to set up chain","details":"iptables: no chain"}'; exit 1"#,
        );
        let mut n = net();
        let caps = Map::new();
        let dirs = vec![dir.path().join("none"), dir.path().to_owned()];
        let inv = invocation(&dirs, &caps);
        let r = run(Op::Add, &inv, &n, &n.plugins[0], None)
            .unwrap()
            .unwrap();
        assert_eq!(r["dns"]["nameservers"][0], "ADD");
        assert_eq!(r["dns"]["nameservers"][1], "eth0");
        assert_eq!(run(Op::Del, &inv, &n, &n.plugins[0], None).unwrap(), None);
        let e = run(Op::Add, &inv, &n, &n.plugins[1], Some(&r)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("portmap")
                && text.contains("ADD")
                && text.contains("failed to set up chain: iptables: no chain"),
            "{text}"
        );
        n.plugins[0].insert("type".into(), Value::String("absent".into()));
        let e = run(Op::Add, &inv, &n, &n.plugins[0], None).unwrap_err();
        assert!(matches!(e, CniError::PluginMissing { .. }), "{e}");
        assert!(e.to_string().contains("absent"), "{e}");
        script(
            dir.path(),
            "chatty",
            "cat >/dev/null; head -c 2000000 /dev/zero",
        );
        n.plugins[0].insert("type".into(), Value::String("chatty".into()));
        let e = run(Op::Add, &inv, &n, &n.plugins[0], None).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        script(dir.path(), "quiet", "cat >/dev/null; echo oops >&2; exit 3");
        n.plugins[0].insert("type".into(), Value::String("quiet".into()));
        let e = run(Op::Add, &inv, &n, &n.plugins[0], None).unwrap_err();
        assert!(e.to_string().contains("oops"), "{e}");
    }

    #[test]
    fn a_plugin_held_open_for_writing_a_moment_is_run_once_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "bridge",
            r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","ips":[]}'"#,
        );
        // Held open for writing, as a forking thread or an installer would: exec fails with
        // "text file busy" until it is closed.
        let held = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("bridge"))
            .unwrap();
        let busy = Command::new(dir.path().join("bridge")).spawn().unwrap_err();
        assert_eq!(busy.raw_os_error(), Some(libc::ETXTBSY), "{busy}");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(120));
            drop(held);
        });
        let n = net();
        let caps = Map::new();
        let dirs = vec![dir.path().to_owned()];
        let inv = invocation(&dirs, &caps);
        let r = run(Op::Add, &inv, &n, &n.plugins[0], None);
        release.join().unwrap();
        assert!(matches!(r, Ok(Some(_))), "{r:?}");
    }
}
