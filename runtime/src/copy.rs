//! `a3s-box cp`: files and directories between the host and a box, like `docker cp`.
//!
//! - **Running box**: an exec session runs guest-init's own copy helper
//!   (`/.a3s/init __cp-out PATH` / `__cp-in DEST NAME`), so no `tar` is needed in the image; the
//!   tar stream ([`a3s_vmm::copy`]) travels as the session's stdout or stdin.
//! - **Stopped box**: a path under one of its `-v` mounts is read or written in the host
//!   directory behind it (what the box sees at its next start); writes into a `:ro` mount are
//!   refused. Any other path is on the box's layer disk, which the host does not mount:
//!   [`CopyError::NotPersistent`] tells the engine to go through a helper box instead.
//!
//! TEE boxes: host-initiated `cp` is refused unless the box was started with an explicit
//! opt-in; [`refuse_in_tee`] is that check and runs before anything touches the box.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use a3s_vmm::assets::INIT_PATH;
use a3s_vmm::copy::{self, GUEST_CP_IN, GUEST_CP_OUT};
use a3s_vmm::proto::{self, Frame, Kind, ProcessSpec};

use crate::boxes::client::MonitorMsg;
use crate::boxes::{BoxError, BoxRecord, BoxState, Boxes};
use crate::volumes::{self, Volumes};

/// One side of `cp`: `BOX:PATH` or a host path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpEndpoint {
    /// A path in a box.
    Box {
        /// Box name or id.
        key: String,
        /// Absolute guest path.
        path: String,
    },
    /// A host path.
    Host(PathBuf),
}

impl CpEndpoint {
    /// Docker's rule: an argument starting with `/` or `.` is a host path, otherwise text
    /// before the first `:` names a box.
    pub fn parse(s: &str) -> Self {
        if s.starts_with('/') || s.starts_with('.') {
            return Self::Host(s.into());
        }
        match s.split_once(':') {
            Some((key, path)) if !key.is_empty() => Self::Box {
                key: key.to_owned(),
                path: path.to_owned(),
            },
            _ => Self::Host(s.into()),
        }
    }
}

/// What a box allows the host to do (TEE boxes refuse host `cp` without an opt-in).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TeeGate {
    /// The box runs in a TEE (`--tee-enable` or `--tee-simulate`).
    pub tee: bool,
    /// It was started with `--allow-exec`.
    pub allow_exec: bool,
}

impl TeeGate {
    /// The gate of a box, from its TEE settings (`--tee-enable`/`--tee-simulate`,
    /// `--allow-exec`); the same opt-in the monitor applies to `exec`.
    pub fn of(rec: &BoxRecord) -> Self {
        Self {
            tee: rec.spec.tee.is_some(),
            allow_exec: rec.spec.tee.as_ref().is_some_and(|t| t.allow_exec),
        }
    }
}

/// Refuses host-initiated `cp` into or out of a TEE box without the `--allow-exec` opt-in.
///
/// # Errors
/// [`CopyError::RefusedInTee`].
pub fn refuse_in_tee(name: &str, gate: TeeGate) -> Result<(), CopyError> {
    if gate.tee && !gate.allow_exec {
        return Err(CopyError::RefusedInTee(name.to_owned()));
    }
    Ok(())
}

/// A copy failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// Guest paths must be absolute.
    #[error("{0:?}: the path in the box must be absolute")]
    RelativeGuestPath(String),
    /// A TEE box without the opt-in.
    #[error("cp is refused for box {0}: it runs in a TEE and was not started with --allow-exec")]
    RefusedInTee(String),
    /// A stopped box's path outside its mounts (on its layer disk: the engine copies through
    /// a helper box).
    #[error("{path} of stopped box {name} is on its layer disk, not under one of its volumes or bind mounts")]
    NotPersistent {
        /// The box.
        name: String,
        /// The guest path.
        path: String,
    },
    /// Writing into a read-only mount.
    #[error("{path} is on a read-only mount of box {name}")]
    ReadOnly {
        /// The box.
        name: String,
        /// The guest path.
        path: String,
    },
    /// A symlink in a mount points outside it.
    #[error("{0} leads outside the mount it is on (through a symlink)")]
    Escapes(PathBuf),
    /// The guest helper failed (its message).
    #[error("in box {name}: {message}")]
    Guest {
        /// The box.
        name: String,
        /// What it said.
        message: String,
    },
    /// Box errors (not found, monitor).
    #[error(transparent)]
    Box(#[from] BoxError),
    /// Volumes.
    #[error(transparent)]
    Volume(#[from] volumes::VolumeError),
    /// Host i/o or the copy stream.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl CopyError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotPersistent { name, .. } => Some(format!(
                "start the box (`a3s-box start {name}`) and copy while it runs"
            )),
            Self::RefusedInTee(_) => {
                Some("restart the box with --allow-exec if host access is intended".into())
            }
            Self::RelativeGuestPath(_) => Some("write BOX:/absolute/path".into()),
            Self::Box(e) => e.hint(),
            Self::Volume(e) => e.hint(),
            _ => None,
        }
    }
}

