//! The SEV hash table: SHA-256 of the kernel, initrd and command line that QEMU places in the
//! OVMF SNP_KERNEL_HASHES page for measured direct boot.
//!
//! Layout (QEMU `target/i386/sev.c`, all GUIDs in on-disk little-endian form, packed):
//!
//! ```text
//! | offset | size | field                                                  |
//! |--------|------|--------------------------------------------------------|
//! | 0x00   | 16   | table GUID 9438d606-4f22-4cc9-b479-a793d411fd21         |
//! | 0x10   | 2    | le16 length of the table without padding = 0xa8 (168)  |
//! | 0x12   | 50   | cmdline entry: GUID 97d02dd8-…, le16 0x32, SHA-256     |
//! | 0x44   | 50   | initrd entry:  GUID 44baf731-…, le16 0x32, SHA-256     |
//! | 0x76   | 50   | kernel entry:  GUID 4de79437-…, le16 0x32, SHA-256     |
//! | 0xa8   | 8    | zero padding to a multiple of 16                       |
//! ```
//!
//! The command line is hashed with its terminating NUL (an absent command line hashes as a
//! single NUL byte); an absent initrd hashes as the empty string.

use ring::digest;

use super::gctx::PAGE_SIZE;
use super::ovmf::Guid;
use super::MeasureError;

/// GUID that starts the SEV hash table.
pub const SEV_HASH_TABLE_HEADER_GUID: Guid = Guid::from_fields(
    0x9438_d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);

/// GUID of the kernel entry.
pub const SEV_KERNEL_ENTRY_GUID: Guid = Guid::from_fields(
    0x4de7_9437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);

/// GUID of the initrd entry.
pub const SEV_INITRD_ENTRY_GUID: Guid = Guid::from_fields(
    0x44ba_f731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);

/// GUID of the command-line entry.
pub const SEV_CMDLINE_ENTRY_GUID: Guid = Guid::from_fields(
    0x97d0_2dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);

/// Length of one table entry: GUID, le16 length, SHA-256.
const ENTRY_LEN: usize = 16 + 2 + 32;

/// Length of the table without padding: GUID, le16 length, three entries.
const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;

/// Length of the table padded to a multiple of 16, as placed in the page.
pub const PADDED_TABLE_LEN: usize = (TABLE_LEN + 15) & !15;

/// SHA-256 digests of the kernel, initrd and command line of a measured direct boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevHashes {
    /// SHA-256 of the kernel image.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of the empty string when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line including its NUL terminator (`"\0"` when there is none).
    pub cmdline: [u8; 32],
}

impl SevHashes {
    /// Hashes the kernel, optional initrd and optional command line.
    ///
    /// An empty `append` is the same as none, as in QEMU.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, append: Option<&str>) -> Self {
        Self {
            kernel: sha256(kernel),
            initrd: sha256(initrd.unwrap_or_default()),
            cmdline: cmdline_hash(append),
        }
    }

    /// The hashes from SHA-256 digests of the kernel and initrd computed earlier (streamed or
    /// cached) and the command line; `initrd` is the digest of the empty string when there is
    /// none.
    pub fn from_digests(kernel: [u8; 32], initrd: [u8; 32], append: Option<&str>) -> Self {
        Self {
            kernel,
            initrd,
            cmdline: cmdline_hash(append),
        }
    }

    /// The padded SEV hash table.
    pub fn table(&self) -> [u8; PADDED_TABLE_LEN] {
        let mut table = [0u8; PADDED_TABLE_LEN];
        table[0x00..0x10].copy_from_slice(&SEV_HASH_TABLE_HEADER_GUID.to_bytes_le());
        table[0x10..0x12].copy_from_slice(&le16(TABLE_LEN));
        let entries = [
            (SEV_CMDLINE_ENTRY_GUID, &self.cmdline),
            (SEV_INITRD_ENTRY_GUID, &self.initrd),
            (SEV_KERNEL_ENTRY_GUID, &self.kernel),
        ];
        for (entry, (guid, hash)) in table[0x12..TABLE_LEN]
            .chunks_exact_mut(ENTRY_LEN)
            .zip(entries)
        {
            entry[0..16].copy_from_slice(&guid.to_bytes_le());
            entry[16..18].copy_from_slice(&le16(ENTRY_LEN));
            entry[18..ENTRY_LEN].copy_from_slice(hash);
        }
        table
    }

    /// A zero page with the padded table at `offset_in_page`.
    ///
    /// # Errors
    ///
    /// [`MeasureError::HashTableOutsidePage`] if the table does not fit in the page at that
    /// offset.
    pub fn page(&self, offset_in_page: usize) -> Result<Box<[u8; PAGE_SIZE]>, MeasureError> {
        let end = offset_in_page
            .checked_add(PADDED_TABLE_LEN)
            .filter(|end| *end <= PAGE_SIZE)
            .ok_or(MeasureError::HashTableOutsidePage { offset_in_page })?;
        let mut page = Box::new([0u8; PAGE_SIZE]);
        page[offset_in_page..end].copy_from_slice(&self.table());
        Ok(page)
    }
}

