//! Mounts made in another process's mount namespace (virtiofsd's, for a pod's CRI mounts)
//! with the new mount API: the host path is cloned as a detached tree (`open_tree`), given
//! its propagation and read-only flags there (`mount_setattr`), and attached at its place
//! in the other namespace (`move_mount`) by a short-lived thread that alone entered it.
//!
//! Why not bind in the host's namespace, where virtiofsd's slave copy would follow: a
//! directory that holds a mount in the caller's own namespace cannot be removed (`EBUSY`), so
//! kubelet (or anyone on the host) could not delete a volume directory with a submount while
//! a pod used it. A mount that lives only in another namespace does not block that: the
//! kernel detaches it there when its directory goes.
//!
//! nix has no wrappers for these calls (Linux 5.2 and 5.12), hence the raw system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// `struct mount_attr` of `<linux/mount.h>` (its first published size, 32 bytes).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// How a tree is made read-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnly {
    /// Writable.
    No,
    /// Its top mount only (what is mounted below stays as it is).
    Top,
    /// Every mount of the tree.
    Recursive,
}

/// Whether host mounts made under the source later reach the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// No (`rprivate`).
    Nothing,
    /// Yes (`rslave`).
    HostMounts,
}

/// Another process's mount namespace, and where a directory of ours is inside it.
#[derive(Debug)]
pub struct MountNs {
    fd: OwnedFd,
    root: PathBuf,
}

impl MountNs {
    /// The mount namespace of process `pid`, in which the directory we attach under is
    /// `root` (virtiofsd pivots into the directory it serves: `/`).
    ///
    /// # Errors
    /// The process is gone, or shares this process's namespace (mounting there would block
    /// the host's directories, which is what this module avoids).
    pub fn of_pid(pid: u32, root: &Path) -> io::Result<Self> {
        let path = format!("/proc/{pid}/ns/mnt");
        let theirs = std::fs::read_link(&path)?;
        if theirs == std::fs::read_link("/proc/self/ns/mnt")? {
            return Err(io::Error::other(format!(
                "process {pid} has no mount namespace of its own"
            )));
        }
        let fd = std::fs::File::open(&path)?.into();
        Ok(Self {
            fd,
            root: root.to_owned(),
        })
    }

    /// Where `relative` (a path under the directory) is inside the namespace.
    pub fn path_of(&self, relative: &Path) -> PathBuf {
        self.root.join(relative)
    }
}

/// A detached copy of a mount tree, not yet attached anywhere.
#[derive(Debug)]
pub struct Tree(OwnedFd);

impl Tree {
    /// A recursive clone of the mounts at `source` (a file or directory).
    ///
    /// # Errors
    /// `open_tree(2)`'s.
    #[allow(unsafe_code)] // system calls with no safe wrapper in nix
    pub fn clone_of(source: &Path) -> io::Result<Self> {
        let path = c_path(source)?;
        // SAFETY: a NUL-terminated path that outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                path.as_ptr(),
                OPEN_TREE_CLONE
                    | libc::O_CLOEXEC as libc::c_uint
                    | libc::AT_RECURSIVE as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("open_tree: bad descriptor"))?;
        // SAFETY: the kernel just returned this descriptor, owned by nothing else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sets the tree's propagation (every mount of it) and read-only flag.
    ///
    /// # Errors
    /// `mount_setattr(2)`'s.
    pub fn set(&self, follow: Follow, readonly: ReadOnly) -> io::Result<()> {
        let propagation = match follow {
            Follow::Nothing => libc::MS_PRIVATE,
            Follow::HostMounts => libc::MS_SLAVE,
        };
        self.setattr(true, 0, propagation)?;
        match readonly {
            ReadOnly::No => Ok(()),
            ReadOnly::Top => self.setattr(false, MOUNT_ATTR_RDONLY, 0),
            ReadOnly::Recursive => self.setattr(true, MOUNT_ATTR_RDONLY, 0),
        }
    }

    #[allow(unsafe_code)] // a system call with no safe wrapper in nix
    fn setattr(
        &self,
        recursive: bool,
        attr_set: u64,
        propagation: libc::c_ulong,
    ) -> io::Result<()> {
        let attr = MountAttr {
            attr_set,
            attr_clr: 0,
            propagation,
            userns_fd: 0,
        };
        let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: an empty C string and a mount_attr of the size passed, both outliving the
        // call; the kernel only reads them.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                self.0.as_raw_fd(),
                c"".as_ptr(),
                flags,
                &raw const attr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Attaches the tree at `target` (a path inside `ns`, an existing file or directory).
    /// A new thread unshares its filesystem attributes, which a thread may then re-point
    /// at another mount namespace alone, enters `ns` and moves the tree there.
    ///
    /// # Errors
    /// `setns(2)`'s and `move_mount(2)`'s.
    pub fn attach_in(self, ns: &MountNs, target: &Path) -> io::Result<()> {
        let target = c_path(target)?;
        let ns_fd = ns.fd.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || self.attach_here(ns_fd, &target))
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the mounting thread panicked")))
        })
    }

    #[allow(unsafe_code)] // system calls with no safe wrapper in nix
    fn attach_here(self, ns_fd: i32, target: &CString) -> io::Result<()> {
        // SAFETY: plain system calls on a descriptor borrowed for the call and a
        // NUL-terminated path; they change only this (short-lived) thread's filesystem view.
        unsafe {
            if libc::unshare(libc::CLONE_FS) != 0 || libc::setns(ns_fd, libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let rc = libc::syscall(
                libc::SYS_move_mount,
                self.0.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            );
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
    }
}

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}
