//! A minimal `newc` cpio writer: what the kernel unpacks into its initramfs.
//!
//! It holds the base initrd (guest-init, modules, tools); images are not in it (see
//! [`crate::disk`]).

use std::io::{self, Write};

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
        let mut w = CpioWriter::new(Vec::new());
        w.dir("etc", Meta::root(0o755)).unwrap();
        w.file("etc/hostname", Meta::root(0o644), b"box\n").unwrap();
        w.dir("bin", Meta::root(0o755)).unwrap();
        w.file("bin/tool", Meta::root(0o755), b"abc").unwrap();
        w.symlink("bin/alias", Meta::root(0o777), "tool").unwrap();
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
            std::path::Path::new("tool")
        );
    }
}
