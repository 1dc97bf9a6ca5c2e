//! The SNP launch digest context (GCTX.LD) and the PAGE_INFO update it applies per page.
//!
//! Every page the firmware adds to a guest with `SNP_LAUNCH_UPDATE` extends the launch digest:
//!
//! ```text
//! LD' = SHA-384(PAGE_INFO)
//!
//! PAGE_INFO (SEV-SNP firmware ABI, spec 56860, "PAGE_INFO structure"), 0x70 bytes:
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 0x00   | 48   | DIGEST_CUR: the current launch digest LD        |
//! | 0x30   | 48   | CONTENTS: SHA-384 of the page, or zero          |
//! | 0x60   | 2    | LENGTH = 0x70 (little-endian)                   |
//! | 0x62   | 1    | PAGE_TYPE                                       |
//! | 0x63   | 1    | IMI_PAGE = 0                                    |
//! | 0x64   | 1    | VMPL3_PERMS = 0                                 |
//! | 0x65   | 1    | VMPL2_PERMS = 0                                 |
//! | 0x66   | 1    | VMPL1_PERMS = 0                                 |
//! | 0x67   | 1    | reserved = 0                                    |
//! | 0x68   | 8    | GPA of the page (little-endian)                 |
//! ```
//!
//! The context starts as 48 zero bytes, or as a precomputed value (for example an OVMF hash,
//! which is the context after the firmware image's pages alone).

use ring::digest;

use super::MeasureError;

/// Size of a launch digest (SHA-384), in bytes.
pub const LD_SIZE: usize = 48;

/// Size of a guest page, in bytes.
pub const PAGE_SIZE: usize = 0x1000;

/// GPA the firmware records for VMSA pages: `(u64)-1`, page-aligned, bits above 51 cleared.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Length of a PAGE_INFO structure, in bytes.
const PAGE_INFO_LEN: usize = 0x70;

/// `PAGE_TYPE` of a PAGE_INFO (SEV-SNP firmware ABI, `SNP_LAUNCH_UPDATE` page types).
///
/// | Value | Name        | CONTENTS                    |
/// |-------|-------------|-----------------------------|
/// | 0x1   | NORMAL      | SHA-384 of the 4 KiB page   |
/// | 0x2   | VMSA        | SHA-384 of the VMSA page    |
/// | 0x3   | ZERO        | zero                        |
/// | 0x4   | UNMEASURED  | zero                        |
/// | 0x5   | SECRETS     | zero                        |
/// | 0x6   | CPUID       | zero                        |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PageType {
    /// A page of data whose contents are measured.
    Normal,
    /// A vCPU save area page, measured at [`VMSA_GPA`].
    Vmsa,
    /// A page the firmware zeroes.
    Zero,
    /// A page whose contents are not measured.
    Unmeasured,
    /// The secrets page filled by the firmware.
    Secrets,
    /// The CPUID page checked by the firmware.
    Cpuid,
}

impl PageType {
    /// The `PAGE_TYPE` byte of this type.
    pub fn value(self) -> u8 {
        match self {
            Self::Normal => 0x1,
            Self::Vmsa => 0x2,
            Self::Zero => 0x3,
            Self::Unmeasured => 0x4,
            Self::Secrets => 0x5,
            Self::Cpuid => 0x6,
        }
    }
}

/// SHA-384 of `data`.
pub(crate) fn sha384(data: &[u8]) -> [u8; LD_SIZE] {
    let d = digest::digest(&digest::SHA384, data);
    let mut out = [0; LD_SIZE];
    // SHA-384 digests are always LD_SIZE bytes long.
    out.copy_from_slice(d.as_ref());
    out
}

/// A running SEV-SNP launch digest (the firmware's GCTX.LD).
///
/// Invariant: `ld` is the digest after every update applied so far, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gctx {
    ld: [u8; LD_SIZE],
}

impl Default for Gctx {
    fn default() -> Self {
        Self::new()
    }
}

impl Gctx {
    /// A fresh context: the launch digest is 48 zero bytes.
    pub fn new() -> Self {
        Self { ld: [0; LD_SIZE] }
    }

