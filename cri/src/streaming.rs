//! The streaming backend over the engine: exec in a pod container, attach to a container's
//! main process, port-forward to a pod's port. `cri-streaming` owns the wire protocols
//! (SPDY, WebSocket); this module only moves bytes between its streams and the engine's
//! sessions (guest-channel frames through the pod VM's monitor).

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use a3s_cri_streaming::{Backend, BackendError, ExitCode, PortStream, Streams, TerminalSize};
use a3s_runtime::boxes::client::MonitorMsg;
use a3s_runtime::engine::{Engine, EngineError};
use a3s_runtime::pod_containers::cri_log::Stream;
use a3s_vmm::proto::{self, Frame, HostMsg, Kind, ProcessSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::chain;

/// Bytes read from a client stream per frame.
const CHUNK: usize = 32 * 1024;
const SIGKILL: i32 = 9;

/// The engine as `cri-streaming`'s backend.
#[derive(Clone, Debug)]
pub(crate) struct EngineBackend {
    engine: Engine,
}

impl EngineBackend {
    pub(crate) fn new(engine: Engine) -> Arc<Self> {
        Arc::new(Self { engine })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Engine) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, BackendError> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(engine))
            .await
            .map_err(|e| BackendError::new(format!("the engine task failed: {e}")))?
            .map_err(|e| BackendError::new(chain(&e)))
    }
}

/// What a session's reader thread passes on.
enum Event {
    Output(Kind, Vec<u8>),
    Exited(i32),
    SpawnFailed(i32, String),
    Failed(String),
}

/// Reads a session's frames on a thread of its own (the framing is blocking i/o).
fn read_session(mut conn: UnixStream) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        let ev = match proto::read_frame(&mut conn) {
            Ok(f) => match f.kind {
                Kind::Stdout | Kind::Stderr => Event::Output(f.kind, f.payload),
                Kind::Control => match f.message::<MonitorMsg>() {
                    Ok(MonitorMsg::Exited { code }) => Event::Exited(code),
                    Ok(MonitorMsg::SpawnFailed { code, message }) => {
                        Event::SpawnFailed(code, message)
                    }
                    Ok(MonitorMsg::Error { message }) => Event::Failed(message),
                    _ => continue,
                },
                _ => continue,
            },
            Err(e) => Event::Failed(format!("lost the session: {e}")),
        };
        let last = !matches!(ev, Event::Output(..));
        if tx.send(ev).is_err() || last {
            return;
        }
    });
    rx
}

/// Writes frames to a session on a thread of its own; dropping every sender ends it.
fn write_session(mut conn: UnixStream) -> mpsc::UnboundedSender<Frame> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Frame>();
    std::thread::spawn(move || {
        while let Some(f) = rx.blocking_recv() {
            if proto::write_frame(&mut conn, &f).is_err() {
                return;
            }
        }
    });
    tx
}

/// Kills the session's process unless it ended (the client went away: stop it, as
/// containerd does for exec).
struct KillOnDrop {
    to: mpsc::UnboundedSender<Frame>,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(f) = Frame::control(0, &HostMsg::Signal { signal: SIGKILL }) {
                let _ = self.to.send(f);
            }
        }
    }
}

fn resize_frame(size: TerminalSize) -> Option<Frame> {
    Frame::control(
        0,
        &HostMsg::Resize {
            rows: size.height,
            cols: size.width,
        },
    )
    .ok()
}

/// Copies the client's stdin and terminal sizes to `send` until they end.
fn pump_input(streams: &mut Streams, send: impl Fn(Frame) -> bool + Send + Clone + 'static) {
    if let Some(mut stdin) = streams.stdin.take() {
        let send = send.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !send(Frame::data(Kind::Stdin, 0, buf[..n].to_vec())) {
                            return;
                        }
                    }
                }
            }
            send(Frame::data(Kind::StdinClosed, 0, Vec::new()));
        });
    }
    if let Some(mut sizes) = streams.resize.take() {
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                if resize_frame(size).is_some_and(|f| !send(f)) {
                    return;
                }
            }
        });
    }
}

/// Writes output of `kind` to the stream the client asked for (stderr falls back to stdout on
/// a terminal, where there is one stream).
async fn deliver(streams: &mut Streams, kind: Kind, data: &[u8]) {
    let out = match kind {
        Kind::Stderr if streams.stderr.is_some() => streams.stderr.as_mut(),
        _ => streams.stdout.as_mut(),
    };
    if let Some(o) = out {
        let _ = o.write_all(data).await;
        let _ = o.flush().await;
    }
}

