//! Streams between this terminal and a box: foreground `run`, `attach`, `exec`, `logs`; and
//! Docker's signal semantics: signals to this process go to the workload (`--sig-proxy`),
//! terminal resizes (SIGWINCH) to its pty, and the detach keys leave the box running.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::bail;
use signal_hook::consts::signal as sig;
use signal_hook::iterator::{Handle, Signals};

use a3s_runtime::boxes::client::MonitorMsg;
use a3s_runtime::boxes::logs::{LogRecord, Stream};
use a3s_runtime::boxes::BoxRecord;
use a3s_runtime::engine::{Engine, RunEvents};
use a3s_vmm::proto::{self, Frame, HostMsg, Kind, ProcessSpec};

use super::args::{AttachArgs, AttachOptions, ExecArgs, StartArgs};
use super::detach_keys::{self, Detector, Scan};
use crate::commands::EngineResult;
use crate::{usage_error, ExitStatus};

/// The signals Docker's CLI forwards to the workload: every catchable asynchronous one but
/// SIGCHLD, SIGPIPE, SIGURG (runtime noise) and SIGWINCH (a resize, see [`SignalProxy`]).
const FORWARDED: &[i32] = &[
    sig::SIGHUP,
    sig::SIGINT,
    sig::SIGQUIT,
    sig::SIGTERM,
    sig::SIGUSR1,
    sig::SIGUSR2,
    sig::SIGALRM,
    sig::SIGCONT,
    sig::SIGTSTP,
    sig::SIGTTIN,
    sig::SIGTTOU,
    sig::SIGVTALRM,
    sig::SIGPROF,
    sig::SIGXCPU,
    sig::SIGXFSZ,
    sig::SIGIO,
    sig::SIGSYS,
];

/// The terminal's size (rows, columns), if stdout is a terminal.
pub(super) fn terminal_size() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    Some((ws.ws_row, ws.ws_col))
}

/// Puts the terminal on stdin into raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enable(wanted: bool) -> Self {
        let stdin = std::io::stdin();
        if !wanted || !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return Self(None);
        }
        let Ok(orig) = nix::sys::termios::tcgetattr(stdin.as_fd()) else {
            return Self(None);
        };
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ =
            nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        Self(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// Signals to this process, handled on a thread of their own until dropped: the forwarded
/// ones go to `forward`, SIGWINCH to `resize` with the terminal's new size.
struct SignalProxy {
    handle: Handle,
}

impl SignalProxy {
    fn start(
        forward: Option<Box<dyn Fn(i32) + Send>>,
        resize: Option<Box<dyn Fn(u16, u16) + Send>>,
    ) -> std::io::Result<Option<Self>> {
        let mut wanted = Vec::new();
        if forward.is_some() {
            wanted.extend_from_slice(FORWARDED);
        }
        if resize.is_some() {
            wanted.push(sig::SIGWINCH);
        }
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut signals = Signals::new(&wanted)?;
        let handle = signals.handle();
        std::thread::spawn(move || {
            for s in signals.forever() {
                if s == sig::SIGWINCH {
                    if let (Some(resize), Some((rows, cols))) = (&resize, terminal_size()) {
                        resize(rows, cols);
                    }
                } else if let Some(forward) = &forward {
                    forward(s);
                }
            }
        });
        Ok(Some(Self { handle }))
    }
}

impl Drop for SignalProxy {
    fn drop(&mut self) {
        // Back to the default dispositions once this terminal no longer fronts a box.
        self.handle.close();
    }
}

/// One writer for a connection that several threads write frames to (stdin, resizes).
type FrameWriter = Arc<Mutex<UnixStream>>;

fn send_frame(conn: &FrameWriter, frame: &Frame) -> bool {
    let mut c = conn
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    proto::write_frame(&mut *c, frame).is_ok()
}

/// Copies this process's stdin into `conn` as stdin frames, then signals end of input. With
/// `detach`, the detach keys end the copy instead: they set the flag and hang up `conn`, so
/// a reader of it returns (a pty session's process runs on; a pipe's stdin ends).
fn pump_stdin(conn: FrameWriter, session: u32, detach: Option<(Detector, Arc<AtomicBool>)>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdin = std::io::stdin().lock();
        let mut detach = detach;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let (bytes, detached) = match &mut detach {
                Some((d, _)) => match d.scan(&buf[..n]) {
                    Scan::Forward(b) => (b, false),
                    Scan::Detach(b) => (b, true),
                },
                None => (buf[..n].to_vec(), false),
            };
            if !bytes.is_empty() && !send_frame(&conn, &Frame::data(Kind::Stdin, session, bytes)) {
                return;
            }
            if detached {
                if let Some((_, flag)) = &detach {
                    flag.store(true, Ordering::SeqCst);
                }
                let c = conn
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = c.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        send_frame(&conn, &Frame::data(Kind::StdinClosed, session, vec![]));
    });
}

