//! Arguments of the box lifecycle commands (`run`, `ps`, `exec`, ...), Docker's spellings.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::args::FormatArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum BoxCommand {
    /// Create a box from an image and start it (foreground unless -d).
    Run(RunArgs),
    /// Create a box without starting it.
    Create(CreateArgs),
    /// Start created or stopped boxes.
    Start(StartArgs),
    /// Stop running boxes: SIGTERM, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Stop and start boxes again.
    Restart(StopArgs),
    /// Send a signal to the workload of running boxes.
    Kill(KillArgs),
    /// Remove boxes.
    Rm(RmArgs),
    /// List boxes.
    Ps(PsArgs),
    /// Print a box's workload output.
    Logs(LogsArgs),
    /// Run a command in a running box.
    Exec(ExecArgs),
    /// Connect this terminal to a running box's workload (its output, stdin and signals).
    Attach(AttachArgs),
    /// Wait until boxes stop; print their exit codes.
    Wait(BoxesArgs),
    /// Rename a box.
    Rename(RenameArgs),
    /// Print boxes' full state as JSON (or through a --format template).
    Inspect(InspectArgs),
    /// Show CPU and memory use of running boxes (one sample).
    Stats(StatsArgs),
    /// Import a rootfs tarball (tar, tar.gz, tar.zst) as an image.
    Import(ImportArgs),
    // --- issue 20 ---
    /// Pause boxes: stop their vCPUs (memory is kept).
    Pause(BoxesArgs),
    /// Unpause paused boxes.
    Unpause(BoxesArgs),
    /// Show the processes of a box's workload (from inside its VM).
    Top(TopArgs),
    /// Stream box lifecycle events (create, start, die, stop, kill, pause, ...) until Ctrl-C.
    Events(EventsArgs),
    /// (internal) Own one box's VM; started by `run`/`start`.
    #[command(name = "__monitor", hide = true)]
    Monitor(MonitorArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Name of the box (unique).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Set an environment variable (KEY=value, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub(crate) env: Vec<String>,
    /// Read environment variables from a file (KEY=value lines; # comments).
    #[arg(long, value_name = "FILE")]
    pub(crate) env_file: Vec<PathBuf>,
    /// Working directory inside the box.
    #[arg(short = 'w', long)]
    pub(crate) workdir: Option<String>,
    /// User (name, uid, name:group or uid:gid).
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub(crate) entrypoint: Option<String>,
    /// Hostname inside the box (default: the short box id).
    #[arg(long)]
    pub(crate) hostname: Option<String>,
    /// Add an /etc/hosts entry (NAME:ADDRESS).
    #[arg(long = "add-host", value_name = "NAME:ADDRESS")]
    pub(crate) add_host: Vec<String>,
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Memory limit of the workload (bytes, or with k/m/g suffix; at least 6m; 0: none). The
    /// VM is sized to hold it beside the guest's own share; without it the VM has 512m.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub(crate) memory: Option<String>,
    /// vCPUs.
    #[arg(long, default_value_t = 1)]
    pub(crate) cpus: u32,
    /// Append an argument to the guest kernel command line.
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub(crate) kernel_arg: Vec<String>,
    /// Remove the box when it exits.
    #[arg(long)]
    pub(crate) rm: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped (the box's monitor restarts
    /// it with Docker's back-off: 100 ms doubling to 1 min).
    #[arg(long, value_name = "POLICY", value_parser = a3s_runtime::boxes::restart::RestartPolicy::parse)]
    pub(crate) restart: Option<a3s_runtime::boxes::restart::RestartPolicy>,
    /// Storage driver options; `size=N` (e.g. 20g) sets the writable layer's size (default 10g).
    #[arg(long = "storage-opt", value_name = "OPT=VALUE")]
    pub(crate) storage_opt: Vec<String>,
    /// Set metadata on the box (`ps --filter label=KEY[=VALUE]` finds it).
    #[arg(short = 'l', long = "label", value_name = "KEY[=VALUE]")]
    pub(crate) label: Vec<String>,
    /// Signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) stop_signal: Option<String>,
    /// Seconds `stop` waits for the workload before killing the box (default 10).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) stop_timeout: Option<u64>,
    /// Image platform; boxes are linux/amd64 MicroVMs, other platforms are refused.
    #[arg(long, value_name = "OS/ARCH")]
    pub(crate) platform: Option<String>,
    /// Pull the image first: always, missing (when it is not in the store) or never.
    #[arg(long, value_name = "POLICY", default_value = "missing",
          value_parser = ["always", "missing", "never"])]
    pub(crate) pull: String,
    /// Write the box id to this file (which must not exist).
    #[arg(long, value_name = "FILE")]
    pub(crate) cidfile: Option<PathBuf>,
    /// GPUs to pass in: not supported (refused with the reason).
    #[arg(long, value_name = "GPUS")]
    pub(crate) gpus: Option<String>,
    #[command(flatten)]
    pub(crate) net: crate::commands::network::NetArgs,
    #[command(flatten)]
    pub(crate) volumes: crate::commands::volume::MountArgs,
    #[command(flatten)]
    pub(crate) tee: TeeArgs,
    #[command(flatten)]
    pub(crate) health: super::health::HealthArgs,
    #[command(flatten)]
    pub(crate) security: SecurityArgs,
    /// Image (e.g. busybox).
    pub(crate) image: String,
    /// Command and arguments (replace the image's cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

/// Docker's security and resource flags, applied by guest-init inside the VM.
#[derive(Debug, Args)]
pub(crate) struct SecurityArgs {
    /// Mount the box's root filesystem read-only (use --tmpfs or volumes for writable paths).
    #[arg(long, help_heading = "Security and resources")]
    pub(crate) read_only: bool,
    /// Mount a tmpfs (Docker's defaults noexec,nosuid,nodev; options like size=64m,mode=1777,exec).
    #[arg(
        long,
        value_name = "PATH[:OPTIONS]",
        help_heading = "Security and resources"
    )]
    pub(crate) tmpfs: Vec<String>,
    /// Mount a bind, volume or tmpfs: type=bind|volume|tmpfs,source=..,target=..[,readonly]
    /// [,volume-nocopy][,tmpfs-size=N][,tmpfs-mode=OCTAL].
    #[arg(long, value_name = "SPEC", help_heading = "Security and resources")]
    pub(crate) mount: Vec<String>,
    /// Size of /dev/shm (default 64m).
    #[arg(long, value_name = "SIZE", help_heading = "Security and resources")]
    pub(crate) shm_size: Option<String>,
    /// Resource limit, e.g. nofile=1024:2048 (-1: unlimited).
    #[arg(
        long,
        value_name = "NAME=SOFT[:HARD]",
        help_heading = "Security and resources"
    )]
    pub(crate) ulimit: Vec<String>,
    /// Namespaced kernel parameter (net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*).
    #[arg(
        long,
        value_name = "KEY=VALUE",
        help_heading = "Security and resources"
    )]
    pub(crate) sysctl: Vec<String>,
    /// Most processes the workload and its exec sessions may have (0 or -1: unlimited).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        help_heading = "Security and resources"
    )]
    pub(crate) pids_limit: Option<i64>,
    /// Memory the workload is kept when the guest reclaims (cgroup memory.low; at most
    /// --memory).
    #[arg(long, value_name = "SIZE", help_heading = "Security and resources")]
    pub(crate) memory_reservation: Option<String>,
    /// Memory plus swap (-1: unlimited; needs --memory, at least it). Boxes have no swap, so
    /// the workload is held to --memory, as under Docker on a host without swap.
    #[arg(
        long,
        value_name = "SIZE",
        allow_hyphen_values = true,
        help_heading = "Security and resources"
    )]
    pub(crate) memory_swap: Option<String>,
    /// Add a capability to Docker's default set (e.g. NET_ADMIN, or ALL).
    #[arg(long, value_name = "CAP", help_heading = "Security and resources")]
    pub(crate) cap_add: Vec<String>,
    /// Drop a capability from the set (e.g. CHOWN, or ALL).
    #[arg(long, value_name = "CAP", help_heading = "Security and resources")]
    pub(crate) cap_drop: Vec<String>,
    /// Give the workload every capability.
    #[arg(long, help_heading = "Security and resources")]
    pub(crate) privileged: bool,
    /// no-new-privileges[:true|false] (the only supported option).
    #[arg(long, value_name = "OPT", help_heading = "Security and resources")]
    pub(crate) security_opt: Vec<String>,
    /// Add a supplementary group (name or gid) to the workload's user.
    #[arg(long, value_name = "GROUP", help_heading = "Security and resources")]
    pub(crate) group_add: Vec<String>,
    /// Run an init that reaps zombies and forwards signals (guest-init always does: recorded).
    #[arg(long, help_heading = "Security and resources")]
    pub(crate) init: bool,
}

