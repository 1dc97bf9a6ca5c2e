//! The stand-in firmware of a simulated microvm launch.
//!
//! A `-M microvm` guest boots from qboot, which loads the kernel directly: there is no OVMF and
//! so no SEV metadata saying which pages an SNP launch would measure. To give simulated launches
//! a measurement that is computed exactly like a real one (and that `a3s-box measure` and
//! `sev-snp-measure` both reproduce), A3S Box wraps the microvm's real firmware image in a
//! deterministic **stand-in image in OVMF format** and measures that with the ordinary SNP
//! recipe ([`super::launch_digest`]). Any change of firmware, kernel, initrd, command line, vCPU
//! count or vCPU type therefore changes the digest.
//!
//! Layout of the stand-in image (`payload` is the firmware, e.g. `/usr/share/qemu/qboot.rom`,
//! zero-padded to whole pages; the image ends at 4 GiB like OVMF):
//!
//! ```text
//! offset                 contents
//! 0                      payload, padded to a multiple of 4 KiB
//! payload_len            one 4 KiB descriptor page:
//!   +0x000                 "A3S-BOX MICROVM STAND-IN FIRMWARE v1\0" (marker, measured)
//!   +0x100                 SEV metadata "ASEV", version 1, 4 sections:
//!                            SNP_SEC_MEM       GPA 0x0080_0000  size 0x9000  (ZERO pages)
//!                            SNP_SECRETS       GPA 0x0080_9000  size 0x1000
//!                            CPUID             GPA 0x0080_A000  size 0x1000
//!                            SNP_KERNEL_HASHES GPA 0x0080_B000  size 0x1000
//!   end - 32 - table_len   footer table, walked backwards from its footer:
//!                            SEV hash table     le32 GPA 0x0080_BC00 (hash table at page offset 0xC00)
//!                            SEV-ES reset block le32 AP reset EIP 0xFFFF_F000
//!                            OVMF SEV metadata  le32 offset of "ASEV" from the end of the image
//!                            footer (OVMF_TABLE_FOOTER_GUID), size = whole table
//!   end - 32               32 zero bytes (where OVMF keeps its reset vector)
//! ```
//!
//! The GPAs are the ones OVMF's AmdSev build uses for the same sections, so the stand-in looks
//! like the real thing to every tool; they carry no meaning inside the microvm.

use super::ovmf::{
    Guid, SectionType, OVMF_SEV_METADATA_GUID, OVMF_TABLE_FOOTER_GUID, SEV_ES_RESET_BLOCK_GUID,
    SEV_HASH_TABLE_RV_GUID,
};
use super::PAGE_SIZE;

/// Marker at the start of the descriptor page.
pub const STANDIN_MARKER: &[u8] = b"A3S-BOX MICROVM STAND-IN FIRMWARE v1\0";

/// `(type, gpa, size)` of the stand-in's SEV metadata sections, in image order.
pub const STANDIN_SECTIONS: [(SectionType, u32, u32); 4] = [
    (SectionType::SnpSecMem, 0x0080_0000, 0x9000),
    (SectionType::SnpSecrets, 0x0080_9000, 0x1000),
    (SectionType::Cpuid, 0x0080_A000, 0x1000),
    (SectionType::SnpKernelHashes, 0x0080_B000, 0x1000),
];

/// GPA of the kernel/initrd/cmdline hash table (inside the SNP_KERNEL_HASHES page).
pub const STANDIN_HASH_TABLE_GPA: u32 = 0x0080_BC00;

/// AP reset EIP given in the SEV-ES reset block.
pub const STANDIN_AP_RESET_EIP: u32 = 0xFFFF_F000;

/// Offset of the "ASEV" header inside the descriptor page.
const METADATA_OFFSET_IN_PAGE: usize = 0x100;

/// Bytes after the footer (OVMF's reset vector area).
const TRAILER_LEN: usize = 32;

