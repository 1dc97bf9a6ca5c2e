//! What the streaming server asks of the runtime: the [`Backend`] trait and the streams it is
//! handed. The server owns the wire protocols; the backend only moves bytes.

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;

/// The client's stdin, as seen by the backend. EOF when the client closes stdin.
pub type InputStream = Pin<Box<dyn AsyncRead + Send>>;
/// Where the backend writes stdout or stderr. Dropping it (or shutting it down) ends the stream.
pub type OutputStream = Pin<Box<dyn AsyncWrite + Send>>;
/// One forwarded connection: bytes written go to the client, bytes read come from it. EOF on
/// read means the client closed its side; shut down the write side when the pod's side closes.
pub type PortStream = DuplexStream;

/// Exit code of an exec'd command, as the process reported it. Zero is success; any other value
/// is reported to the client as kubelet does (`NonZeroExitCode` status on the error stream).
pub type ExitCode = i32;

/// A terminal size sent by the client (initially and on every resize).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// The client streams of one exec or attach session, as the request selected them.
pub struct Streams {
    /// Present when the request set `stdin`.
    pub stdin: Option<InputStream>,
    /// Present when the request set `stdout`.
    pub stdout: Option<OutputStream>,
    /// Present when the request set `stderr` (never with `tty`).
    pub stderr: Option<OutputStream>,
    /// The session runs on a terminal.
    pub tty: bool,
    /// Terminal sizes from the client; present with `tty` on protocols that support resizing.
    /// The first size arrives right after the session starts.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("tty", &self.tty)
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// A failure of the backend (not a non-zero exit, which is an [`ExitCode`]). The message reaches
/// the client on the error stream, so it must name what failed and must not carry secrets.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    message: String,
}

impl BackendError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The runtime side of streaming. Implementations run the real work; the server calls them once
/// per session, after the client's streams are connected.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in the container with `streams` and returns its exit code once it has exited.
    /// The server reports a non-zero code to the client as kubelet does.
    ///
    /// If the client disconnects first, the server drops this future: the implementation must
    /// then stop the process (as containerd does), e.g. with a guard that kills it on drop.
    ///
    /// # Errors
    /// The container does not exist or is not running, or the command could not be started.
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<ExitCode, BackendError>;

    /// Connects `streams` to the main process of the container, until the process exits or the
    /// client goes away (stdin EOF does not end an attach unless the runtime decides so). If the
    /// client disconnects, the future is dropped: detach, leaving the process running.
    ///
    /// # Errors
    /// The container does not exist or is not running.
    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), BackendError>;

    /// Connects `stream` to `port` on the pod's localhost and copies bytes both ways until both
    /// sides are done. The future is dropped when the client's session ends.
    ///
    /// # Errors
    /// The pod does not exist or nothing listens on the port; the message reaches the client.
    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: PortStream,
    ) -> Result<(), BackendError>;
}
