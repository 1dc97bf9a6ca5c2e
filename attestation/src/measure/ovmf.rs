//! Parsing the parts of an OVMF image that the SNP launch measurement depends on.
//!
//! The last bytes of an OVMF (edk2) image hold a GUIDed table, read backwards from its footer:
//!
//! ```text
//! ... | entry data | le16 size | guid | ... | le16 size | FOOTER_GUID | 32 bytes (reset vector) |
//!                                            ^ footer: size covers the whole table + 18
//! ```
//!
//! Each entry ends with its total size (data + 18) and its GUID, so the table is walked from the
//! footer towards the start of the image. The entries used here:
//!
//! | GUID                                   | name                  | data                              |
//! |----------------------------------------|-----------------------|-----------------------------------|
//! | `00f771de-1a7e-4fcb-890e-68c77e2fb44e` | SEV-ES reset block    | le32 AP reset EIP                 |
//! | `7255371f-3a3b-4b04-927b-1da6efa8d454` | SEV hash table        | le32 GPA of the kernel hash table |
//! | `dc886566-984a-4798-a75e-5585a7bf67cc` | OVMF SEV metadata     | le32 offset of "ASEV" from the end|
//!
//! The SEV metadata (edk2 `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`) is a 16-byte header
//! `{ "ASEV", le32 size, le32 version = 1, le32 num_items }` followed by `num_items` descriptors
//! `{ le32 gpa, le32 size, le32 type }`, each one a range the VMM adds to the guest at launch.
//!
//! Parsing never trusts the image: every offset and length is bounds-checked and every error
//! says which structure was malformed.

use std::fmt;

use thiserror::Error;

/// Size of the `{ le16 size, guid }` header that ends every footer-table entry.
const ENTRY_HEADER_LEN: usize = 18;

/// The footer ends this many bytes before the end of the image (the reset vector follows).
const FOOTER_TRAILER_LEN: usize = 32;

/// Size of the SEV metadata header `{ "ASEV", size, version, num_items }`.
const METADATA_HEADER_LEN: usize = 16;

/// Size of one SEV metadata section descriptor `{ gpa, size, type }`.
const METADATA_ITEM_LEN: usize = 12;

/// Signature of the SEV metadata header.
const METADATA_SIGNATURE: [u8; 4] = *b"ASEV";

/// The only SEV metadata version defined by edk2.
const METADATA_VERSION: u32 = 1;

/// An EFI GUID, stored as its on-disk bytes (first three fields little-endian, as in
/// Python's `uuid.bytes_le`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

impl Guid {
    /// Builds a GUID from its canonical fields `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Self {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// The GUID as stored in firmware images and the SEV hash table.
    pub const fn to_bytes_le(self) -> [u8; 16] {
        self.0
    }