/// Builds the stand-in firmware image around `payload` (the microvm's real firmware).
///
/// Deterministic: the same payload always gives the same bytes.
// Every length cast below is of a fixed structure inside one 4 KiB page, far below u16::MAX.
#[allow(clippy::cast_possible_truncation)]
pub fn standin_firmware(payload: &[u8]) -> Vec<u8> {
    let padded_len = payload.len().div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut image = Vec::with_capacity(padded_len + PAGE_SIZE);
    image.extend_from_slice(payload);
    image.resize(padded_len, 0);

    let mut page = vec![0u8; PAGE_SIZE];
    page[..STANDIN_MARKER.len()].copy_from_slice(STANDIN_MARKER);

    // SEV metadata: header then one { gpa, size, type } per section.
    let items = STANDIN_SECTIONS.len();
    let metadata_len = 16 + 12 * items;
    let mut metadata = Vec::with_capacity(metadata_len);
    metadata.extend_from_slice(b"ASEV");
    metadata.extend_from_slice(&(metadata_len as u32).to_le_bytes());
    metadata.extend_from_slice(&1u32.to_le_bytes());
    metadata.extend_from_slice(&(items as u32).to_le_bytes());
    for (section_type, gpa, size) in STANDIN_SECTIONS {
        metadata.extend_from_slice(&gpa.to_le_bytes());
        metadata.extend_from_slice(&size.to_le_bytes());
        metadata.extend_from_slice(&section_type.value().to_le_bytes());
    }
    page[METADATA_OFFSET_IN_PAGE..METADATA_OFFSET_IN_PAGE + metadata_len]
        .copy_from_slice(&metadata);
    let metadata_from_end = (PAGE_SIZE - METADATA_OFFSET_IN_PAGE) as u32;

    // Footer table: entries are `data | le16 size | guid`, read backwards from the footer.
    let mut table = Vec::new();
    let mut entry = |data: &[u8], guid: Guid| {
        table.extend_from_slice(data);
        table.extend_from_slice(&((data.len() + 18) as u16).to_le_bytes());
        table.extend_from_slice(&guid.to_bytes_le());
    };
    entry(
        &STANDIN_HASH_TABLE_GPA.to_le_bytes(),
        SEV_HASH_TABLE_RV_GUID,
    );
    entry(&STANDIN_AP_RESET_EIP.to_le_bytes(), SEV_ES_RESET_BLOCK_GUID);
    entry(&metadata_from_end.to_le_bytes(), OVMF_SEV_METADATA_GUID);
    let table_len = table.len() + 18; // the footer's size covers the whole table and itself
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.extend_from_slice(&OVMF_TABLE_FOOTER_GUID.to_bytes_le());
    let table_start = PAGE_SIZE - TRAILER_LEN - table.len();
    page[table_start..PAGE_SIZE - TRAILER_LEN].copy_from_slice(&table);

    image.extend_from_slice(&page);
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{launch_digest, CpuSignature, Ovmf, SnpMeasurementArgs};

    #[test]
    fn parses_as_an_ovmf_image_with_the_documented_sections() {
        let image = standin_firmware(&[0xAB; 65536]);
        assert_eq!(image.len(), 65536 + PAGE_SIZE);
        let ovmf = Ovmf::parse(&image).unwrap();
        let found: Vec<_> = ovmf
            .sections()
            .iter()
            .map(|s| (s.section_type, s.gpa, s.size))
            .collect();
        assert_eq!(found, STANDIN_SECTIONS.to_vec());
        assert_eq!(ovmf.sev_es_reset_eip().unwrap(), STANDIN_AP_RESET_EIP);
        assert_eq!(ovmf.sev_hashes_table_gpa().unwrap(), STANDIN_HASH_TABLE_GPA);
    }

    #[test]
    fn pads_the_payload_to_whole_pages() {
        let image = standin_firmware(&[1, 2, 3]);
        assert_eq!(image.len(), 2 * PAGE_SIZE);
        assert_eq!(&image[..3], &[1, 2, 3]);
        assert!(image[3..PAGE_SIZE].iter().all(|b| *b == 0));
    }

    #[test]
    fn every_input_changes_the_digest() {
        let sig = CpuSignature::from_type_name("EPYC-Milan").unwrap();
        let image = standin_firmware(&[0x5A; 8192]);
        let other_fw = standin_firmware(&[0x5B; 8192]);
        let digest = |image: &[u8], vcpus: u32, kernel: &[u8], initrd: &[u8], append: &str| {
            let mut args = SnpMeasurementArgs::new(image, vcpus);
            args.vcpu_sig = Some(sig);
            args.kernel = Some(kernel);
            args.initrd = Some(initrd);
            args.append = Some(append);
            launch_digest(&args).unwrap()
        };
        let base = digest(&image, 1, b"kernel", b"initrd", "console=hvc0");
        assert_eq!(
            base,
            digest(&image, 1, b"kernel", b"initrd", "console=hvc0")
        );
        for changed in [
            digest(&other_fw, 1, b"kernel", b"initrd", "console=hvc0"),
            digest(&image, 2, b"kernel", b"initrd", "console=hvc0"),
            digest(&image, 1, b"kernel2", b"initrd", "console=hvc0"),
            digest(&image, 1, b"kernel", b"initrd2", "console=hvc0"),
            digest(&image, 1, b"kernel", b"initrd", "console=hvc0 x"),
        ] {
            assert_ne!(base, changed);
        }
    }
}