impl SecurityArgs {
    /// The flags for the engine.
    pub(crate) fn flags(&self) -> a3s_runtime::boxes::security::SecurityFlags {
        a3s_runtime::boxes::security::SecurityFlags {
            read_only: self.read_only,
            tmpfs: self.tmpfs.clone(),
            shm_size: self.shm_size.clone(),
            ulimit: self.ulimit.clone(),
            sysctl: self.sysctl.clone(),
            pids_limit: self.pids_limit,
            memory_reservation: self.memory_reservation.clone(),
            memory_swap: self.memory_swap.clone(),
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            privileged: self.privileged,
            security_opt: self.security_opt.clone(),
            group_add: self.group_add.clone(),
            init: self.init,
        }
    }
}

/// Confidential boxes: attestation, secrets and the host's access.
#[derive(Debug, Args)]
pub(crate) struct TeeArgs {
    /// Run in an SEV-SNP confidential VM (needs an SNP host).
    #[arg(
        long,
        conflicts_with = "tee_simulate",
        help_heading = "Confidential boxes"
    )]
    pub(crate) tee_enable: bool,
    /// Run the trust pipeline with the simulated secure processor (evidence labelled simulated).
    #[arg(long, help_heading = "Confidential boxes")]
    pub(crate) tee_simulate: bool,
    /// KBS for kbs:/// secrets (trustee protocol).
    #[arg(long, value_name = "URL", help_heading = "Confidential boxes")]
    pub(crate) kbs_url: Option<String>,
    /// Place a secret in /run/secrets/NAME before the workload starts:
    /// NAME=kbs:///repo/type/tag, or NAME=file:PATH (released by an ephemeral local KBS only to this VM).
    #[arg(
        long = "secret",
        value_name = "NAME=SOURCE",
        help_heading = "Confidential boxes"
    )]
    pub(crate) secret: Vec<String>,
    /// Refuse to start unless the launch measurement is this (96 hex digits).
    #[arg(long, value_name = "HEX", help_heading = "Confidential boxes")]
    pub(crate) expected_measurement: Option<String>,
    /// Rego attestation policy for the local KBS (default: the launch measurement must match).
    #[arg(long, value_name = "FILE", help_heading = "Confidential boxes")]
    pub(crate) tee_policy: Option<PathBuf>,
    /// Allow host exec (refused in TEE boxes otherwise).
    #[arg(long, help_heading = "Confidential boxes")]
    pub(crate) allow_exec: bool,
    /// Require a cosign signature on the image by this public key (repeatable: any of them).
    #[arg(long, value_name = "FILE", help_heading = "Confidential boxes")]
    pub(crate) verify_key: Vec<PathBuf>,
}

