//! A minimal `newc` cpio writer: what the kernel unpacks into its initramfs.
//!
//! The kernel accepts several concatenated archives, so the base initrd (guest-init and modules)
//! and a per-image rootfs archive are built and cached separately, then concatenated.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// Writes entries of a `newc` archive; call [`CpioWriter::finish`] to add the trailer.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    written: u64,
}

/// Ownership and mode of an entry.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    /// Permission bits (without the file type).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds).
    pub mtime: u32,
}

impl Meta {
    /// Root-owned with the given permission bits and mtime 0 (reproducible archives).
    pub fn root(mode: u32) -> Self {
        Self {
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
        }
    }
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Self {
            out,
            ino: 1,
            written: 0,
        }
    }

    /// Adds a directory.
    ///
    /// # Errors
    /// The writer's error.
    pub fn dir(&mut self, name: &str, meta: Meta) -> io::Result<()> {
        self.entry(name, S_IFDIR | (meta.mode & 0o7777), meta, 2, &[])
    }

    /// Adds a regular file.
    ///
    /// # Errors
    /// The writer's error.
    pub fn file(&mut self, name: &str, meta: Meta, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | (meta.mode & 0o7777), meta, 1, data)
    }

    /// Adds a symbolic link to `target`.
    ///
    /// # Errors
    /// The writer's error.
    pub fn symlink(&mut self, name: &str, meta: Meta, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, meta, 1, target.as_bytes())
    }

    /// Adds the tree under `root` (directories, regular files, symlinks; other file types are
    /// skipped: the guest's devtmpfs provides devices). Names are relative to `root`.
    ///
    /// # Errors
    /// Reading the tree or writing the archive.
    pub fn tree(&mut self, root: &Path) -> io::Result<()> {
        self.walk(root, root)
    }

    fn walk(&mut self, root: &Path, dir: &Path) -> io::Result<()> {
        let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(fs_err::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .map_err(|_| io::Error::other("walked outside the tree"))?;
            let name = rel.to_string_lossy();
            let md = fs_err::symlink_metadata(&path)?;
            let meta = Meta {
                mode: md.permissions().mode(),
                uid: md.uid(),
                gid: md.gid(),
                mtime: u32::try_from(md.mtime().max(0)).unwrap_or(u32::MAX),
            };
            let ft = md.file_type();
            if ft.is_dir() {
                self.dir(&name, meta)?;
                self.walk(root, &path)?;
            } else if ft.is_symlink() {
                let target = fs_err::read_link(&path)?;
                self.symlink(&name, meta, &target.to_string_lossy())?;
            } else if ft.is_file() {
                let data = fs_err::read(&path)?;
                self.file(&name, meta, &data)?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        meta: Meta,
        nlink: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::other(format!(
                "{name}: larger than 4 GiB, cpio newc cannot hold it"
            ))
        })?;
        let namesize =
            u32::try_from(name.len() + 1).map_err(|_| io::Error::other("name too long"))?;
        let ino = self.ino;
        self.ino += 1;
        let header = format!(
            "070701{ino:08X}{mode:08X}{:08X}{:08X}{nlink:08X}{:08X}{size:08X}{:08X}{:08X}{:08X}{:08X}{namesize:08X}{:08X}",
            meta.uid, meta.gid, meta.mtime, 0, 0, 0, 0, 0
        );
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0; 4][..4 - rem])?;
        }
        Ok(())
    }

    /// Writes the trailer and returns the output.
    ///
    /// # Errors
    /// The writer's error.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry("TRAILER!!!", 0, Meta::root(0), 1, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn gnu_cpio_reads_what_we_write() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("bin")).unwrap();
        std::fs::write(src.path().join("bin/tool"), b"abc").unwrap();
        std::os::unix::fs::symlink("tool", src.path().join("bin/alias")).unwrap();
        let mut w = CpioWriter::new(Vec::new());
        w.dir("etc", Meta::root(0o755)).unwrap();
        w.file("etc/hostname", Meta::root(0o644), b"box\n").unwrap();
        w.tree(src.path()).unwrap();
        let archive = w.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);

        let out = tempfile::tempdir().unwrap();
        let mut child = Command::new("cpio")
            .args(["-idm", "--quiet"])
            .current_dir(out.path())
            .stdin(Stdio::piped())
            .spawn()
            .expect("cpio is installed by scripts/setup");
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read(out.path().join("etc/hostname")).unwrap(),
            b"box\n"
        );
        assert_eq!(std::fs::read(out.path().join("bin/tool")).unwrap(), b"abc");
        assert_eq!(
            std::fs::read_link(out.path().join("bin/alias")).unwrap(),
            Path::new("tool")
        );
    }
}
