//! The box lifecycle commands: each parses flags into runtime requests and prints the result.

use serde_json::Value;

pub(crate) mod args;
mod detach_keys;
mod events;
mod health;
pub(crate) use health::human_duration;
mod io;
pub(crate) mod ps;
mod pull;
mod stats;
pub(crate) mod tee;
mod top;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;

use a3s_runtime::boxes::{BoxError, BoxRecord, BoxState, CreateRequest, DEFAULT_MEM_MIB};
use a3s_runtime::engine::{CreateBox, Engine, LogRequest, RunMode};
use a3s_runtime::A3sHome;

use self::args::{BoxCommand, CreateArgs};
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

pub(crate) fn run(cmd: BoxCommand) -> anyhow::Result<ExitStatus> {
    let home = A3sHome::from_env()?;
    let engine = Engine::open(&home);
    match cmd {
        BoxCommand::Run(a) => run_box(&engine, a),
        BoxCommand::Create(a) => {
            let req = create_box(&a)?;
            let cidfile = CidFile::reserve(a.cidfile.as_deref())?;
            pull::ensure_image(&engine, &a)?;
            let rec = engine.create(&req).engine()?;
            cidfile.write(rec.id.as_str())?;
            output::line(rec.id.as_str())?;
            Ok(ExitStatus::Success)
        }
        BoxCommand::Start(a) if a.attach => io::start_attached(&engine, &a),
        BoxCommand::Start(a) => each(&a.boxes, |key| {
            notice_tcg();
            let rec = engine.start(key).engine()?;
            output::line(&rec.name)
        }),
        BoxCommand::Stop(a) => {
            let opts = stop_options(&a)?;
            each(&a.boxes, |key| {
                let rec = engine.stop(key, opts).engine()?;
                output::line(&rec.name)
            })
        }
        BoxCommand::Restart(a) => {
            let opts = stop_options(&a)?;
            each(&a.boxes, |key| {
                let rec = engine.restart(key, opts).engine()?;
                output::line(&rec.name)
            })
        }
        BoxCommand::Kill(a) => {
            let signal = parse_signal(&a.signal).map_err(usage_error)?;
            each(&a.boxes, |key| {
                let rec = engine.kill(key, signal).engine()?;
                output::line(&rec.name)
            })
        }
        BoxCommand::Rm(a) => each(&a.boxes, |key| {
            let rec = engine
                .remove_with_volumes(key, a.force, a.volumes)
                .engine()?;
            output::line(&rec.name)
        }),
        BoxCommand::Ps(a) => ps::ps(&engine, &a),
        BoxCommand::Rename(a) => {
            engine.rename(&a.r#box, &a.new_name).engine()?;
            Ok(ExitStatus::Success)
        }
        BoxCommand::Logs(a) => {
            let now = time::OffsetDateTime::now_utc();
            let at = |flag: &str, v: &Option<String>| -> anyhow::Result<_> {
                v.as_deref()
                    .map(|t| a3s_runtime::boxes::logs::parse_log_time(t, now))
                    .transpose()
                    .map_err(|e| usage_error(anyhow::Error::new(e).context(flag.to_owned())))
            };
            let req = LogRequest {
                follow: a.follow,
                tail: a.tail,
                since: at("--since", &a.since)?,
                until: at("--until", &a.until)?,
            };
            engine
                .logs(&a.r#box, req, &mut |r| io::print_records(r, a.timestamps))
                .engine()?;
            Ok(ExitStatus::Success)
        }
        BoxCommand::Exec(a) => io::exec(&engine, &a),
        BoxCommand::Attach(a) => io::attach(&engine, &a),
        BoxCommand::Wait(a) => each(&a.boxes, |key| {
            let rec = engine.wait(key).engine()?;
            output::line(&exit_code(&rec).to_string())
        }),
        BoxCommand::Inspect(a) => {
            let recs = a
                .boxes
                .iter()
                .map(|k| engine.inspect(k).engine())
                .collect::<anyhow::Result<Vec<_>>>()?;
            let views = recs
                .iter()
                .map(|r| {
                    // Our record, with Docker's top-level fields beside it.
                    let mut v = health::inspect_view(r)?;
                    let att = engine.attachments(r).engine()?;
                    if let Some(obj) = v.as_object_mut() {
                        for (k, docker) in crate::docker::inspect_fields(r, &att) {
                            // HostConfig's security fields are already there: add beside them.
                            match (obj.get_mut(&k), docker) {
                                (Some(Value::Object(have)), Value::Object(more)) => {
                                    for (f, x) in more {
                                        have.entry(f).or_insert(x);
                                    }
                                }
                                (_, docker) => {
                                    obj.insert(k, docker);
                                }
                            }
                        }
                    }
                    Ok(v)
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            match &a.format {
                None => output::json(&views)?,
                Some(t) if t == "json" => output::json(&views)?,
                Some(t) => {
                    for v in &views {
                        let text = crate::template::render(t, v)
                            .map_err(|e| usage_error(anyhow::Error::new(e)))?;
                        output::line(&text)?;
                    }
                }
            }
            Ok(ExitStatus::Success)
        }
        BoxCommand::Stats(a) => stats::stats(&engine, &a),
        BoxCommand::Import(a) => {
            let reference: a3s_image::ImageRef = a.reference.parse().map_err(|e| {
                usage_error(anyhow::anyhow!("invalid image name {:?}: {e}", a.reference))
            })?;
            let import = import_changes(&a.change, a.message.clone())?;
            let image = engine
                .import_rootfs(&a.tarball, &reference, &import)
                .engine()?;
            output::line(image.digest.as_str())?;
            Ok(ExitStatus::Success)
        }
        // --- issue 20 ---
        BoxCommand::Pause(a) => each(&a.boxes, |key| {
            let rec = engine.pause(key).engine()?;
            output::line(&rec.name)
        }),
        BoxCommand::Unpause(a) => each(&a.boxes, |key| {
            let rec = engine.unpause(key).engine()?;
            output::line(&rec.name)
        }),
        BoxCommand::Top(a) => top::top(&engine, &a),
        BoxCommand::Events(a) => events::events(&engine, &a),
        BoxCommand::Monitor(a) => {
            let id =
                a.id.parse()
                    .map_err(|e| usage_error(anyhow::Error::new(e)))?;
            engine.serve_monitor(&id).engine()?;
            Ok(ExitStatus::Success)
        }
    }
}

/// Runs `f` for every box named; reports each failure and exits 125 if any failed (like Docker).
fn each(
    keys: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<ExitStatus> {
    let mut last_err = None;
    for key in keys {
        if let Err(e) = f(key) {
            if keys.len() == 1 {
                return Err(e);
            }
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            last_err = Some(e);
        }
    }
    match last_err {
        Some(_) => Err(anyhow::Error::new(crate::ExitCodeError {
            code: 125,
            error: anyhow::anyhow!("some boxes failed"),
        })),
        None => Ok(ExitStatus::Success),
    }
}

/// One line on stderr when VMs run under emulation.
pub(super) fn notice_tcg() {
    let kvm = a3s_vmm::accel::probe_kvm(Path::new("/"));
    let choice = a3s_vmm::accel::choose(
        kvm,
        std::env::var(a3s_vmm::accel::ACCEL_ENV).ok().as_deref(),
    );
    if let Ok(c) = &choice {
        if c.accel == a3s_vmm::accel::Accel::Tcg && std::env::var_os("A3S_BOX_QUIET").is_none() {
            let _ = writeln!(
                std::io::stderr(),
                "notice: no usable KVM ({}): the VM runs under TCG emulation, expect boots of several seconds",
                c.reason
            );
        }
    }
}

fn run_box(engine: &Engine, a: args::RunArgs) -> anyhow::Result<ExitStatus> {
    let req = create_box(&a.create)?;
    let cidfile = CidFile::reserve(a.create.cidfile.as_deref())?;
    pull::ensure_image(engine, &a.create)?;
    let mut terminal = io::Terminal::new(engine, req.request.tty, &a.attach)?.with_cidfile(cidfile);
    if a.detach {
        let out = engine
            .run(&req, RunMode::Detached, &mut terminal)
            .engine()?;
        output::line(out.record.id.as_str())?;
        return Ok(ExitStatus::Success);
    }
    let out = engine
        .run(&req, RunMode::Foreground, &mut terminal)
        .engine()?;
    drop(terminal);
    // No exit code: the user detached and the box runs on (exit 0, like Docker).
    Ok(io::exit_status(out.exit_code))
}

/// `create`/`run` flags as an engine request: the box and its signature gate.
fn create_box(a: &CreateArgs) -> anyhow::Result<CreateBox> {
    Ok(CreateBox {
        request: create_request(a)?,
        signatures: tee::signature_gate(&a.tee)?,
    })
}

fn create_request(a: &CreateArgs) -> anyhow::Result<CreateRequest> {
    if let Some(gpus) = &a.gpus {
        return Err(usage_error(anyhow::anyhow!(
            "--gpus {gpus}: GPUs cannot be passed into a box: each box is a MicroVM with only \
             virtio devices (no device passthrough); run GPU workloads outside a3s-box"
        )));
    }
    if let Some(p) = &a.platform {
        check_platform(p).map_err(usage_error)?;
    }
    if let Some(sig) = &a.stop_signal {
        parse_signal(sig).map_err(|e| usage_error(e.context("--stop-signal")))?;
    }
    let mut env = Vec::new();
    for file in &a.env_file {
        let text = crate::input::read_text_limited(file, crate::input::TEXT_MAX_BYTES, "env file")?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            env.extend(env_entry(line));
        }
    }
    for e in &a.env {
        env.extend(env_entry(e));
    }
    let mut hosts = Vec::new();
    for h in &a.add_host {
        hosts.push(a3s_runtime::network::parse_add_host(h).map_err(|e| usage_error(e.into()))?);
    }
    if let Some(h) = &a.hostname {
        a3s_runtime::network::check_hostname(h).map_err(|e| usage_error(e.into()))?;
    }
    // `--memory` limits the workload, as Docker's does (0: no limit); the VM is sized for it.
    let memory_limit_bytes = match &a.memory {
        Some(m) => Some(parse_memory_bytes(m).map_err(usage_error)?).filter(|b| *b > 0),
        None => None,
    };
    // Out-of-range numbers are bad flag values (exit 2), like every other bad flag.
    let mem_mib = u64::from(DEFAULT_MEM_MIB);
    a3s_vmm::VmConfig::resources(a.cpus, mem_mib).map_err(|e| usage_error(e.into()))?;
    if let Some(limit) = memory_limit_bytes {
        a3s_vmm::memory::check_limit(limit).map_err(|e| usage_error(e.into()))?;
    }
    let (mounts, security) = mounts_and_security(a)?;
    Ok(CreateRequest {
        image: a.image.clone(),
        name: a.name.clone(),
        args: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        hosts,
        stdin: a.interactive,
        tty: a.tty,
        tty_size: if a.tty { io::terminal_size() } else { None },
        vcpus: a.cpus,
        mem_mib,
        memory_limit_bytes,
        pod_memory_bytes: None,
        kernel_args: a.kernel_arg.clone(),
        auto_remove: a.rm,
        net: a.net.box_net()?,
        publish_all: a.net.publish_all,
        mounts,
        tee: tee::tee_spec(&a.tee)?,
        health: a.health.options()?,
        layer_bytes: layer_bytes(&a.storage_opt).map_err(usage_error)?,
        labels: labels(&a.label).map_err(usage_error)?,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        restart: a.restart.unwrap_or_default(),
        security: Some(security),
    })
}

/// `-v` and `--mount` mounts, and the security flags with `--mount type=tmpfs` among the
/// tmpfs mounts; every bad value is a usage error (exit 2).
fn mounts_and_security(
    a: &CreateArgs,
) -> anyhow::Result<(
    Vec<a3s_runtime::volumes::MountSpec>,
    a3s_runtime::boxes::security::SecurityConfig,
)> {
    use a3s_runtime::boxes::security::{parse_mount, MountFlag, SecurityConfig};
    let mut mounts = a.volumes.mounts()?;
    let mut security =
        SecurityConfig::from_flags(&a.security.flags()).map_err(|e| usage_error(e.into()))?;
    for m in &a.security.mount {
        match parse_mount(m).map_err(|e| usage_error(e.into()))? {
            MountFlag::Volume(spec) => {
                spec.check_host().map_err(|e| usage_error(e.into()))?;
                mounts.push(spec);
            }
            MountFlag::Tmpfs { path, options } => security
                .add_tmpfs(path, options)
                .map_err(|e| usage_error(e.into()))?,
            _ => bail!("--mount {m}: unsupported mount"),
        }
    }
    a3s_runtime::volumes::check_targets(&mounts).map_err(|e| usage_error(e.into()))?;
    if let Some(m) = mounts
        .iter()
        .find(|m| security.tmpfs.contains_key(&m.target))
    {
        return Err(usage_error(anyhow::anyhow!(
            "{} is mounted twice: as a tmpfs and as a volume or bind mount",
            m.target
        )));
    }
    Ok((mounts, security))
}

/// `--platform`: boxes are x86-64 Linux MicroVMs.
fn check_platform(p: &str) -> anyhow::Result<()> {
    match p.trim().to_ascii_lowercase().as_str() {
        "linux/amd64" | "linux/x86_64" | "linux/amd64/v1" | "amd64" => Ok(()),
        other => bail!(
            "--platform {other}: boxes run linux/amd64 only (each box is an x86-64 MicroVM on this host)"
        ),
    }
}

/// `-l KEY=VALUE` (a bare `KEY` gets an empty value, as in Docker).
fn labels(raw: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    for l in raw {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        if k.trim().is_empty() {
            bail!("--label {l:?}: the key is empty (use KEY=VALUE)");
        }
        labels.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// `--cidfile`: refused before anything is created when the file exists (as Docker does),
/// written with the id once the box exists.
pub(super) struct CidFile(Option<std::path::PathBuf>);

impl CidFile {
    fn reserve(path: Option<&Path>) -> anyhow::Result<Self> {
        if let Some(p) = path {
            if p.exists() {
                return Err(usage_error(anyhow::anyhow!(
                    "--cidfile {}: the file exists; remove it or choose another",
                    p.display()
                )));
            }
        }
        Ok(Self(path.map(Path::to_path_buf)))
    }

    pub(super) fn write(&self, id: &str) -> anyhow::Result<()> {
        if let Some(p) = &self.0 {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("writing --cidfile {}: {e}", p.display()))?;
            f.write_all(id.as_bytes())?;
        }
        Ok(())
    }
}

/// `--storage-opt size=N` (the only option: the writable layer's size).
fn layer_bytes(opts: &[String]) -> anyhow::Result<Option<u64>> {
    let mut size = None;
    for o in opts {
        match o.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("size") => {
                size = Some(
                    a3s_vmm::disk::parse_size(v)
                        .map_err(|e| anyhow::anyhow!("--storage-opt size: {e}"))?,
                );
            }
            _ => anyhow::bail!(
                "--storage-opt {o:?} is not supported: the only storage option is size=N (e.g. size=20g)"
            ),
        }
    }
    Ok(size)
}

/// `KEY=value` as is; a bare `KEY` takes this process's value (and is dropped when unset).
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_owned())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// Docker's memory syntax: bytes, or a number with b/k/m/g; returns bytes.
fn parse_memory_bytes(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('b') => (&t[..t.len() - 1], 1u64),
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t.as_str(), 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("--memory {s:?}: expected a size such as 512m or 1g"))?;
    Ok(n.saturating_mul(mult))
}

/// `stop`/`restart` flags; what is not given comes from the box.
fn stop_options(a: &args::StopArgs) -> anyhow::Result<a3s_runtime::boxes::StopOptions> {
    Ok(a3s_runtime::boxes::StopOptions {
        timeout: a.time.map(Duration::from_secs),
        signal: a
            .signal
            .as_deref()
            .map(parse_signal)
            .transpose()
            .map_err(usage_error)?,
    })
}

fn parse_signal(s: &str) -> anyhow::Result<i32> {
    Ok(a3s_runtime::boxes::signal::parse_signal(s)?)
}

fn exit_code(rec: &BoxRecord) -> i32 {
    match &rec.state {
        BoxState::Exited { exit_code, .. } => *exit_code,
        _ => 0,
    }
}

/// `import --change`: the Dockerfile instructions applied to the default import config, the
/// way a build step applies them.
fn import_changes(
    changes: &[String],
    message: Option<String>,
) -> anyhow::Result<a3s_image::store::Import> {
    use a3s_image::store::Import;
    let config = if changes.is_empty() {
        None
    } else {
        let mut json = serde_json::json!({ "config": Import::default_config() });
        a3s_build::apply_changes(&mut json, changes).map_err(|e| usage_error(e.into()))?;
        Some(serde_json::from_value(json["config"].take())?)
    };
    Ok(Import { config, message })
}

/// Hints from box errors anywhere in the chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(e) = cause.downcast_ref::<BoxError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_image::StoreError>() {
        e.hint()
    } else if let Some(e) = cause.downcast_ref::<a3s_runtime::boxes::health::HealthError>() {
        e.hint()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_follow_docker() {
        assert_eq!(parse_memory_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory_bytes("268435456").unwrap(), 256 << 20);
        assert_eq!(parse_memory_bytes("6291456b").unwrap(), 6 << 20);
        assert!(parse_memory_bytes("lots").is_err());
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("sigterm").unwrap(), 15);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