pub(super) fn print_records(records: &[LogRecord], timestamps: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for r in records {
        let w: &mut dyn Write = match r.stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if timestamps {
            write!(w, "{} ", r.time)?;
        }
        w.write_all(&r.bytes())?;
    }
    out.flush()?;
    err.flush()?;
    Ok(())
}

/// This terminal as the front end of a box's workload (`run` in the foreground, `attach`):
/// the TCG notice once the box exists; once it runs, raw mode (a `-t` box with stdin),
/// stdin with the detach keys, the signal proxy and resizes; its output as it comes. Dropping
/// it restores the terminal and the default signal dispositions.
pub(super) struct Terminal {
    engine: Engine,
    tty: bool,
    sig_proxy: bool,
    detach_keys: Vec<u8>,
    detached: Arc<AtomicBool>,
    raw: Option<RawMode>,
    proxy: Option<SignalProxy>,
    cidfile: Option<super::CidFile>,
}

impl Terminal {
    /// # Errors
    /// A bad `--detach-keys` (usage error).
    pub(super) fn new(engine: &Engine, tty: bool, opts: &AttachOptions) -> anyhow::Result<Self> {
        let keys = opts.detach_keys.as_deref().unwrap_or(detach_keys::DEFAULT);
        Ok(Self {
            engine: engine.clone(),
            tty,
            sig_proxy: opts.sig_proxy,
            detach_keys: detach_keys::parse(keys).map_err(|e| usage_error(e.into()))?,
            detached: Arc::new(AtomicBool::new(false)),
            raw: None,
            proxy: None,
            cidfile: None,
        })
    }

    /// Writes the box id to `--cidfile` once the box exists.
    pub(super) fn with_cidfile(mut self, cidfile: super::CidFile) -> Self {
        self.cidfile = Some(cidfile);
        self
    }

    fn proxy_signals(&mut self, rec: &BoxRecord) {
        let id = rec.id.to_string();
        let forward = self.sig_proxy.then(|| {
            let (engine, id) = (self.engine.clone(), id.clone());
            Box::new(move |s: i32| {
                // A workload that ended meanwhile: nothing to deliver to.
                let _ = engine.kill(&id, s);
            }) as Box<dyn Fn(i32) + Send>
        });
        let resize = self.tty.then(|| {
            let engine = self.engine.clone();
            Box::new(move |rows: u16, cols: u16| {
                let _ = engine.resize(&id, rows, cols);
            }) as Box<dyn Fn(u16, u16) + Send>
        });
        match SignalProxy::start(forward, resize) {
            Ok(p) => self.proxy = p,
            Err(e) => eprintln!("warning: signals will not reach the box: {e}"),
        }
    }
}

impl RunEvents for Terminal {
    fn created(&mut self, rec: &BoxRecord) {
        if let Some(c) = &self.cidfile {
            if let Err(e) = c.write(rec.id.as_str()) {
                eprintln!("error: {e:#}");
            }
        }
        super::notice_tcg();
    }

    fn running(&mut self, rec: &BoxRecord, stdin: Option<UnixStream>) {
        self.proxy_signals(rec);
        if self.tty {
            // The size may have changed since the box was created (and a redraw helps an
            // attach to a full-screen program).
            if let Some((rows, cols)) = terminal_size() {
                let _ = self.engine.resize(rec.id.as_str(), rows, cols);
            }
        }
        if let Some(conn) = stdin {
            // Raw only with stdin: without it Ctrl-C must stay a signal to this process.
            self.raw = Some(RawMode::enable(self.tty));
            let detector = Detector::new(self.detach_keys.clone());
            pump_stdin(
                Arc::new(Mutex::new(conn)),
                proto::WORKLOAD_SESSION,
                Some((detector, self.detached.clone())),
            );
        }
    }

    fn output(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        print_records(records, false)
    }

    fn detached(&self) -> bool {
        self.detached.load(Ordering::SeqCst)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.proxy.take();
        self.raw.take();
    }
}

