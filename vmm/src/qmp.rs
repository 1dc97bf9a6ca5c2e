//! A minimal QMP (QEMU Machine Protocol) client: enough to stop and continue a VM's vCPUs
//! (`pause`/`unpause`) and ask whether it runs.
//!
//! QMP is JSON lines over the unix socket QEMU serves with `-qmp unix:PATH,server=on,wait=off`:
//! a greeting, then `qmp_capabilities`, then one `{"execute": ...}` per command, answered by
//! `{"return": ...}` or `{"error": {...}}`; asynchronous `{"event": ...}` lines may come in
//! between and are skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest QMP line accepted (answers here are a few hundred bytes).
const MAX_LINE: u64 = 1 << 20;
/// How long one command may take to be answered.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A QMP exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QmpError {
    /// The socket could not be used.
    #[error("QMP socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU answered with something that is not QMP.
    #[error("QMP socket {path}: unexpected answer {line:?}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What came.
        line: String,
    },
    /// QEMU refused the command.
    #[error("QEMU refused {command}: {message}")]
    Refused {
        /// The command.
        command: String,
        /// QEMU's `desc`.
        message: String,
    },
}

/// One QMP session with capabilities negotiated.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `path` and leaves capabilities negotiation mode.
    ///
    /// # Errors
    /// [`QmpError`].
    pub fn connect(path: &Path) -> Result<Self, QmpError> {
        let io = |source| QmpError::Io {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let writer = stream.try_clone().map_err(io)?;
        let mut qmp = Self {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_line()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.protocol(&greeting));
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    /// Runs `command` (no arguments) and returns its `return` value.
    ///
    /// # Errors
    /// [`QmpError::Refused`] with QEMU's reason, or i/o and protocol errors.
    pub fn execute(&mut self, command: &str) -> Result<serde_json::Value, QmpError> {
        self.execute_with(command, serde_json::Value::Null)
    }

    /// Runs `command` with `arguments` (`Null`: none) and returns its `return` value.
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub fn execute_with(
        &mut self,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, QmpError> {
        let request = if arguments.is_null() {
            serde_json::json!({ "execute": command })
        } else {
            serde_json::json!({ "execute": command, "arguments": arguments })
        };
        let mut line = serde_json::to_vec(&request).map_err(|e| self.io(e.into()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| self.io(e))?;
        loop {
            let mut answer = self.read_line()?;
            if let Some(ret) = answer.get_mut("return") {
                return Ok(ret.take());
            }
            if let Some(err) = answer.get("error") {
                return Err(QmpError::Refused {
                    command: command.to_owned(),
                    message: err
                        .get("desc")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("no reason given")
                        .to_owned(),
                });
            }
            if answer.get("event").is_none() {
                return Err(self.protocol(&answer));
            }
        }
    }

    /// Whether the vCPUs run (`query-status`).
    ///
    /// # Errors
    /// As [`Qmp::execute`].
    pub fn running(&mut self) -> Result<bool, QmpError> {
        let status = self.execute("query-status")?;
        status
            .get("running")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| self.protocol(&status))
    }

    fn read_line(&mut self) -> Result<serde_json::Value, QmpError> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(self.io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        serde_json::from_slice(&buf).map_err(|_| QmpError::Protocol {
            path: self.path.clone(),
            line: String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned(),
        })
    }

    fn io(&self, source: std::io::Error) -> QmpError {
        QmpError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn protocol(&self, v: &serde_json::Value) -> QmpError {
        let mut line = v.to_string();
        line.truncate(200);
        QmpError::Protocol {
            path: self.path.clone(),
            line,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// A real QEMU with no machine (no guest to boot) serving QMP; the directory holding its
    /// socket lives as long as it does.
    struct Qemu(std::process::Child, #[allow(dead_code)] tempfile::TempDir);

    impl Drop for Qemu {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn qemu() -> (Qemu, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let child = Command::new(crate::host::QEMU_BINARY)
            .args(["-M", "none", "-nodefaults", "-display", "none", "-qmp"])
            .arg(format!("unix:{},server=on,wait=off", path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("QEMU must be installed (scripts/setup)");
        while !path.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        (Qemu(child, dir), path)
    }

    /// The socket file exists once QEMU has bound it, a moment before it listens: connecting
    /// in between is refused (seen under parallel tests), so retry for a while.
    fn connect(path: &Path) -> Qmp {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match Qmp::connect(path) {
                Ok(q) => return q,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn stop_and_cont_change_what_query_status_says() {
        let (_qemu, path) = qemu();
        let mut q = connect(&path);
        assert!(q.running().unwrap());
        // QEMU announces STOP as an event before the answer: it is skipped.
        q.execute("stop").unwrap();
        assert!(!q.running().unwrap());
        q.execute("cont").unwrap();
        assert!(q.running().unwrap());
    }

    #[test]
    fn a_refusal_carries_qemus_reason() {
        let (_qemu, path) = qemu();
        let mut q = connect(&path);
        let e = q.execute("no-such-command").unwrap_err();
        assert!(
            matches!(&e, QmpError::Refused { message, .. } if message.contains("not been found")),
            "{e}"
        );
    }

    #[test]
    fn a_socket_that_is_not_qmp_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = Qmp::connect(&dir.path().join("absent.sock")).err().unwrap();
        assert!(e.to_string().contains("absent.sock"), "{e}");
    }
}
