//! The monitor's control socket: what other CLI processes say to a box's monitor.
//!
//! Same framing as the guest channel ([`a3s_vmm::proto`]); one request per connection, first
//! frame a [`ClientMsg`]. An `Exec` connection then carries stdin frames up and the guest's
//! output and [`MonitorMsg::Exited`] down.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use a3s_vmm::proto::{self, Frame, ProcessSpec, ProtoError};

/// Requests to a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMsg {
    /// Run a process in the box; the connection becomes its session.
    Exec {
        /// The process.
        process: ProcessSpec,
    },
    // --- pod containers (issue 16) ---
    /// Run a pod container's process (or an exec in it) in the box, in a new mount namespace
    /// rooted at `root`; the connection becomes its session, as for `Exec`.
    ContainerExec {
        /// The process.
        process: ProcessSpec,
        /// The container's root directory in the guest.
        root: String,
        /// See [`a3s_vmm::proto::HostMsg::ContainerExec`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Present for a container's supervised main process.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resources: Option<a3s_vmm::proto::ContainerResources>,
        /// The container's mounts (see [`a3s_vmm::proto::HostMsg::ContainerExec`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mounts: Vec<a3s_vmm::proto::ContainerMount>,
        /// The container's security context (see [`a3s_vmm::proto::HostMsg::ContainerExec`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        security: Option<Box<a3s_vmm::proto::ContainerSecurity>>,
    },
    /// Re-attach to a supervised container's main process (a restarted CRI server); the
    /// connection becomes its session, as for `Exec`.
    ContainerAttach {
        /// Container id.
        id: String,
        /// Only the container's output and signals to it travel: no stdin, no resizes. What a
        /// restarted CRI server needs to keep a confidential pod's container supervised
        /// without the host-access opt-in.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        output_only: bool,
    },
    /// New limits for a container, answered by [`MonitorMsg::ContainerStats`].
    ContainerUpdate {
        /// Container id.
        id: String,
        /// The limits.
        resources: a3s_vmm::proto::ContainerResources,
    },
    /// Containers' resource use, answered by [`MonitorMsg::ContainerStats`].
    ContainerStats {
        /// Container ids.
        ids: Vec<String>,
    },
    // --- end pod containers ---
    /// Stdin frames on this connection go to the workload.
    AttachStdin,
    /// Send a signal to the workload.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// The terminal of a `-t` workload changed size (SIGWINCH on the client).
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// SIGTERM the workload, SIGKILL the VM after `timeout_secs`.
    Stop {
        /// Grace period.
        timeout_secs: u64,
        /// The first signal (absent: SIGTERM).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signal: Option<i32>,
    },
    /// Relay an RA-TLS session to the guest's attestation agent (TEE boxes): the connection
    /// then carries the verifier's TLS bytes as stdin frames up and the agent's as stdout
    /// frames down, ended by `Exited`.
    Attest,
    // --- issue 20 ---
    /// The workload's processes (`top`), answered by [`MonitorMsg::Processes`].
    Top {
        /// `ps` options.
        ps_args: Vec<String>,
    },
    /// The guest's resource use (`stats`), answered by [`MonitorMsg::Stats`].
    Stats,
}

/// Answers from a monitor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MonitorMsg {
    /// The request was carried out.
    Done,
    /// The exec process runs in the guest (with this pid there); `exec -d` and pod containers
    /// wait for this before reporting a start.
    Started {
        /// Guest pid.
        pid: i32,
        /// The identity it runs with (see [`a3s_vmm::proto::GuestMsg::Started`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<a3s_vmm::proto::ProcessUser>,
    },
    /// The exec process could not start.
    SpawnFailed {
        /// Docker-style code (126/127).
        code: i32,
        /// Why.
        message: String,
    },
    /// The exec process ended.
    Exited {
        /// Its code.
        code: i32,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
    /// Answer to [`ClientMsg::Top`]: column titles and a row per process.
    Processes {
        /// Titles.
        titles: Vec<String>,
        /// Rows.
        processes: Vec<Vec<String>>,
    },
    /// Answer to [`ClientMsg::Stats`].
    Stats(a3s_vmm::proto::GuestStats),
    /// The session's pod container was killed by the OOM killer (before its `Exited`).
    OomKilled,
    /// Answer to [`ClientMsg::ContainerStats`] and [`ClientMsg::ContainerUpdate`].
    ContainerStats {
        /// One entry per container that has a cgroup.
        stats: Vec<a3s_vmm::proto::ContainerStats>,
    },
}

/// Connects to a monitor socket and sends the first request.
///
/// # Errors
/// i/o or framing.
pub fn connect(socket: &Path, first: &ClientMsg) -> Result<UnixStream, ProtoError> {
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    proto::write_frame(&mut s, &Frame::control(0, first)?)?;
    Ok(s)
}

/// Sends `msg` and waits (at most `timeout`) for the monitor's answer.
///
/// # Errors
/// i/o, framing or timeout.
pub fn request(
    socket: &Path,
    msg: &ClientMsg,
    timeout: Duration,
) -> Result<MonitorMsg, ProtoError> {
    let mut s = connect(socket, msg)?;
    s.set_read_timeout(Some(timeout))?;
    loop {
        let f = proto::read_frame(&mut s)?;
        if f.kind == proto::Kind::Control {
            return f.message();
        }
    }
}
