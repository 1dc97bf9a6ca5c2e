//! Streams between this terminal and a box: foreground `run`, `exec`, `logs`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use anyhow::bail;

use a3s_runtime::boxes::client::MonitorMsg;
use a3s_runtime::boxes::logs::{LogRecord, Stream};
use a3s_runtime::boxes::BoxRecord;
use a3s_runtime::engine::{Engine, RunEvents};
use a3s_vmm::proto::{self, Frame, Kind, ProcessSpec};

use super::args::ExecArgs;
use crate::commands::EngineResult;
use crate::ExitStatus;

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

/// Copies this process's stdin into `conn` as stdin frames, then signals end of input.
fn pump_stdin(mut conn: UnixStream, session: u32) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if proto::write_frame(
                        &mut conn,
                        &Frame::data(Kind::Stdin, session, buf[..n].to_vec()),
                    )
                    .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = proto::write_frame(&mut conn, &Frame::data(Kind::StdinClosed, session, vec![]));
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

/// This terminal as the front end of a `run`: the TCG notice once the box exists, raw mode
/// and stdin once a foreground box runs (restored when dropped), its output as it comes.
pub(super) struct Terminal {
    tty: bool,
    raw: Option<RawMode>,
    cidfile: Option<super::CidFile>,
}

impl Terminal {
    pub(super) fn new(tty: bool) -> Self {
        Self {
            tty,
            raw: None,
            cidfile: None,
        }
    }

    /// Writes the box id to `--cidfile` once the box exists.
    pub(super) fn with_cidfile(mut self, cidfile: super::CidFile) -> Self {
        self.cidfile = Some(cidfile);
        self
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

    fn running(&mut self, _rec: &BoxRecord, stdin: Option<UnixStream>) {
        self.raw = Some(RawMode::enable(self.tty));
        if let Some(conn) = stdin {
            pump_stdin(conn, proto::WORKLOAD_SESSION);
        }
    }

    fn output(&mut self, records: &[LogRecord]) -> std::io::Result<()> {
        print_records(records, false)
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
    let (rec, mut conn) = engine.exec(&a.r#box, process).engine()?;
    let _raw = RawMode::enable(a.tty && a.interactive);
    if a.interactive {
        pump_stdin(conn.try_clone()?, 0);
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = loop {
        let frame = match proto::read_frame(&mut conn) {
            Ok(f) => f,
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
    Ok(match u8::try_from(code) {
        Ok(0) => ExitStatus::Success,
        Ok(c) => ExitStatus::External(c),
        Err(_) => ExitStatus::External(125),
    })
}
