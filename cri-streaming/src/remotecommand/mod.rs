//! Remote command sessions (exec and attach): the part shared by the SPDY and WebSocket
//! transports. A transport hands over the client's channels; [`run`] connects them to the
//! backend, waits for it, drains the output and reports the outcome on the error channel.

pub(crate) mod spdy;
pub(crate) mod websocket;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::backend::{Backend, Streams, TerminalSize};
use crate::io::{pump_in, pump_out, OutChannel, PIPE_BYTES};
use crate::request::{AttachRequest, ExecRequest};
use crate::status::{Outcome, StatusFormat};

/// Terminal sizes queued for the backend.
const RESIZE_QUEUE: usize = 8;
/// Largest resize message buffered while waiting for the rest of a JSON object.
const MAX_RESIZE_BUFFER_BYTES: usize = 4096;

/// What a session runs, and which streams the parked request selected.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    action: Action,
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

#[derive(Debug, Clone)]
enum Action {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

impl Target {
    pub(crate) fn exec(r: ExecRequest) -> Self {
        Self {
            action: Action::Exec {
                container_id: r.container_id,
                cmd: r.cmd,
            },
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
    }

    pub(crate) fn attach(r: AttachRequest) -> Self {
        Self {
            action: Action::Attach {
                container_id: r.container_id,
            },
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
    }
}

/// The client's side of a session, as a transport delivers it.
#[derive(Debug, Default)]
pub(crate) struct Channels {
    pub(crate) stdin: Option<mpsc::Receiver<Bytes>>,
    pub(crate) stdout: Option<OutChannel>,
    pub(crate) stderr: Option<OutChannel>,
    pub(crate) resize: Option<mpsc::Receiver<Bytes>>,
    pub(crate) error: Option<OutChannel>,
}

/// Runs the session: the backend gets in-memory pipes whose other ends are pumped to and from
/// the client's channels. If the client goes away first (`gone` resolves), the backend's future
/// is dropped, which is how a backend learns to stop the process or detach.
pub(crate) async fn run(
    backend: &dyn Backend,
    target: &Target,
    channels: Channels,
    format: StatusFormat,
    gone: impl std::future::Future<Output = ()>,
) {
    let mut outputs = tokio::task::JoinSet::new();
    let mut inputs = tokio::task::JoinSet::new();
    let mut streams = Streams {
        stdin: None,
        stdout: None,
        stderr: None,
        tty: target.tty,
        resize: None,
    };
    if let Some(rx) = channels.stdin {
        let (backend_end, pump_end) = tokio::io::duplex(PIPE_BYTES);
        inputs.spawn(pump_in(rx, pump_end));
        streams.stdin = Some(Box::pin(backend_end));
    }
    let mut output_channels = Vec::new();
    if let Some(out) = channels.stdout {
        let (backend_end, pump_end) = tokio::io::duplex(PIPE_BYTES);
        output_channels.push(out.clone());
        outputs.spawn(async move { pump_out(pump_end, &out).await });
        streams.stdout = Some(Box::pin(backend_end));
    }
    if let Some(out) = channels.stderr {
        let (backend_end, pump_end) = tokio::io::duplex(PIPE_BYTES);
        output_channels.push(out.clone());
        outputs.spawn(async move { pump_out(pump_end, &out).await });
        streams.stderr = Some(Box::pin(backend_end));
    }
    if let Some(rx) = channels.resize {
        let (tx, sizes) = mpsc::channel(RESIZE_QUEUE);
        inputs.spawn(parse_resizes(rx, tx));
        streams.resize = Some(sizes);
    }
    let work = async {
        match &target.action {
            Action::Exec { container_id, cmd } => {
                match backend.exec(container_id, cmd, streams).await {
                    Ok(0) => Outcome::Success,
                    Ok(code) => Outcome::ExitCode(code),
                    Err(err) => {
                        Outcome::Error(format!("error executing command in container: {err}"))
                    }
                }
            }
            Action::Attach { container_id } => match backend.attach(container_id, streams).await {
                Ok(()) => Outcome::Success,
                Err(err) => Outcome::Error(format!("error attaching to container: {err}")),
            },
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = gone => {
            tracing::debug!("client went away; session ended");
            return;
        }
    };
    // Everything the process wrote is queued before the status, and the status before stdout
    // and stderr end: v1 clients stop reading the error stream once those have ended.
    while outputs.join_next().await.is_some() {}
    inputs.abort_all();
    if let Some(error) = channels.error {
        if let Some(bytes) = outcome.encode(format) {
            error.send(bytes.into()).await;
        }
        error.finish().await;
    }
    for out in output_channels {
        out.finish().await;
    }
}

/// Decodes the concatenated JSON `TerminalSize` objects the client sends on the resize channel.
async fn parse_resizes(mut rx: mpsc::Receiver<Bytes>, sizes: mpsc::Sender<TerminalSize>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = rx.recv().await {
        buffer.extend_from_slice(&chunk);
        let mut stream = serde_json::Deserializer::from_slice(&buffer).into_iter::<TerminalSize>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(size)) => {
                    consumed = stream.byte_offset();
                    // Never wait on a backend that does not read sizes: that would stall the
                    // connection's reader and with it stdin. A size it has no room for is
                    // dropped; a later one supersedes it anyway.
                    match sizes.try_send(size) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::debug!("backend is not reading terminal sizes; one dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    tracing::debug!("malformed resize message, resize channel ignored: {e}");
                    return;
                }
                None => {
                    consumed = buffer.len();
                    break;
                }
            }
        }
        buffer.drain(..consumed);
        if buffer.len() > MAX_RESIZE_BUFFER_BYTES {
            tracing::debug!("resize message too large, resize channel ignored");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backend_that_never_reads_sizes_does_not_stall_the_client() {
        let (tx, rx) = mpsc::channel(1);
        let (size_tx, _unread) = mpsc::channel(1);
        let task = tokio::spawn(parse_resizes(rx, size_tx));
        for _ in 0..100 {
            tx.send(Bytes::from_static(br#"{"Width":1,"Height":1}"#))
                .await
                .unwrap();
        }
        drop(tx);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn resizes_split_across_chunks_are_decoded() {
        let (tx, rx) = mpsc::channel(8);
        let (size_tx, mut sizes) = mpsc::channel(8);
        let task = tokio::spawn(parse_resizes(rx, size_tx));
        tx.send(Bytes::from_static(br#"{"Width":80,"Height":24}{"Wid"#))
            .await
            .unwrap();
        tx.send(Bytes::from_static(br#"th":100,"Height":40}"#))
            .await
            .unwrap();
        drop(tx);
        task.await.unwrap();
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(
            sizes.recv().await,
            Some(TerminalSize {
                width: 100,
                height: 40
            })
        );
        assert_eq!(sizes.recv().await, None);
    }

    #[tokio::test]
    async fn oversized_resize_message_is_dropped() {
        let (tx, rx) = mpsc::channel(8);
        let (size_tx, mut sizes) = mpsc::channel(8);
        let task = tokio::spawn(parse_resizes(rx, size_tx));
        tx.send(Bytes::from(format!("{{\"Width\":{}", " ".repeat(8192))))
            .await
            .unwrap();
        task.await.unwrap();
        assert_eq!(sizes.recv().await, None);
    }
}