    /// A context that continues from `seed`, such as a precomputed OVMF hash.
    pub fn with_seed(seed: [u8; LD_SIZE]) -> Self {
        Self { ld: seed }
    }

    /// The current launch digest.
    pub fn ld(&self) -> [u8; LD_SIZE] {
        self.ld
    }

    /// Extends the digest with one PAGE_INFO of `page_type` at `gpa` with `contents`.
    pub fn update(&mut self, page_type: PageType, gpa: u64, contents: &[u8; LD_SIZE]) {
        let mut page_info = [0u8; PAGE_INFO_LEN];
        page_info[0x00..0x30].copy_from_slice(&self.ld);
        page_info[0x30..0x60].copy_from_slice(contents);
        page_info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        page_info[0x62] = page_type.value();
        // 0x63..0x68: IMI_PAGE, VMPL3/2/1_PERMS and the reserved byte stay zero.
        page_info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.ld = sha384(&page_info);
    }

    /// Measures `data` as consecutive NORMAL pages starting at `gpa`.
    ///
    /// # Errors
    ///
    /// [`MeasureError::NotPageAligned`] if `data` is not a whole number of pages, and
    /// [`MeasureError::GpaOverflow`] if the pages would extend past the 64-bit address space.
    pub fn update_normal_pages(&mut self, gpa: u64, data: &[u8]) -> Result<(), MeasureError> {
        check_pages(gpa, data.len())?;
        let mut page_gpa = gpa;
        for digest in page_digests(data) {
            self.update(PageType::Normal, page_gpa, &digest);
            page_gpa = page_gpa.wrapping_add(PAGE_SIZE as u64);
        }
        Ok(())
    }

    /// Measures the VMSA page `vmsa` (one per vCPU) at [`VMSA_GPA`].
    pub fn update_vmsa_page(&mut self, vmsa: &[u8; PAGE_SIZE]) {
        self.update_vmsa_digest(&sha384(vmsa));
    }

    /// Measures a VMSA page given its SHA-384, so identical AP pages are hashed once.
    pub(crate) fn update_vmsa_digest(&mut self, vmsa_digest: &[u8; LD_SIZE]) {
        self.update(PageType::Vmsa, VMSA_GPA, vmsa_digest);
    }

    /// Measures `len` bytes starting at `gpa` as pages of `page_type` with zero CONTENTS
    /// (ZERO, UNMEASURED, SECRETS or CPUID pages).
    ///
    /// # Errors
    ///
    /// [`MeasureError::NotPageAligned`] if `len` is not a whole number of pages,
    /// [`MeasureError::GpaOverflow`] if the range leaves the 64-bit address space, and
    /// [`MeasureError::ContentsRequired`] for page types whose CONTENTS is a page hash.
    pub fn update_zero_contents_pages(
        &mut self,
        page_type: PageType,
        gpa: u64,
        len: usize,
    ) -> Result<(), MeasureError> {
        if matches!(page_type, PageType::Normal | PageType::Vmsa) {
            return Err(MeasureError::ContentsRequired { page_type });
        }
        check_pages(gpa, len)?;
        let mut page_gpa = gpa;
        for _ in 0..len / PAGE_SIZE {
            self.update(page_type, page_gpa, &[0; LD_SIZE]);
            page_gpa = page_gpa.wrapping_add(PAGE_SIZE as u64);
        }
        Ok(())
    }
}

/// Below this many pages, hashing on one thread is faster than starting others.
const PARALLEL_MIN_PAGES: usize = 128;

/// SHA-384 of every page of `data` (a whole number of pages), in order.
///
/// Page hashes are independent (only the PAGE_INFO chain is sequential), so large images are
/// hashed on scoped threads, one contiguous run of pages each. If a thread cannot be started,
/// its pages are hashed on the calling thread instead.
fn page_digests(data: &[u8]) -> Vec<[u8; LD_SIZE]> {
    let pages = data.len() / PAGE_SIZE;
    let mut out = vec![[0u8; LD_SIZE]; pages];
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(pages / PARALLEL_MIN_PAGES)
        .max(1);
    if threads == 1 {
        hash_pages(data, &mut out);
        return out;
    }
    let per_thread = pages.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut inline = Vec::new();
        let runs = data
            .chunks(per_thread * PAGE_SIZE)
            .zip(out.chunks_mut(per_thread))
            .enumerate();
        for (run, (input, output)) in runs {
            let spawned = std::thread::Builder::new()
                .name("snp-measure".to_owned())
                .spawn_scoped(scope, move || hash_pages(input, output));
            if spawned.is_err() {
                // The closure and its borrow of `output` were dropped; redo this run below.
                inline.push(run);
            }
        }
        inline
    })
    .into_iter()
    .for_each(|run| {
        let first = run * per_thread;
        let last = (first + per_thread).min(pages);
        hash_pages(
            &data[first * PAGE_SIZE..last * PAGE_SIZE],
            &mut out[first..last],
        );
    });
    out
}