/// Copies `src` out of box `rec` to host `dest`; returns where the copy landed.
///
/// # Errors
/// [`CopyError`].
pub fn copy_out(
    boxes: &Boxes,
    rec: &BoxRecord,
    src: &str,
    dest: &Path,
) -> Result<PathBuf, CopyError> {
    refuse_in_tee(&rec.name, TeeGate::of(rec))?;
    let src = guest_path(src)?;
    let name = copy::base_name(Path::new(&src))?;
    if matches!(rec.state, BoxState::Running { .. }) {
        let conn = session(boxes, rec, vec![GUEST_CP_OUT.into(), src.clone()], false)?;
        let mut reader = SessionReader::new(conn);
        let placed = copy::unpack(&mut reader, &name, dest, false);
        let code = reader.finish();
        return match (placed, code) {
            (Ok(p), Ok(0)) => Ok(p),
            (Err(e), Ok(0)) => Err(e.into()),
            (_, Err(message)) => Err(guest_error(rec, message)),
            (_, Ok(_)) => Err(guest_error(rec, reader.stderr_text())),
        };
    }
    let (host, _) = persistent_path(boxes, rec, &src)?;
    let bytes = copy::pack(&host, &name, Vec::new())?;
    Ok(copy::unpack(bytes.as_slice(), &name, dest, false)?)
}

/// Copies host `src` into box `rec` at `dest`.
///
/// # Errors
/// [`CopyError`].
pub fn copy_in(boxes: &Boxes, rec: &BoxRecord, src: &Path, dest: &str) -> Result<(), CopyError> {
    refuse_in_tee(&rec.name, TeeGate::of(rec))?;
    let dest = guest_path(dest)?;
    let name = copy::base_name(src)?;
    if matches!(rec.state, BoxState::Running { .. }) {
        let mut conn = session(
            boxes,
            rec,
            vec![GUEST_CP_IN.into(), dest.clone(), name.clone()],
            true,
        )?;
        let packed = copy::pack(src, &name, StdinWriter(&mut conn)).map(drop);
        let _ = proto::write_frame(&mut conn, &Frame::data(Kind::StdinClosed, 0, vec![]));
        let mut reader = SessionReader::new(conn);
        let code = reader.finish();
        return match (packed, code) {
            (_, Err(message)) => Err(guest_error(rec, message)),
            (Ok(()), Ok(0)) => Ok(()),
            (_, Ok(_)) => Err(guest_error(rec, reader.stderr_text())),
        };
    }
    let (host, readonly) = persistent_path(boxes, rec, &dest)?;
    if readonly {
        return Err(CopyError::ReadOnly {
            name: rec.name.clone(),
            path: dest,
        });
    }
    let bytes = copy::pack(src, &name, Vec::new())?;
    copy::unpack(bytes.as_slice(), &name, &host, false)?;
    Ok(())
}

fn guest_error(rec: &BoxRecord, message: String) -> CopyError {
    CopyError::Guest {
        name: rec.name.clone(),
        message: if message.is_empty() {
            "the copy helper failed".into()
        } else {
            message
        },
    }
}

