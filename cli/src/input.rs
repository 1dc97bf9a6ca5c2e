//! Reading files named on the command line, each with a size limit suited to its format, so
//! `/dev/zero` or a huge file is refused at once instead of filling memory.

use std::io::Read;
use std::path::Path;

use anyhow::Context;

use crate::usage_error;

/// SNP reports, as raw bytes, hex or trustee evidence JSON with its certificate chain (a few
/// tens of KB).
pub(crate) const REPORT_MAX_BYTES: u64 = 1 << 20;
/// Certificates (PEM or DER chains) and CRLs.
pub(crate) const CERT_MAX_BYTES: u64 = 1 << 20;
/// PEM keys.
pub(crate) const KEY_MAX_BYTES: u64 = 64 << 10;
/// Policies (Rego, TOML) and env files.
pub(crate) const TEXT_MAX_BYTES: u64 = 1 << 20;
/// Secrets injected into a running box (`secret inject`): the RA-TLS delivery's limit.
pub(crate) const SECRET_INJECT_MAX_BYTES: u64 = a3s_runtime::engine::MAX_INJECT_BYTES as u64;
/// Secrets uploaded to a KBS (far above the broker's default body limit of 1 MiB).
pub(crate) const SECRET_MAX_BYTES: u64 = 64 << 20;

/// The bytes of `path` (a `what`), at most `limit` of them; a usage error naming the limit
/// otherwise.
pub(crate) fn read_limited(path: &Path, limit: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("reading {what} {}", path.display()))
        .map_err(usage_error)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what} {}", path.display()))
        .map_err(usage_error)?;
    if bytes.len() as u64 > limit {
        return Err(usage_error(anyhow::anyhow!(
            "{what} {} exceeds {limit} bytes, the limit for a {what}",
            path.display()
        )));
    }
    Ok(bytes)
}

/// As [`read_limited`], as UTF-8 text.
pub(crate) fn read_text_limited(path: &Path, limit: u64, what: &str) -> anyhow::Result<String> {
    String::from_utf8(read_limited(path, limit, what)?).map_err(|_| {
        usage_error(anyhow::anyhow!(
            "{what} {} is not UTF-8 text",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_zero_is_refused_naming_the_limit() {
        let err = read_limited(Path::new("/dev/zero"), 4096, "report").unwrap_err();
        assert!(format!("{err:#}").contains("exceeds 4096 bytes"), "{err:#}");
    }

    #[test]
    fn a_file_at_the_limit_is_read() {
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), [7u8; 100]).unwrap();
        assert_eq!(read_limited(t.path(), 100, "x").unwrap().len(), 100);
        assert!(read_limited(t.path(), 99, "x").is_err());
    }
}