impl TeeArgs {
    /// True when a TEE-only flag was given.
    pub(crate) fn tee_only_flags(&self) -> Option<&'static str> {
        if self.kbs_url.is_some() {
            Some("--kbs-url")
        } else if !self.secret.is_empty() {
            Some("--secret")
        } else if self.expected_measurement.is_some() {
            Some("--expected-measurement")
        } else if self.tee_policy.is_some() {
            Some("--tee-policy")
        } else if self.allow_exec {
            Some("--allow-exec")
        } else {
            None
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Run in the background and print the box id.
    #[arg(short = 'd', long)]
    pub(crate) detach: bool,
    #[command(flatten)]
    pub(crate) attach: AttachOptions,
    #[command(flatten)]
    pub(crate) create: CreateArgs,
}

/// How a terminal is attached to a workload (`run` in the foreground, `attach`).
#[derive(Debug, Args)]
pub(crate) struct AttachOptions {
    /// Forward signals this command receives (INT, TERM, QUIT, HUP, USR1, ...) to the
    /// workload.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub(crate) sig_proxy: bool,
    /// Key sequence that detaches this terminal and leaves the box running (default:
    /// ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub(crate) detach_keys: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Do not attach stdin.
    #[arg(long)]
    pub(crate) no_stdin: bool,
    #[command(flatten)]
    pub(crate) options: AttachOptions,
    /// Box (name or id).
    pub(crate) r#box: String,
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Attach this terminal to the box's output (and signals) until its workload exits; the
    /// exit code is the workload's.
    #[arg(short = 'a', long)]
    pub(crate) attach: bool,
    /// With --attach: also this terminal's stdin (the box must have been created with -i).
    #[arg(short = 'i', long, requires = "attach")]
    pub(crate) interactive: bool,
    #[command(flatten)]
    pub(crate) options: AttachOptions,
    /// Boxes (name or id); one with --attach.
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait after the stop signal before killing the VM (default: the box's
    /// --stop-timeout, else 10).
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub(crate) time: Option<u64>,
    /// Signal to send first (default: the box's --stop-signal or image StopSignal, else TERM).
    #[arg(short = 's', long)]
    pub(crate) signal: Option<String>,
    /// Boxes (name or id).
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct KillArgs {
    /// Signal (name like KILL/SIGTERM, or number).
    #[arg(short = 's', long, default_value = "KILL")]
    pub(crate) signal: String,
    /// Boxes (name or id).
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Stop running boxes first.
    #[arg(short = 'f', long)]
    pub(crate) force: bool,
    /// Also remove the box's anonymous volumes (`-v /path`, the image's VOLUMEs); named
    /// volumes and bind mounts stay, as in Docker.
    #[arg(short = 'v', long)]
    pub(crate) volumes: bool,
    /// Boxes (name or id).
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PsArgs {
    /// Show all boxes (default: running only).
    #[arg(short = 'a', long)]
    pub(crate) all: bool,
    /// Print ids only.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Filter (KEY=VALUE: id, name, label, status, ancestor, exited, health, before, since).
    #[arg(short = 'f', long, value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
    /// Show the N most recently created boxes (all states).
    #[arg(short = 'n', long, value_name = "N")]
    pub(crate) last: Option<usize>,
    /// Show the most recently created box (all states).
    #[arg(short = 'l', long)]
    pub(crate) latest: bool,
    /// Show the disk each box's own files take (writable layer, logs).
    #[arg(short = 's', long)]
    pub(crate) size: bool,
    /// Do not truncate ids and commands.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    #[command(flatten)]
    pub(crate) format: crate::list_format::ListFormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Keep printing new output until the box stops.
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub(crate) tail: Option<usize>,
    /// Prefix each line with its RFC 3339 time.
    #[arg(short = 't', long)]
    pub(crate) timestamps: bool,
    /// Only output from this time on (RFC 3339, Unix seconds, or a duration ago like 10m).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Only output before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// Box (name or id).
    pub(crate) r#box: String,
}

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// Detached: start the command and return; it runs on, its output discarded.
    #[arg(short = 'd', long, conflicts_with_all = ["interactive", "tty"])]
    pub(crate) detach: bool,
    /// Keep standard input open.
    #[arg(short = 'i', long)]
    pub(crate) interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long)]
    pub(crate) tty: bool,
    /// Set an environment variable (KEY=value).
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub(crate) env: Vec<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    pub(crate) workdir: Option<String>,
    /// User (name, uid, name:group or uid:gid).
    #[arg(short = 'u', long)]
    pub(crate) user: Option<String>,
    /// Key sequence that detaches this terminal from an -i session and leaves the process
    /// running (default: ctrl-p,ctrl-q).
    #[arg(long, value_name = "KEYS")]
    pub(crate) detach_keys: Option<String>,
    /// Box (name or id).
    pub(crate) r#box: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct BoxesArgs {
    /// Boxes (name or id).
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Go-template subset, e.g. '{{.State.Status}}' or '{{json .Config.Labels}}'.
    #[arg(short = 'f', long, value_name = "TEMPLATE")]
    pub(crate) format: Option<String>,
    /// Boxes (name or id).
    #[arg(required = true)]
    pub(crate) boxes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct RenameArgs {
    /// Box (name or id).
    pub(crate) r#box: String,
    /// Its new name.
    pub(crate) new_name: String,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Boxes (default: all running).
    pub(crate) boxes: Vec<String>,
    /// Print one sample and exit (default: refresh every second until Ctrl-C).
    #[arg(long)]
    pub(crate) no_stream: bool,
    #[command(flatten)]
    pub(crate) format: crate::list_format::ListFormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// HEALTHCHECK, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR), e.g. -c 'CMD ["httpd", "-f"]'.
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub(crate) change: Vec<String>,
    /// Commit message for the imported image (its history comment).
    #[arg(short = 'm', long)]
    pub(crate) message: Option<String>,
    /// Rootfs tarball.
    pub(crate) tarball: PathBuf,
    /// Name to tag it with (NAME[:TAG]).
    pub(crate) reference: String,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// Box (name or id).
    pub(crate) r#box: String,
    /// ps options: -ef (the default columns UID PID PPID C STIME TTY TIME CMD), -e, -f.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Show events from this time on (RFC 3339, Unix seconds, or a duration ago like 10m).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Stop at this time (same forms); without it, events stream until Ctrl-C.
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
    /// Filter (KEY=VALUE: type, event, container, image, label); one key's values: any,
    /// different keys: all.
    #[arg(short = 'f', long, value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Box id.
    pub(crate) id: String,
}
