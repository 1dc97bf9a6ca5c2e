//! Reading files a user names (compose and env files, policies, file secrets) with a size
//! limit suited to their format, so `/dev/zero` or a huge file is refused at once instead of
//! filling memory. The error is an `InvalidData` I/O error naming the file and the limit.

use std::io::{self, Read};
use std::path::Path;

/// The bytes of `path`, at most `limit` of them.
///
/// # Errors
/// The file cannot be opened or read, or it holds more than `limit` bytes.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs_err::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} exceeds {limit} bytes, the limit for this file",
                path.display()
            ),
        ));
    }
    Ok(bytes)
}

/// As [`read`], as UTF-8 text.
///
/// # Errors
/// As [`read`], and when the file is not UTF-8.
pub fn read_to_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read(path, limit)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_zero_and_files_over_the_limit_are_refused_naming_it() {
        let err = read(Path::new("/dev/zero"), 4096).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds 4096 bytes"), "{err}");
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"hello").unwrap();
        assert_eq!(read_to_string(f.path(), 5).unwrap(), "hello");
        assert!(read(f.path(), 4).is_err());
    }
}
