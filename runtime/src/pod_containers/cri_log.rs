//! A container's log in the CRI format kubelet and `crictl logs` read:
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`, one line per output line, `P` for
//! a part of a line longer than [`MAX_LINE`] (the rest follows), `F` for a line's end.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest piece written as one log line (containerd's default is 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (and a terminal's merged output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// An open container log.
#[derive(Debug)]
pub struct CriLog {
    path: PathBuf,
    file: File,
    /// Bytes of an unfinished line, per stream.
    pending: [Vec<u8>; 2],
}

fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl CriLog {
    /// Opens (appends to) the log at `path`, creating its directory.
    ///
    /// # Errors
    /// i/o, naming the path.
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: open(path)?,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Reopens the file at the same path (kubelet rotated the old one away).
    ///
    /// # Errors
    /// i/o.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open(&self.path)?;
        Ok(())
    }

    fn line(&mut self, stream: Stream, tag: &str, content: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(content.len() + 48);
        out.extend_from_slice(format!("{} {} {tag} ", now(), stream.tag()).as_bytes());
        out.extend_from_slice(content);
        out.push(b'\n');
        self.file.write_all(&out)
    }

    /// Adds output of `stream`; complete lines are written, the rest waits for more.
    ///
    /// # Errors
    /// i/o.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        self.pending[idx].extend_from_slice(data);
        loop {
            let buf = &self.pending[idx];
            if let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending[idx].drain(..=nl).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop(); // a terminal's line end
                }
                self.line(stream, "F", &line)?;
            } else if buf.len() >= MAX_LINE {
                let part: Vec<u8> = self.pending[idx].drain(..MAX_LINE).collect();
                self.line(stream, "P", &part)?;
            } else {
                return Ok(());
            }
        }
    }

    /// Writes what is left of unfinished lines (the process ended).
    ///
    /// # Errors
    /// i/o.
    pub fn finish(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.line(stream, "F", &rest)?;
            }
        }
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let ts = f.next().unwrap();
                assert!(
                    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                        .is_ok(),
                    "{ts}"
                );
                (
                    f.next().unwrap().to_owned(),
                    f.next().unwrap().to_owned(),
                    f.next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn writes_lines_in_the_cri_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/c/0.log");
        let mut log = CriLog::open(&path).unwrap();
        log.write(Stream::Stdout, b"hel").unwrap();
        log.write(Stream::Stderr, b"oops\n").unwrap();
        log.write(Stream::Stdout, b"lo\r\nworld\n\nend").unwrap();
        log.finish().unwrap();
        let s = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
        assert_eq!(
            lines(&path),
            vec![
                s("stderr", "F", "oops"),
                s("stdout", "F", "hello"),
                s("stdout", "F", "world"),
                s("stdout", "F", ""),
                s("stdout", "F", "end"),
            ]
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "not readable by other users");
    }

    #[test]
    fn long_lines_are_split_into_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLog::open(&path).unwrap();
        let long = vec![b'x'; MAX_LINE + 10];
        log.write(Stream::Stdout, &long).unwrap();
        log.write(Stream::Stdout, b"\n").unwrap();
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].1.as_str(), got[0].2.len()), ("P", MAX_LINE));
        assert_eq!((got[1].1.as_str(), got[1].2.len()), ("F", 10));
    }

    #[test]
    fn reopen_starts_a_new_file_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = CriLog::open(&path).unwrap();
        log.write(Stream::Stdout, b"one\n").unwrap();
        std::fs::rename(&path, dir.path().join("0.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"two\n").unwrap();
        assert_eq!(lines(&path)[0].2, "two");
        assert_eq!(lines(&dir.path().join("0.log.1"))[0].2, "one");
    }
}