/// SHA-256 of the command line as QEMU hashes it: with a NUL terminator.
pub(crate) fn cmdline_hash(append: Option<&str>) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(append.unwrap_or_default().as_bytes());
    ctx.update(&[0]);
    to_array(ctx.finish())
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    to_array(digest::digest(&digest::SHA256, data))
}

/// Copies a SHA-256 digest into an array.
pub(crate) fn to_array(d: digest::Digest) -> [u8; 32] {
    let mut out = [0; 32];
    // Only SHA-256 digests reach here; they are always 32 bytes long.
    out.copy_from_slice(d.as_ref());
    out
}

/// `len` as a little-endian u16; only called with the constant table lengths (< 0x100).
fn le16(len: usize) -> [u8; 2] {
    u16::try_from(len).unwrap_or(u16::MAX).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_computed_earlier_give_the_same_table() {
        let fresh = SevHashes::new(b"kernel", Some(b"initrd"), Some("ro quiet"));
        let earlier =
            SevHashes::from_digests(sha256(b"kernel"), sha256(b"initrd"), Some("ro quiet"));
        assert_eq!(fresh, earlier);
        assert_eq!(fresh.table(), earlier.table());
    }

    #[test]
    fn table_lengths_match_qemu() {
        assert_eq!(TABLE_LEN, 168);
        assert_eq!(PADDED_TABLE_LEN, 176);
    }

    #[test]
    fn empty_inputs_hash_like_qemu() {
        let h = SevHashes::new(b"", None, None);
        // SHA-256("") and SHA-256("\0"), independent well-known values.
        assert_eq!(
            hex::encode(h.initrd),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(h.cmdline),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(SevHashes::new(b"", None, Some("")), h);
    }

    #[test]
    fn table_starts_with_header_guid_and_entries() {
        let t = SevHashes::new(b"k", Some(b"i"), Some("c")).table();
        assert_eq!(
            hex::encode(&t[..18]),
            "06d63894224fc94cb479a793d411fd21a800"
        );
        assert_eq!(
            hex::encode(&t[0x12..0x24]),
            "d82dd097 20bd 944c aa78e7714d36ab2a 3200".replace(' ', "")
        );
        assert_eq!(&t[TABLE_LEN..], &[0u8; 8]);
    }

    #[test]
    fn rejects_table_crossing_the_page_end() {
        let h = SevHashes::new(b"", None, None);
        assert!(h.page(PAGE_SIZE - PADDED_TABLE_LEN).is_ok());
        assert!(matches!(
            h.page(PAGE_SIZE - PADDED_TABLE_LEN + 1),
            Err(MeasureError::HashTableOutsidePage { .. })
        ));
        assert!(h.page(usize::MAX).is_err());
    }
}