    /// The GUID from the 16 bytes stored in a firmware image.
    pub const fn from_bytes_le(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        for byte in &b[10..] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// GUID of the footer that ends the OVMF GUIDed table.
pub const OVMF_TABLE_FOOTER_GUID: Guid = Guid::from_fields(
    0x96b5_82de,
    0x1fb2,
    0x45f7,
    [0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d],
);

/// GUID of the entry holding the GPA of the SEV kernel/initrd/cmdline hash table.
pub const SEV_HASH_TABLE_RV_GUID: Guid = Guid::from_fields(
    0x7255_371f,
    0x3a3b,
    0x4b04,
    [0x92, 0x7b, 0x1d, 0xa6, 0xef, 0xa8, 0xd4, 0x54],
);

/// GUID of the entry holding the SEV-ES AP reset EIP.
pub const SEV_ES_RESET_BLOCK_GUID: Guid = Guid::from_fields(
    0x00f7_71de,
    0x1a7e,
    0x4fcb,
    [0x89, 0x0e, 0x68, 0xc7, 0x7e, 0x2f, 0xb4, 0x4e],
);

/// GUID of the entry locating the OVMF SEV metadata ("ASEV").
pub const OVMF_SEV_METADATA_GUID: Guid = Guid::from_fields(
    0xdc88_6566,
    0x984a,
    0x4798,
    [0xa7, 0x5e, 0x55, 0x85, 0xa7, 0xbf, 0x67, 0xcc],
);

/// Kind of an OVMF SEV metadata section (edk2 `OvmfSevMetadata.asm`).
///
/// | Value | Name              | measured as                                          |
/// |-------|-------------------|------------------------------------------------------|
/// | 0x1   | SNP_SEC_MEM       | ZERO pages (UNMEASURED on GCE)                       |
/// | 0x2   | SNP_SECRETS       | one SECRETS page                                     |
/// | 0x3   | CPUID             | one CPUID page (on EC2: after all other sections)    |
/// | 0x4   | SVSM_CAA          | ZERO pages                                           |
/// | 0x10  | SNP_KERNEL_HASHES | NORMAL page with the hash table, or ZERO pages       |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SectionType {
    /// Memory the firmware pre-validates (SNP_SEC_MEM).
    SnpSecMem,
    /// The SNP secrets page (SNP_SECRETS).
    SnpSecrets,
    /// The SNP CPUID page (CPUID).
    Cpuid,
    /// The SVSM calling-area page (SVSM_CAA).
    SvsmCaa,
    /// The page that receives the kernel/initrd/cmdline hash table (SNP_KERNEL_HASHES).
    SnpKernelHashes,
}

impl SectionType {
    /// The section type with metadata value `value`, if it is one edk2 defines.
    pub fn from_value(value: u32) -> Option<Self> {
        match value {
            0x1 => Some(Self::SnpSecMem),
            0x2 => Some(Self::SnpSecrets),
            0x3 => Some(Self::Cpuid),
            0x4 => Some(Self::SvsmCaa),
            0x10 => Some(Self::SnpKernelHashes),
            _ => None,
        }
    }

    /// The metadata value of this section type.
    pub fn value(self) -> u32 {
        match self {
            Self::SnpSecMem => 0x1,
            Self::SnpSecrets => 0x2,
            Self::Cpuid => 0x3,
            Self::SvsmCaa => 0x4,
            Self::SnpKernelHashes => 0x10,
        }
    }
}

/// One section of the OVMF SEV metadata: a guest-physical range and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataSection {
    /// Guest-physical address of the section.
    pub gpa: u32,
    /// Size of the section in bytes.
    pub size: u32,
    /// What the section holds.
    pub section_type: SectionType,
}