/// A normalised absolute guest path.
fn guest_path(p: &str) -> Result<String, CopyError> {
    if !p.starts_with('/') {
        return Err(CopyError::RelativeGuestPath(p.to_owned()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The host path behind guest `path` of a stopped box, and whether its mount is read-only.
fn persistent_path(
    boxes: &Boxes,
    rec: &BoxRecord,
    path: &str,
) -> Result<(PathBuf, bool), CopyError> {
    let specs = volumes::load_mounts(&boxes.box_dir(&rec.id))?;
    let resolved = volumes::resolve(&Volumes::open(boxes.home()), &specs)?;
    let best = specs
        .iter()
        .zip(&resolved)
        .filter_map(|(s, r)| {
            let rest = if path == s.target {
                Some("")
            } else {
                path.strip_prefix(&s.target)
                    .and_then(|r| r.strip_prefix('/'))
            }?;
            Some((s.target.len(), rest, r))
        })
        .max_by_key(|(len, _, _)| *len);
    let Some((_, rest, mount)) = best else {
        return Err(CopyError::NotPersistent {
            name: rec.name.clone(),
            path: path.to_owned(),
        });
    };
    let host = mount.host_dir.join(rest);
    confine(&mount.host_dir, &host)?;
    Ok((host, mount.readonly))
}

/// Checks that `path` (or its deepest existing ancestor) resolves inside `root`.
fn confine(root: &Path, path: &Path) -> Result<(), CopyError> {
    let root = root.canonicalize()?;
    let mut probe = path.to_owned();
    let real = loop {
        match probe.canonicalize() {
            Ok(p) => break p,
            Err(_) => {
                if !probe.pop() {
                    return Err(CopyError::Escapes(path.to_owned()));
                }
            }
        }
    };
    if real.starts_with(&root) {
        Ok(())
    } else {
        Err(CopyError::Escapes(path.to_owned()))
    }
}

fn session(
    boxes: &Boxes,
    rec: &BoxRecord,
    args: Vec<String>,
    stdin: bool,
) -> Result<UnixStream, CopyError> {
    let argv = std::iter::once(INIT_PATH.to_owned()).chain(args).collect();
    let conn = boxes.exec(
        rec,
        ProcessSpec {
            argv,
            stdin,
            ..Default::default()
        },
    )?;
    // Under TCG a large copy can stall the stream for a while; the guest's exit ends it.
    conn.set_write_timeout(None)?;
    Ok(conn)
}

/// Writes into an exec session as stdin frames (64 KiB at most each).
pub(crate) struct StdinWriter<'a>(pub(crate) &'a mut UnixStream);

impl Write for StdinWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(64 * 1024);
        proto::write_frame(self.0, &Frame::data(Kind::Stdin, 0, buf[..n].to_vec()))
            .map_err(io::Error::other)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Reads an exec session's stdout; keeps its stderr and exit.
struct SessionReader {
    conn: UnixStream,
    buf: Vec<u8>,
    pos: usize,
    stderr: Vec<u8>,
    end: Option<Result<i32, String>>,
}

impl SessionReader {
    fn new(conn: UnixStream) -> Self {
        Self {
            conn,
            buf: Vec::new(),
            pos: 0,
            stderr: Vec::new(),
            end: None,
        }
    }

    /// Reads one frame; false once the session has ended.
    fn next_frame(&mut self) -> bool {
        if self.end.is_some() {
            return false;
        }
        let frame = match proto::read_frame(&mut self.conn) {
            Ok(f) => f,
            Err(e) => {
                self.end = Some(Err(format!("lost the box's exec session: {e}")));
                return false;
            }
        };
        match frame.kind {
            Kind::Stdout => {
                self.buf = frame.payload;
                self.pos = 0;
            }
            Kind::Stderr => self.stderr.extend_from_slice(&frame.payload),
            Kind::Control => match frame.message::<MonitorMsg>() {
                Ok(MonitorMsg::Exited { code }) => self.end = Some(Ok(code)),
                Ok(MonitorMsg::SpawnFailed { message, .. } | MonitorMsg::Error { message }) => {
                    self.end = Some(Err(message));
                }
                _ => {}
            },
            _ => {}
        }
        true
    }

    /// Drains the session; its exit code, or why it failed.
    fn finish(&mut self) -> Result<i32, String> {
        while self.next_frame() {}
        self.end
            .clone()
            .unwrap_or_else(|| Err("the exec session ended without an exit code".into()))
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }
}

impl Read for SessionReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.buf.len() {
            if !self.next_frame() {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_docker() {
        assert_eq!(
            CpEndpoint::parse("web:/etc/hosts"),
            CpEndpoint::Box {
                key: "web".into(),
                path: "/etc/hosts".into()
            }
        );
        assert_eq!(CpEndpoint::parse("./a:b"), CpEndpoint::Host("./a:b".into()));
        assert_eq!(CpEndpoint::parse("/x:y"), CpEndpoint::Host("/x:y".into()));
        assert_eq!(CpEndpoint::parse("file"), CpEndpoint::Host("file".into()));
    }

    #[test]
    fn guest_paths_are_absolute_and_normalised() {
        assert_eq!(guest_path("/a//b/./c/").unwrap(), "/a/b/c");
        assert_eq!(guest_path("/a/../b").unwrap(), "/b");
        assert!(matches!(
            guest_path("rel"),
            Err(CopyError::RelativeGuestPath(_))
        ));
    }

    #[test]
    fn tee_boxes_refuse_cp_without_the_opt_in() {
        refuse_in_tee("b", TeeGate::default()).unwrap();
        let gate = TeeGate {
            tee: true,
            allow_exec: false,
        };
        assert!(matches!(
            refuse_in_tee("b", gate),
            Err(CopyError::RefusedInTee(_))
        ));
        refuse_in_tee(
            "b",
            TeeGate {
                tee: true,
                allow_exec: true,
            },
        )
        .unwrap();
    }

    #[test]
    fn symlinks_out_of_a_mount_are_caught() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("vol");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        confine(&root, &root.join("d/new/file")).unwrap();
        assert!(matches!(
            confine(&root, &root.join("evil/passwd")),
            Err(CopyError::Escapes(_))
        ));
    }
}