/// `attach`: this terminal becomes the box's workload's (Docker: signals are forwarded only
/// to a box without a tty, where Ctrl-C is not a byte of input).
pub(super) fn attach(engine: &Engine, a: &AttachArgs) -> anyhow::Result<ExitStatus> {
    let rec = engine.inspect(&a.r#box).engine()?;
    let tty = rec.spec.process.tty;
    let mut terminal = Terminal::new(engine, tty, &a.options)?;
    terminal.sig_proxy &= !tty;
    let code = engine
        .attach(&a.r#box, !a.no_stdin, &mut terminal)
        .engine()?;
    drop(terminal);
    Ok(exit_status(code))
}

/// `start -a [-i]`: starts a stopped box with this terminal as its workload's (a running
/// one is attached to), as a foreground `run` does; the workload's exit code.
pub(super) fn start_attached(engine: &Engine, a: &StartArgs) -> anyhow::Result<ExitStatus> {
    let [key] = a.boxes.as_slice() else {
        return Err(usage_error(anyhow::anyhow!(
            "start --attach takes one box ({} given); start the others without --attach",
            a.boxes.len()
        )));
    };
    let rec = engine.inspect(key).engine()?;
    let tty = rec.spec.process.tty;
    super::notice_tcg();
    let mut terminal = Terminal::new(engine, tty, &a.options)?;
    terminal.sig_proxy &= !tty;
    let code = engine
        .start_foreground(key, a.interactive, &mut terminal)
        .engine()?;
    drop(terminal);
    Ok(exit_status(code))
}

/// A workload's exit code as this process's (`None`: detached, 0).
pub(super) fn exit_status(code: Option<i32>) -> ExitStatus {
    match code.map(u8::try_from) {
        Some(Ok(0)) | None => ExitStatus::Success,
        Some(Ok(c)) => ExitStatus::External(c),
        Some(Err(_)) => ExitStatus::External(125),
    }
}

/// `exec`: run a process in a running box, relaying its I/O.
pub(super) fn exec(engine: &Engine, a: &ExecArgs) -> anyhow::Result<ExitStatus> {
    let process = ProcessSpec {
        argv: a.command.clone(),
        env: a.env.iter().filter_map(|e| super::env_entry(e)).collect(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        tty: a.tty,
        tty_size: if a.tty { terminal_size() } else { None },
        stdin: a.interactive,
    };
    if a.detach {
        return match engine.exec_detached(&a.r#box, process) {
            Ok(_) => Ok(ExitStatus::Success),
            // Docker's codes: 126 cannot run, 127 not found.
            Err(a3s_runtime::engine::EngineError::ExecFailed { code, message }) => {
                writeln!(std::io::stderr(), "error: {message}")?;
                Ok(ExitStatus::External(u8::try_from(code).unwrap_or(125)))
            }
            Err(e) => Err(crate::commands::engine_error(e)),
        };
    }
    let keys = a.detach_keys.as_deref().unwrap_or(detach_keys::DEFAULT);
    let keys = detach_keys::parse(keys).map_err(|e| usage_error(e.into()))?;
    let detached = Arc::new(AtomicBool::new(false));
    let (rec, mut conn) = engine.exec(&a.r#box, process).engine()?;
    let _raw = RawMode::enable(a.tty && a.interactive);
    let writer: FrameWriter = Arc::new(Mutex::new(conn.try_clone()?));
    if a.interactive {
        pump_stdin(
            writer.clone(),
            0,
            Some((Detector::new(keys), detached.clone())),
        );
    }
    // Resizes go in band, on this session (the monitor routes them to its pty).
    let resize = a.tty.then(|| {
        Box::new(move |rows: u16, cols: u16| {
            if let Ok(f) = Frame::control(0, &HostMsg::Resize { rows, cols }) {
                send_frame(&writer, &f);
            }
        }) as Box<dyn Fn(u16, u16) + Send>
    });
    let _winch = SignalProxy::start(None, resize)?;
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = loop {
        let frame = match proto::read_frame(&mut conn) {
            Ok(f) => f,
            // The detach keys hung up: the process runs on (Docker's exit 0).
            Err(_) if detached.load(Ordering::SeqCst) => return Ok(ExitStatus::Success),
            Err(e) => bail!("lost the connection to box {}: {e}", rec.name),
        };
        match frame.kind {
            Kind::Stdout => {
                out.write_all(&frame.payload)?;
                out.flush()?;
            }
            Kind::Stderr => {
                err.write_all(&frame.payload)?;
                err.flush()?;
            }
            Kind::Control => match frame.message::<MonitorMsg>()? {
                MonitorMsg::Exited { code } => break code,
                MonitorMsg::SpawnFailed { code, message } => {
                    drop(_raw);
                    writeln!(err, "error: {message}")?;
                    break code;
                }
                MonitorMsg::Error { message } => bail!("exec in box {}: {message}", rec.name),
                _ => {}
            },
            _ => {}
        }
    };
    Ok(exit_status(Some(code)))
}