/// A malformed or incomplete OVMF image.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OvmfError {
    /// The GUIDed table would start before the beginning of the image.
    #[error("OVMF footer table of {table_len} bytes does not fit in a {image_len}-byte image")]
    FooterTableOutOfBounds {
        /// Table length claimed by the footer.
        table_len: usize,
        /// Length of the image.
        image_len: usize,
    },
    /// A table entry's size is smaller than its own header or larger than the rest of the table.
    #[error("OVMF footer table entry {guid} at image offset {offset:#x} has invalid size {size}")]
    InvalidEntrySize {
        /// GUID of the entry.
        guid: Guid,
        /// Image offset of the entry's header.
        offset: usize,
        /// The entry's size field.
        size: u16,
    },
    /// The image has no footer table, so no SEV information at all.
    #[error("image has no OVMF footer table (GUID {OVMF_TABLE_FOOTER_GUID}); is it an OVMF build with SEV support?")]
    MissingFooterTable,
    /// A required entry is absent from the footer table.
    #[error("OVMF footer table has no {name} entry (GUID {guid})")]
    MissingEntry {
        /// What the entry holds.
        name: &'static str,
        /// GUID of the entry.
        guid: Guid,
    },
    /// A table entry is too short for the value it must hold.
    #[error(
        "OVMF footer table entry {name} (GUID {guid}) has {len} data bytes, expected at least 4"
    )]
    EntryTooShort {
        /// What the entry holds.
        name: &'static str,
        /// GUID of the entry.
        guid: Guid,
        /// Data length of the entry.
        len: usize,
    },
    /// The SEV metadata offset points outside the image.
    #[error("OVMF SEV metadata at {offset_from_end:#x} bytes from the end lies outside the {image_len}-byte image")]
    MetadataOutOfBounds {
        /// Offset from the end of the image, as stored in the table entry.
        offset_from_end: u32,
        /// Length of the image.
        image_len: usize,
    },
    /// The SEV metadata header does not start with "ASEV".
    #[error("OVMF SEV metadata has signature {found:02x?}, expected \"ASEV\"")]
    BadMetadataSignature {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The SEV metadata version is not 1.
    #[error("OVMF SEV metadata version {0} is not supported (expected 1)")]
    UnsupportedMetadataVersion(u32),
    /// The SEV metadata declares more sections than its size or the image can hold.
    #[error("OVMF SEV metadata declares {num_items} sections but its {size}-byte area does not hold them")]
    MetadataItemsOutOfBounds {
        /// Declared number of sections.
        num_items: u32,
        /// Declared size of the metadata, header included.
        size: u32,
    },
    /// The image is empty.
    #[error("OVMF image is empty")]
    EmptyImage,
    /// The image is not a whole number of 4 KiB pages.
    #[error("OVMF image of {len} bytes is not a whole number of 4 KiB pages")]
    SizeNotPageAligned {
        /// Length of the image.
        len: usize,
    },
    /// The image does not fit below 4 GiB.
    #[error("OVMF image of {len} bytes does not fit below 4 GiB")]
    TooLarge {
        /// Length of the image.
        len: usize,
    },
    /// A kernel was given but the image cannot measure one.
    #[error("kernel given, but the OVMF SEV metadata has no SNP_KERNEL_HASHES section")]
    NoKernelHashesSection,
    /// The SNP_KERNEL_HASHES section is not exactly one page.
    #[error("OVMF SNP_KERNEL_HASHES section at {gpa:#x} is {size} bytes, expected 4096")]
    KernelHashesSectionSize {
        /// GPA of the section.
        gpa: u32,
        /// Size of the section.
        size: u32,
    },
    /// More than one vCPU, but the image's AP reset EIP is zero.
    #[error("OVMF SEV-ES reset block gives AP reset EIP 0, so APs cannot start")]
    ZeroApResetEip,
    /// A section descriptor has a type edk2 does not define.
    #[error("OVMF SEV metadata section {index} has unknown type {value:#x}")]
    UnknownSectionType {
        /// Index of the section in the metadata.
        index: usize,
        /// The type value found.
        value: u32,
    },
}

/// A parsed OVMF image: its bytes, footer-table entries and SEV metadata sections.
///
/// Invariant: every entry's data lies inside `data`; every section has a known type.
#[derive(Clone, Debug)]
pub struct Ovmf<'a> {
    data: &'a [u8],
    has_footer: bool,
    entries: Entries<'a>,
    sections: Vec<MetadataSection>,
}

impl<'a> Ovmf<'a> {
    /// Parses the footer table and SEV metadata of the OVMF image `data`.
    ///
    /// An image without a footer table parses (it has no entries and no sections), so that its
    /// OVMF hash can still be computed; measurements that need an entry then fail.
    ///
    /// # Errors
    ///
    /// An [`OvmfError`] naming the structure that is truncated, out of bounds or unknown.
    pub fn parse(data: &'a [u8]) -> Result<Self, OvmfError> {
        let (has_footer, entries) = parse_footer_table(data)?;
        let mut ovmf = Self {
            data,
            has_footer,
            entries,
            sections: Vec::new(),
        };
        ovmf.sections = ovmf.parse_sev_metadata()?;
        Ok(ovmf)
    }

    /// The image bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The SEV metadata sections, in image order (empty if the image has none).
    pub fn sections(&self) -> &[MetadataSection] {
        &self.sections
    }

    /// Whether the metadata has a section of type `section_type`.
    pub fn has_section(&self, section_type: SectionType) -> bool {
        self.sections.iter().any(|s| s.section_type == section_type)
    }

