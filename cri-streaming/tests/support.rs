//! Shared test parts: the host-process backend, a running server, and the Go client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use a3s_cri_streaming::{
    Backend, BackendError, Config, ExitCode, PortStream, Server, Streams, TerminalSize,
};
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout, Command};
use tokio::sync::watch;

/// A "container" for attach: a running process whose stdin/stdout a client can attach to.
pub(crate) struct Attachable {
    pub(crate) stdin: ChildStdin,
    pub(crate) stdout: ChildStdout,
}

/// Runs exec'd commands as host processes, attaches to registered processes and forwards ports
/// to 127.0.0.1.
#[derive(Default)]
pub(crate) struct HostBackend {
    pub(crate) containers: Mutex<HashMap<String, Attachable>>,
    /// Every terminal size applied to a pty, in order.
    pub(crate) sizes: Mutex<Option<watch::Sender<Vec<TerminalSize>>>>,
}

impl HostBackend {
    pub(crate) fn sizes(&self) -> watch::Receiver<Vec<TerminalSize>> {
        let mut guard = self.sizes.lock().unwrap();
        let tx = guard.get_or_insert_with(|| watch::channel(Vec::new()).0);
        tx.subscribe()
    }

    pub(crate) fn clear_sizes(&self) {
        if let Some(tx) = self.sizes.lock().unwrap().as_ref() {
            tx.send_modify(Vec::clear);
        }
    }

    fn record_size(&self, size: TerminalSize) {
        if let Some(tx) = self.sizes.lock().unwrap().as_ref() {
            tx.send_modify(|v| v.push(size));
        }
    }
}

fn container_ok(id: &str) -> Result<(), BackendError> {
    if id == "host" {
        Ok(())
    } else {
        Err(BackendError::new(format!("no such container {id}")))
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

#[async_trait::async_trait]
impl Backend for HostBackend {
    async fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        streams: Streams,
    ) -> Result<ExitCode, BackendError> {
        container_ok(container_id)?;
        if streams.tty {
            return self.exec_tty(cmd, streams).await;
        }
        let mut command = Command::new(&cmd[0]);
        command
            .args(&cmd[1..])
            .stdin(if streams.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if streams.stdout.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if streams.stderr.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| BackendError::new(format!("starting {}: {e}", cmd[0])))?;
        let stdin_task = match (streams.stdin, child.stdin.take()) {
            (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
            })),
            _ => None,
        };
        let mut copies = Vec::new();
        if let (Some(mut to), Some(mut from)) = (streams.stdout, child.stdout.take()) {
            copies.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            }));
        }
        if let (Some(mut to), Some(mut from)) = (streams.stderr, child.stderr.take()) {
            copies.push(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to).await;
                let _ = to.shutdown().await;
            }));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| BackendError::new(e.to_string()))?;
        for copy in copies {
            let _ = copy.await;
        }
        if let Some(task) = stdin_task {
            task.abort();
        }
        Ok(exit_code(status))
    }

    async fn attach(&self, container_id: &str, streams: Streams) -> Result<(), BackendError> {
        let Attachable {
            stdin: mut to_process,
            stdout: mut from_process,
        } = self
            .containers
            .lock()
            .unwrap()
            .remove(container_id)
            .ok_or_else(|| BackendError::new(format!("no such container {container_id}")))?;
        let stdin_task = streams.stdin.map(|mut from| {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut to_process).await;
                // Closing the process's stdin ends our test "container".
            })
        });
        if let Some(mut to) = streams.stdout {
            let _ = tokio::io::copy(&mut from_process, &mut to).await;
            let _ = to.shutdown().await;
        }
        if let Some(task) = stdin_task {
            task.abort();
        }
        Ok(())
    }

    async fn port_forward(
        &self,
        _pod: &str,
        port: u16,
        mut stream: PortStream,
    ) -> Result<(), BackendError> {
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| BackendError::new(format!("connecting to port {port}: {e}")))?;
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        Ok(())
    }
}

impl HostBackend {
    async fn exec_tty(
        &self,
        cmd: &[String],
        mut streams: Streams,
    ) -> Result<ExitCode, BackendError> {
        let err = |e: std::io::Error| BackendError::new(format!("pty: {e}"));
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).map_err(|e| err(e.into()))?;
        grantpt(&master).map_err(|e| err(e.into()))?;
        unlockpt(&master).map_err(|e| err(e.into()))?;
        let name = ptsname(&master, Vec::new()).map_err(|e| err(e.into()))?;
        // The client sends the initial size first; apply it before the process starts.
        let mut resize = streams.resize.take();
        if let Some(rx) = resize.as_mut() {
            if let Some(size) = rx.recv().await {
                set_size(&master, size).map_err(err)?;
                self.record_size(size);
            }
        }
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(Path::new(
                name.to_str().map_err(|_| BackendError::new("pty name"))?,
            ))
            .map_err(err)?;
        let mut command = Command::new(&cmd[0]);
        command
            .args(&cmd[1..])
            .stdin(slave.try_clone().map_err(err)?)
            .stdout(slave.try_clone().map_err(err)?)
            .stderr(slave)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(err)?;
        drop(command);
        let master = std::fs::File::from(master);
        let resize_master = master.try_clone().map_err(err)?;
        let resize_task = resize.map(|mut rx| {
            let sizes = self.sizes.lock().unwrap().clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    let _ = set_size(&resize_master, size);
                    if let Some(tx) = &sizes {
                        tx.send_modify(|v| v.push(size));
                    }
                }
            })
        });
        let mut reader = tokio::fs::File::from_std(master.try_clone().map_err(err)?);
        let mut writer = tokio::fs::File::from_std(master);
        let stdin_task = streams.stdin.map(|mut from| {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut from, &mut writer).await;
            })
        });
        let output = streams.stdout.map(|mut to| {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                // The master reads EIO once the process and every holder of the slave are gone.
                while let Ok(n) = reader.read(&mut buf).await {
                    if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to.shutdown().await;
            })
        });
        let status = child.wait().await.map_err(err)?;
        if let Some(output) = output {
            let _ = output.await;
        }
        for task in [stdin_task, resize_task].into_iter().flatten() {
            task.abort();
        }
        Ok(exit_code(status))
    }
}

fn set_size(fd: &impl std::os::fd::AsFd, size: TerminalSize) -> std::io::Result<()> {
    let winsize = Winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    tcsetwinsize(fd, winsize).map_err(std::io::Error::from)
}

/// A served streaming server over `backend`.
pub(crate) fn serve(backend: Arc<HostBackend>, config: impl FnOnce(&mut Config)) -> Server {
    let mut cfg = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    config(&mut cfg);
    let server = Server::new(cfg, backend).expect("bind 127.0.0.1:0");
    let serving = server.clone();
    tokio::spawn(async move { serving.serve().await });
    server
}

/// The client-go test client, built once per test run with the Go toolchain.
pub(crate) fn streamclient() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tools/streamclient");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("streamclient");
        let status = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&source)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "running `go build` for {}: {e}; install Go >= 1.24 (scripts/setup)",
                    source.display()
                )
            });
        assert!(
            status.success(),
            "building the streamclient test tool failed"
        );
        out
    })
}

/// Runs the Go client with `args`, feeding it `stdin`.
pub(crate) async fn client(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(streamclient())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start streamclient");
    let mut child_stdin = child.stdin.take().unwrap();
    child_stdin.write_all(stdin).await.unwrap();
    drop(child_stdin);
    child.wait_with_output().await.unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
