//! The certificate table the host may attach to an extended report (GHCB spec 56421, section
//! 4.1.8.1): entries of `{ guid: [u8; 16], offset: u32, length: u32 }` ending with an all-zero
//! entry; offsets are from the start of the table.

use crate::measure::ovmf::Guid;
use crate::report::trustee::CertType;

/// GUIDs of the table entries, in their wire (mixed-endian) byte order.
const ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";
const ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
const VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
const VLEK: &str = "a8074bc2-a25a-483e-aae6-39c045a0b8a1";
const CRL: &str = "92f81bc3-5811-4d3d-97ff-d19f88dc67ea";

const ENTRY_LEN: usize = 24;

/// Certificates from a table, as (type, bytes).
pub type Certs = Vec<(CertType, Vec<u8>)>;

/// The certificate table is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertTableError {
    /// The table has no terminating all-zero entry.
    #[error("certificate table has no terminating entry")]
    Unterminated,
    /// An entry points outside the buffer.
    #[error(
        "certificate table entry {index} points outside the buffer ({offset}+{length} > {len})"
    )]
    OutOfBounds {
        /// Entry index.
        index: usize,
        /// Entry offset.
        offset: usize,
        /// Entry length.
        length: usize,
        /// Buffer length.
        len: usize,
    },
}

fn cert_type(guid: &str) -> CertType {
    match guid {
        ARK => CertType::Ark,
        ASK => CertType::Ask,
        VCEK => CertType::Vcek,
        VLEK => CertType::Vlek,
        CRL => CertType::Crl,
        other => CertType::Other(other.to_owned()),
    }
}

/// Parses a certificate table into (type, bytes) pairs.
///
/// # Errors
/// [`CertTableError`] when an entry points outside `buf` or the table is not terminated.
pub fn parse(buf: &[u8]) -> Result<Certs, CertTableError> {
    let mut out = Vec::new();
    for (index, entry) in buf.chunks_exact(ENTRY_LEN).enumerate() {
        if entry.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&entry[..16]);
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let data = offset
            .checked_add(length)
            .and_then(|end| buf.get(offset..end))
            .ok_or(CertTableError::OutOfBounds {
                index,
                offset,
                length,
                len: buf.len(),
            })?;
        out.push((
            cert_type(&Guid::from_bytes_le(guid).to_string()),
            data.to_vec(),
        ));
    }
    Err(CertTableError::Unterminated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid_bytes(s: &str) -> [u8; 16] {
        let h = hex::decode(s.replace('-', "")).unwrap();
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&[h[3], h[2], h[1], h[0]]);
        b[4..6].copy_from_slice(&[h[5], h[4]]);
        b[6..8].copy_from_slice(&[h[7], h[6]]);
        b[8..].copy_from_slice(&h[8..]);
        b
    }

    #[test]
    fn parses_vcek_and_ask_entries() {
        let mut buf = Vec::new();
        let table_len = 3 * ENTRY_LEN;
        for (guid, off, len) in [(VCEK, table_len, 3u32), (ASK, table_len + 3, 2)] {
            buf.extend_from_slice(&guid_bytes(guid));
            buf.extend_from_slice(&u32::try_from(off).unwrap().to_le_bytes());
            buf.extend_from_slice(&len.to_le_bytes());
        }
        buf.extend_from_slice(&[0u8; ENTRY_LEN]);
        buf.extend_from_slice(b"vckas");
        let t = parse(&buf).unwrap();
        assert_eq!(
            t,
            vec![
                (CertType::Vcek, b"vck".to_vec()),
                (CertType::Ask, b"as".to_vec())
            ]
        );
    }

    #[test]
    fn rejects_out_of_bounds_and_unterminated() {
        let mut buf = guid_bytes(VCEK).to_vec();
        buf.extend_from_slice(&100u32.to_le_bytes());
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        buf.extend_from_slice(&[0u8; ENTRY_LEN]);
        assert!(matches!(
            parse(&buf),
            Err(CertTableError::OutOfBounds { .. })
        ));
        let mut only = guid_bytes(ASK).to_vec();
        only.extend_from_slice(&0u32.to_le_bytes());
        only.extend_from_slice(&4u32.to_le_bytes());
        assert_eq!(parse(&only), Err(CertTableError::Unterminated));
    }
}