    /// The data of the footer-table entry `guid`, if present.
    ///
    /// If an image repeats a GUID, the entry nearest the start of the image wins.
    pub fn entry(&self, guid: Guid) -> Option<&'a [u8]> {
        self.entries
            .iter()
            .rev()
            .find(|(g, _)| *g == guid)
            .map(|(_, data)| *data)
    }

    /// The SEV-ES AP reset EIP (entry [`SEV_ES_RESET_BLOCK_GUID`]).
    ///
    /// # Errors
    ///
    /// [`OvmfError::MissingFooterTable`], [`OvmfError::MissingEntry`] or
    /// [`OvmfError::EntryTooShort`].
    pub fn sev_es_reset_eip(&self) -> Result<u32, OvmfError> {
        self.entry_u32(SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block")
    }

    /// The GPA of the SEV kernel hash table (entry [`SEV_HASH_TABLE_RV_GUID`]).
    ///
    /// # Errors
    ///
    /// [`OvmfError::MissingFooterTable`], [`OvmfError::MissingEntry`] or
    /// [`OvmfError::EntryTooShort`].
    pub fn sev_hashes_table_gpa(&self) -> Result<u32, OvmfError> {
        self.entry_u32(SEV_HASH_TABLE_RV_GUID, "SEV hash table")
    }

    /// The first four bytes of entry `guid` as a little-endian u32.
    fn entry_u32(&self, guid: Guid, name: &'static str) -> Result<u32, OvmfError> {
        if !self.has_footer {
            return Err(OvmfError::MissingFooterTable);
        }
        let data = self
            .entry(guid)
            .ok_or(OvmfError::MissingEntry { name, guid })?;
        read_le32(data, 0).ok_or(OvmfError::EntryTooShort {
            name,
            guid,
            len: data.len(),
        })
    }

    /// Reads the "ASEV" metadata located by [`OVMF_SEV_METADATA_GUID`], if the image has it.
    fn parse_sev_metadata(&self) -> Result<Vec<MetadataSection>, OvmfError> {
        let Some(entry) = self.entry(OVMF_SEV_METADATA_GUID) else {
            return Ok(Vec::new());
        };
        let guid = OVMF_SEV_METADATA_GUID;
        let name = "OVMF SEV metadata";
        let offset_from_end = read_le32(entry, 0).ok_or(OvmfError::EntryTooShort {
            name,
            guid,
            len: entry.len(),
        })?;
        let image_len = self.data.len();
        let out_of_bounds = OvmfError::MetadataOutOfBounds {
            offset_from_end,
            image_len,
        };
        let start = usize::try_from(offset_from_end)
            .ok()
            .and_then(|off| image_len.checked_sub(off))
            .ok_or_else(|| out_of_bounds.clone())?;
        let header: [u8; METADATA_HEADER_LEN] = self
            .data
            .get(start..)
            .and_then(|rest| rest.get(..METADATA_HEADER_LEN))
            .and_then(|h| h.try_into().ok())
            .ok_or(out_of_bounds)?;
        let signature = [header[0], header[1], header[2], header[3]];
        if signature != METADATA_SIGNATURE {
            return Err(OvmfError::BadMetadataSignature { found: signature });
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        let num_items = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        if version != METADATA_VERSION {
            return Err(OvmfError::UnsupportedMetadataVersion(version));
        }
        let items_out_of_bounds = OvmfError::MetadataItemsOutOfBounds { num_items, size };
        // The descriptors must fit both in the declared metadata size and in the image.
        let items_len = usize::try_from(num_items)
            .ok()
            .and_then(|n| n.checked_mul(METADATA_ITEM_LEN))
            .ok_or_else(|| items_out_of_bounds.clone())?;
        let declared = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_sub(METADATA_HEADER_LEN))
            .unwrap_or(0);
        if items_len > declared {
            return Err(items_out_of_bounds);
        }
        let items_start = start + METADATA_HEADER_LEN;
        let items = self
            .data
            .get(items_start..)
            .and_then(|rest| rest.get(..items_len))
            .ok_or(items_out_of_bounds)?;
        items
            .chunks_exact(METADATA_ITEM_LEN)
            .enumerate()
            .map(|(index, item)| {
                let field = |at: usize| {
                    u32::from_le_bytes([item[at], item[at + 1], item[at + 2], item[at + 3]])
                };
                // `item` is METADATA_ITEM_LEN (12) bytes long, so these reads are in bounds.
                let (gpa, size, value) = (field(0), field(4), field(8));
                let section_type = SectionType::from_value(value)
                    .ok_or(OvmfError::UnknownSectionType { index, value })?;
                Ok(MetadataSection {
                    gpa,
                    size,
                    section_type,
                })
            })
            .collect()
    }
}

