//! The files of the log directory and the byte-level rules of one line.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::log::AuditError;
use super::verify::ChainError;

/// The file new events are appended to.
pub(crate) const CURRENT: &str = "audit.jsonl";
/// Newest sequence number and hash, written after each line is durable.
pub(crate) const HEAD: &str = "head.json";
/// Lock file serialising writers.
pub(crate) const LOCK: &str = ".lock";
/// `prev` of the first line ever written.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_MEMBER: &str = ",\"hash\":\"";

/// The name a full `audit.jsonl` is renamed to, ordered by its first sequence number.
pub(crate) fn rotated_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

/// Every log file, oldest first: rotated files by first sequence number, then the current one.
pub(crate) fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut rotated = Vec::new();
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_rotated = name
            .strip_prefix("audit-")
            .and_then(|rest| rest.strip_suffix(".jsonl"))
            .is_some_and(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()));
        if is_rotated {
            rotated.push(dir.join(name));
        }
    }
    rotated.sort();
    let current = dir.join(CURRENT);
    if current.exists() {
        rotated.push(current);
    }
    Ok(rotated)
}

/// SHA-256 (hex) of `content`, the line's bytes without its hash member.
pub(crate) fn content_hash(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

/// Splits a stored line into (content that was hashed, stated hash).
///
/// The stored form is `<content without final '}'>,"hash":"<64 hex>"}`; the hashed content is
/// that prefix followed by `}`. Returns `None` when the line does not end that way.
pub(crate) fn split_hash(line: &[u8]) -> Option<(Vec<u8>, &str)> {
    const TAIL: usize = HASH_MEMBER.len() + 64 + 2; // member, 64 hex, `"}`
    if line.len() < TAIL + 1 {
        return None;
    }
    let cut = line.len() - TAIL;
    let tail = &line[cut..];
    if !tail.starts_with(HASH_MEMBER.as_bytes()) || !tail.ends_with(b"\"}") {
        return None;
    }
    let hash = std::str::from_utf8(&tail[HASH_MEMBER.len()..HASH_MEMBER.len() + 64]).ok()?;
    if !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut content = line[..cut].to_vec();
    content.push(b'}');
    Some((content, hash))
}

/// Turns serialised content `{…}` into the stored line `{…,"hash":"…"}` and returns both the
/// line and its hash.
pub(crate) fn seal_line(content: &[u8]) -> (Vec<u8>, String) {
    let hash = content_hash(content);
    let mut line = content[..content.len() - 1].to_vec();
    line.extend_from_slice(HASH_MEMBER.as_bytes());
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}");
    (line, hash)
}

/// The file's last complete line and the length of the file up to the end of that line (any
/// bytes after it are an unfinished write). `None` when the file holds no complete line.
pub(crate) fn last_line(file: &mut std::fs::File) -> std::io::Result<(Option<Vec<u8>>, u64)> {
    let len = file.seek(SeekFrom::End(0))?;
    let mut end = len; // exclusive end of the region still to search
    let mut buf = Vec::new();
    let mut complete_end: Option<u64> = None;
    const CHUNK: u64 = 4096;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        // Newline positions in `buf`, which starts at file offset `start`.
        let newlines: Vec<usize> = buf
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        if complete_end.is_none() {
            if let Some(&last_nl) = newlines.last() {
                complete_end = Some(start + last_nl as u64 + 1);
            }
        }
        if let Some(stop) = complete_end {
            let stop_in_buf = usize::try_from(stop - start).unwrap_or(0);
            // The newline before the last line, if within the buffer.
            let before = newlines.iter().rev().find(|&&i| i + 1 < stop_in_buf);
            if let Some(&b) = before {
                return Ok((Some(buf[b + 1..stop_in_buf - 1].to_vec()), stop));
            }
            if start == 0 {
                return Ok((Some(buf[..stop_in_buf - 1].to_vec()), stop));
            }
        }
        end = start;
    }
    Ok((None, 0))
}

/// The longest line accepted when reading the log: far above any entry the writer makes
/// (messages and metadata are small), so a longer one is damage, not data.
pub(crate) const MAX_LINE_BYTES: u64 = 1024 * 1024;

/// Calls `f` with (1-based line number, line without its newline) for each line of `path`.
///
/// # Errors
/// [`ChainError::Unfinished`] for a final line without a newline, [`ChainError::LineTooLong`]
/// past [`MAX_LINE_BYTES`], I/O errors, and whatever `f` returns.
pub(crate) fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), ChainError>,
) -> Result<(), ChainError> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(fs_err::File::open(path).map_err(AuditError::from)?);
    let mut line_no = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(AuditError::from)?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        if line.pop() != Some(b'\n') {
            if n as u64 > MAX_LINE_BYTES {
                return Err(ChainError::LineTooLong {
                    path: path.to_owned(),
                    line: line_no,
                    limit: MAX_LINE_BYTES,
                });
            }
            return Err(ChainError::Unfinished {
                path: path.to_owned(),
                line: line_no,
            });
        }
        f(line_no, &line)?;
    }
}

/// The first line of a file (without its newline), if it has a complete one.
pub(crate) fn first_line(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(fs_err::File::open(path)?);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        Ok(Some(line))
    } else {
        Ok(None)
    }
}
