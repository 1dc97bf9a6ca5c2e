//! Where the CRI server listens: a `unix://` address and its socket file.
//!
//! The socket is the node's container runtime: whoever can connect can run workloads as
//! root, so it is created owner-only (mode 0600) in a directory other users cannot write.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A listen address: `unix:///absolute/path.sock` (or a bare absolute path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenAddr {
    path: PathBuf,
}

/// What went wrong with the listen address or its socket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The address is not `unix:///absolute/path`.
    #[error("listen address {0:?} is not a Unix socket address: use unix:///run/a3s-box/cri.sock")]
    Scheme(String),
    /// Something that is not a socket sits at the path.
    #[error("{}: exists and is not a socket; remove it or choose another --listen path", .0.display())]
    NotSocket(PathBuf),
    /// Another server answers on the socket.
    #[error("{}: another CRI server is already listening there; stop it or choose another --listen path", .0.display())]
    InUse(PathBuf),
    /// Creating the directory, removing a stale socket or binding failed.
    #[error("{what} {}", path.display())]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl FromStr for ListenAddr {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let path = s.strip_prefix("unix://").unwrap_or(s);
        if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') {
            return Err(ListenError::Scheme(s.to_owned()));
        }
        Ok(Self {
            path: PathBuf::from(path),
        })
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unix://{}", self.path.display())
    }
}

impl ListenAddr {
    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Binds the socket: creates its directory (0700 when new), replaces a stale socket
    /// nobody answers on, refuses a live one or a non-socket file, and makes the socket
    /// owner-only.
    ///
    /// # Errors
    /// [`ListenError`].
    pub fn bind(&self) -> Result<std::os::unix::net::UnixListener, ListenError> {
        let io = |what, source| ListenError::Io {
            what,
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            if !dir.exists() {
                fs_err::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
                fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| io("restricting the directory of", e))?;
            }
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(ListenError::NotSocket(self.path.clone()))
            }
            Ok(_) => {
                if UnixStream::connect(&self.path).is_ok() {
                    return Err(ListenError::InUse(self.path.clone()));
                }
                std::fs::remove_file(&self.path).map_err(|e| io("removing the stale socket", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("checking", e)),
        }
        // The socket is created owner-only (umask 0177 for the bind), so no other user can
        // connect even before the chmod below; the old umask is restored at once.
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
        let bound = std::os::unix::net::UnixListener::bind(&self.path);
        rustix::process::umask(old);
        let listener = bound.map_err(|e| io("binding", e))?;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("configuring", e))?;
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_addresses() {
        let a: ListenAddr = "unix:///run/a3s-box/cri.sock".parse().expect("valid");
        assert_eq!(a.path(), Path::new("/run/a3s-box/cri.sock"));
        assert_eq!(a.to_string(), "unix:///run/a3s-box/cri.sock");
        let b: ListenAddr = "/tmp/x.sock".parse().expect("bare path");
        assert_eq!(b.path(), Path::new("/tmp/x.sock"));
    }

    #[test]
    fn refuses_other_schemes_and_relative_paths() {
        for bad in [
            "tcp://127.0.0.1:1",
            "unix://relative.sock",
            "cri.sock",
            "unix:///dir/",
        ] {
            let e = bad.parse::<ListenAddr>().expect_err(bad);
            assert!(
                e.to_string().contains("unix:///run/a3s-box/cri.sock"),
                "{e}"
            );
        }
    }

    #[test]
    fn binds_owner_only_and_replaces_only_stale_sockets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: ListenAddr = format!("unix://{}/sub/cri.sock", dir.path().display())
            .parse()
            .expect("valid");
        let live = addr.bind().expect("first bind");
        let mode = std::fs::metadata(addr.path())
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(addr.path().parent().expect("dir"))
            .expect("dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // A live server keeps its socket.
        assert!(matches!(addr.bind(), Err(ListenError::InUse(_))));
        drop(live);
        // Nobody answers any more: the stale socket is replaced.
        addr.bind().expect("rebind over a stale socket");
    }

    #[test]
    fn refuses_to_replace_a_regular_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cri.sock");
        std::fs::write(&path, b"data").expect("write");
        let addr: ListenAddr = path.to_str().expect("utf-8").parse().expect("valid");
        assert!(matches!(addr.bind(), Err(ListenError::NotSocket(_))));
        assert_eq!(std::fs::read(&path).expect("kept"), b"data");
    }
}