/// Footer-table entries: GUID and data, in the order walked.
type Entries<'a> = Vec<(Guid, &'a [u8])>;

/// Walks the GUIDed table backwards from its footer.
///
/// Returns whether a footer was found, and the entries in the order walked (from the footer
/// towards the start of the image).
fn parse_footer_table(data: &[u8]) -> Result<(bool, Entries<'_>), OvmfError> {
    let Some(footer_start) = data
        .len()
        .checked_sub(FOOTER_TRAILER_LEN + ENTRY_HEADER_LEN)
    else {
        return Ok((false, Vec::new()));
    };
    let Some((footer_size, footer_guid)) = read_entry_header(data, footer_start) else {
        return Ok((false, Vec::new()));
    };
    if footer_guid != OVMF_TABLE_FOOTER_GUID {
        return Ok((false, Vec::new()));
    }
    // The footer's size covers the table entries plus the footer header itself.
    let Some(table_len) = usize::from(footer_size).checked_sub(ENTRY_HEADER_LEN) else {
        return Ok((true, Vec::new()));
    };
    let table_start =
        footer_start
            .checked_sub(table_len)
            .ok_or(OvmfError::FooterTableOutOfBounds {
                table_len,
                image_len: data.len(),
            })?;

    let mut entries = Vec::new();
    // `end` is the image offset just past the entry being read.
    let mut end = footer_start;
    while end - table_start >= ENTRY_HEADER_LEN {
        let header_start = end - ENTRY_HEADER_LEN;
        let Some((size, guid)) = read_entry_header(data, header_start) else {
            break;
        };
        let size_usize = usize::from(size);
        let invalid = OvmfError::InvalidEntrySize {
            guid,
            offset: header_start,
            size,
        };
        if size_usize < ENTRY_HEADER_LEN || size_usize > end - table_start {
            return Err(invalid);
        }
        let entry_start = end - size_usize;
        let entry_data = data.get(entry_start..header_start).ok_or(invalid)?;
        entries.push((guid, entry_data));
        end = entry_start;
    }
    Ok((true, entries))
}

/// Reads the `{ le16 size, guid }` entry header at `offset`.
fn read_entry_header(data: &[u8], offset: usize) -> Option<(u16, Guid)> {
    let header = data.get(offset..)?.get(..ENTRY_HEADER_LEN)?;
    let size = u16::from_le_bytes([header[0], header[1]]);
    let mut guid = [0; 16];
    guid.copy_from_slice(&header[2..ENTRY_HEADER_LEN]);
    Some((size, Guid::from_bytes_le(guid)))
}