async fn finish(streams: &mut Streams) {
    for o in [streams.stdout.as_mut(), streams.stderr.as_mut()]
        .into_iter()
        .flatten()
    {
        let _ = o.shutdown().await;
    }
}

#[async_trait::async_trait]
impl Backend for EngineBackend {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        mut streams: Streams,
    ) -> Result<ExitCode, BackendError> {
        let process = ProcessSpec {
            argv: cmd.to_vec(),
            tty: streams.tty,
            stdin: streams.stdin.is_some(),
            ..ProcessSpec::default()
        };
        let id = container_id.to_owned();
        let conn = self
            .blocking(move |e| e.container_session(&id, process))
            .await?;
        let writer = conn
            .try_clone()
            .map_err(|e| BackendError::new(format!("exec session: {e}")))?;
        let to_guest = write_session(writer);
        let mut guard = KillOnDrop {
            to: to_guest.clone(),
            armed: true,
        };
        let mut events = read_session(conn);
        pump_input(&mut streams, move |f| to_guest.send(f).is_ok());
        let result = loop {
            match events.recv().await {
                Some(Event::Output(kind, data)) => deliver(&mut streams, kind, &data).await,
                Some(Event::Exited(code)) => break Ok(code),
                Some(Event::SpawnFailed(code, message)) => {
                    deliver(
                        &mut streams,
                        Kind::Stderr,
                        format!("{message}\n").as_bytes(),
                    )
                    .await;
                    break Ok(code);
                }
                Some(Event::Failed(message)) => break Err(BackendError::new(message)),
                None => break Err(BackendError::new("the exec session ended without an exit")),
            }
        };
        guard.armed = false;
        finish(&mut streams).await;
        result
    }

    async fn attach(&self, container_id: &str, mut streams: Streams) -> Result<(), BackendError> {
        let id = container_id.to_owned();
        let taps = self.blocking(move |e| e.attach_container(&id)).await?;
        // The engine's tap is a std channel: a thread bridges it into this task.
        let (tx, mut output) = mpsc::unbounded_channel::<(Stream, Vec<u8>)>();
        std::thread::spawn(move || {
            for item in taps {
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        let (engine, id) = (self.engine.clone(), container_id.to_owned());
        pump_input(&mut streams, move |f| {
            engine.container_input(&id, &f).is_ok()
        });
        while let Some((stream, data)) = output.recv().await {
            let kind = match stream {
                Stream::Stdout => Kind::Stdout,
                Stream::Stderr => Kind::Stderr,
            };
            deliver(&mut streams, kind, &data).await;
        }
        finish(&mut streams).await;
        Ok(())
    }

    async fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
        stream: PortStream,
    ) -> Result<(), BackendError> {
        let pod = pod_sandbox_id.to_owned();
        let conn = self
            .blocking(move |e| e.pod_port_session(&pod, port))
            .await?;
        let writer = conn
            .try_clone()
            .map_err(|e| BackendError::new(format!("port-forward session: {e}")))?;
        let to_guest = write_session(writer);
        let _guard = KillOnDrop {
            to: to_guest.clone(),
            armed: true,
        };
        let mut events = read_session(conn);
        let (mut from_client, mut to_client) = tokio::io::split(stream);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match from_client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to_guest
                            .send(Frame::data(Kind::Stdin, 0, buf[..n].to_vec()))
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
            let _ = to_guest.send(Frame::data(Kind::StdinClosed, 0, Vec::new()));
        });
        let mut errors = Vec::new();
        let result = loop {
            match events.recv().await {
                Some(Event::Output(Kind::Stdout, data)) => {
                    if to_client.write_all(&data).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Event::Output(_, data)) => errors.extend_from_slice(&data),
                Some(Event::Exited(0)) => break Ok(()),
                Some(Event::Exited(_) | Event::SpawnFailed(..)) => {
                    break Err(BackendError::new(format!(
                        "port {port} of pod {pod_sandbox_id}: {}",
                        String::from_utf8_lossy(&errors).trim()
                    )))
                }
                Some(Event::Failed(m)) => break Err(BackendError::new(m)),
                None => break Ok(()),
            }
        };
        let _ = to_client.shutdown().await;
        result
    }
}