/// Hashes consecutive pages of `input` into `output` (one digest per page).
fn hash_pages(input: &[u8], output: &mut [[u8; LD_SIZE]]) {
    for (page, digest) in input.chunks_exact(PAGE_SIZE).zip(output) {
        *digest = sha384(page);
    }
}

/// Checks that `len` bytes at `gpa` are whole pages inside the 64-bit address space.
fn check_pages(gpa: u64, len: usize) -> Result<(), MeasureError> {
    if len % PAGE_SIZE != 0 {
        return Err(MeasureError::NotPageAligned { gpa, len });
    }
    let len_u64 = u64::try_from(len).map_err(|_| MeasureError::GpaOverflow { gpa, len })?;
    gpa.checked_add(len_u64)
        .ok_or(MeasureError::GpaOverflow { gpa, len })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_context_is_zero() {
        assert_eq!(Gctx::new().ld(), [0; LD_SIZE]);
        assert_eq!(Gctx::default(), Gctx::new());
    }

    #[test]
    fn page_info_layout_is_hashed() {
        // Independent construction of the PAGE_INFO bytes for one ZERO page at 0x1000.
        let mut expected_input = Vec::new();
        expected_input.extend_from_slice(&[0u8; 48]);
        expected_input.extend_from_slice(&[0u8; 48]);
        expected_input.extend_from_slice(&[0x70, 0x00, 0x03, 0, 0, 0, 0, 0]);
        expected_input.extend_from_slice(&[0x00, 0x10, 0, 0, 0, 0, 0, 0]);
        let mut gctx = Gctx::new();
        gctx.update_zero_contents_pages(PageType::Zero, 0x1000, PAGE_SIZE)
            .unwrap();
        assert_eq!(gctx.ld(), sha384(&expected_input));
    }

    #[test]
    fn parallel_page_hashing_matches_sequential() {
        for pages in [
            0,
            1,
            PARALLEL_MIN_PAGES - 1,
            2 * PARALLEL_MIN_PAGES + 3,
            1031,
        ] {
            let data: Vec<u8> = (0..pages * PAGE_SIZE)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect();
            let sequential: Vec<_> = data.chunks_exact(PAGE_SIZE).map(sha384).collect();
            assert_eq!(page_digests(&data), sequential, "{pages} pages");
        }
    }

    #[test]
    fn rejects_partial_pages() {
        let mut gctx = Gctx::new();
        assert!(matches!(
            gctx.update_normal_pages(0, &[0; 100]),
            Err(MeasureError::NotPageAligned { len: 100, .. })
        ));
        assert!(matches!(
            gctx.update_zero_contents_pages(PageType::Zero, 0, 4095),
            Err(MeasureError::NotPageAligned { .. })
        ));
        assert_eq!(gctx.ld(), [0; LD_SIZE]);
    }

    #[test]
    fn rejects_ranges_past_the_address_space() {
        let mut gctx = Gctx::new();
        assert!(matches!(
            gctx.update_zero_contents_pages(PageType::Zero, u64::MAX - 0xFFF, 2 * PAGE_SIZE),
            Err(MeasureError::GpaOverflow { .. })
        ));
    }

    #[test]
    fn refuses_zero_contents_for_measured_types() {
        let mut gctx = Gctx::new();
        assert!(matches!(
            gctx.update_zero_contents_pages(PageType::Normal, 0, PAGE_SIZE),
            Err(MeasureError::ContentsRequired { .. })
        ));
    }
}