/// Reads a little-endian u32 at `offset`, if `data` is long enough.
fn read_le32(data: &[u8], offset: usize) -> Option<u32> {
    let bytes = data.get(offset..)?.get(..4)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMDSEV: &[u8] = include_bytes!("../../tests/fixtures/measure/ovmf_AmdSev_suffix.bin");
    const OVMFX64: &[u8] = include_bytes!("../../tests/fixtures/measure/ovmf_OvmfX64_suffix.bin");

    #[test]
    fn guid_displays_canonically() {
        assert_eq!(
            OVMF_TABLE_FOOTER_GUID.to_string(),
            "96b582de-1fb2-45f7-baea-a366c55a082d"
        );
        assert_eq!(
            SEV_ES_RESET_BLOCK_GUID.to_bytes_le()[..4],
            [0xde, 0x71, 0xf7, 0x00]
        );
    }

    #[test]
    fn parses_amdsev_fixture() {
        let ovmf = Ovmf::parse(AMDSEV).unwrap();
        assert!(ovmf.has_section(SectionType::SnpKernelHashes));
        assert!(ovmf.has_section(SectionType::Cpuid));
        assert_ne!(ovmf.sev_es_reset_eip().unwrap(), 0);
        assert_ne!(ovmf.sev_hashes_table_gpa().unwrap(), 0);
    }

    #[test]
    fn ovmfx64_fixture_has_no_kernel_hashes_section() {
        let ovmf = Ovmf::parse(OVMFX64).unwrap();
        assert!(!ovmf.sections().is_empty());
        assert!(!ovmf.has_section(SectionType::SnpKernelHashes));
    }

    #[test]
    fn image_without_footer_parses_but_has_no_reset_eip() {
        let data = vec![0u8; 4096];
        let ovmf = Ovmf::parse(&data).unwrap();
        assert!(ovmf.sections().is_empty());
        assert!(matches!(
            ovmf.sev_es_reset_eip(),
            Err(OvmfError::MissingFooterTable)
        ));
        assert!(Ovmf::parse(&[]).is_ok());
    }

    #[test]
    fn rejects_footer_table_larger_than_image() {
        let mut data = AMDSEV.to_vec();
        let footer = data.len() - 50;
        data[footer..footer + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
        let short = &data[data.len() - 1000..];
        assert!(matches!(
            Ovmf::parse(short),
            Err(OvmfError::FooterTableOutOfBounds { .. })
        ));
    }

    #[test]
    fn rejects_truncated_entry_size() {
        let mut data = AMDSEV.to_vec();
        // The last entry's header sits just before the footer header.
        let last_entry = data.len() - 50 - 18;
        data[last_entry..last_entry + 2].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::InvalidEntrySize { size: 3, .. })
        ));
        data[last_entry..last_entry + 2].copy_from_slice(&0xF000u16.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::InvalidEntrySize { .. })
        ));
    }

    fn metadata_start(data: &[u8]) -> usize {
        let ovmf = Ovmf::parse(data).unwrap();
        let entry = ovmf.entry(OVMF_SEV_METADATA_GUID).unwrap();
        data.len() - read_le32(entry, 0).unwrap() as usize
    }

    #[test]
    fn rejects_bad_metadata_signature_version_and_type() {
        let start = metadata_start(AMDSEV);

        let mut data = AMDSEV.to_vec();
        data[start] = b'X';
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::BadMetadataSignature { .. })
        ));

        let mut data = AMDSEV.to_vec();
        data[start + 8] = 2;
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::UnsupportedMetadataVersion(2))
        ));

        let mut data = AMDSEV.to_vec();
        data[start + 16 + 8] = 0x7;
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::UnknownSectionType {
                index: 0,
                value: 0x7
            })
        ));
    }

    #[test]
    fn rejects_metadata_items_past_declared_size() {
        let start = metadata_start(AMDSEV);
        let mut data = AMDSEV.to_vec();
        data[start + 12..start + 16].copy_from_slice(&0x1000_0000u32.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::MetadataItemsOutOfBounds { .. })
        ));
    }

    #[test]
    fn rejects_metadata_offset_outside_image() {
        let ovmf = Ovmf::parse(AMDSEV).unwrap();
        let entry = ovmf.entry(OVMF_SEV_METADATA_GUID).unwrap();
        let entry_offset = entry.as_ptr() as usize - AMDSEV.as_ptr() as usize;
        let mut data = AMDSEV.to_vec();
        data[entry_offset..entry_offset + 4].copy_from_slice(&0x10_0000u32.to_le_bytes());
        assert!(matches!(
            Ovmf::parse(&data),
            Err(OvmfError::MetadataOutOfBounds { .. })
        ));
    }
}
