//! How much guest memory a boot needs, from the real sizes of the kernel and the initrd.
//!
//! The kernel reserves its loaded image (the sum of its ELF `PT_LOAD` segments' `p_memsz`, or a
//! bzImage's `init_size`) and the initrd blob; the initramfs is then unpacked into a tmpfs that
//! may grow to half of the memory left, while the blob is still held. So unpacking an initrd of
//! `I` bytes needs `(RAM - K - I) / 2 >= I`, that is `RAM >= K + 3 I`; below it the kernel says
//! `Initramfs unpacking failed: write error` and init dies.
//!
//! Measured (QEMU 10.0.2 TCG, microvm, 1 vCPU, 6.12.95 cloud kernel: `PT_LOAD` memsz total
//! 51 004 480 B = 48.6 MiB), booting to guest-init's `Ready`:
//!
//! | initrd                          | `K + 3 I` | fails at | boots at |
//! |---------------------------------|-----------|----------|----------|
//! | busybox, 22 083 916 B (21.1 MiB) | 111.8 MiB | 110 MiB  | 112 MiB  |
//! | busybox + 40 MB file, 62 084 032 B (59.2 MiB) | 226.2 MiB | 226 MiB | 232 MiB |
//!
//! (`a3s-box run --rm --memory N busybox true` behaves the same: at 112 MiB `true` runs.) The
//! formula sits on the measured edge within 2 MiB for both, so [`MARGIN_MIB`] adds what the
//! edge does not cover: the boot's own allocations beyond that edge and a little room for the
//! workload to start.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::qemu::ConfigError;

/// Added to `K + 3 I` (see the module docs for the measurements behind it).
pub const MARGIN_MIB: u64 = 16;

const MIB: u64 = 1 << 20;

/// The memory need could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryError {
    /// The kernel file is neither an ELF64 `vmlinux` nor a bzImage.
    #[error("{path}: not an ELF64 vmlinux or a bzImage, cannot tell its memory footprint")]
    UnknownKernel {
        /// The file.
        path: PathBuf,
    },
    /// Reading a file.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The least guest memory, in MiB, that boots `kernel` with `initrd` and starts a workload.
///
/// # Errors
/// [`MemoryError`] when a file cannot be read or the kernel format is unknown.
pub fn boot_need_mib(kernel: &Path, initrd: &Path) -> Result<u64, MemoryError> {
    let (k, i) = boot_sizes(kernel, initrd)?;
    Ok(need_mib(k, i))
}

/// The loaded kernel's and the initrd's sizes in bytes.
fn boot_sizes(kernel: &Path, initrd: &Path) -> Result<(u64, u64), MemoryError> {
    let k = kernel_footprint(kernel)?;
    let i = std::fs::metadata(initrd)
        .map_err(|source| MemoryError::Io {
            path: initrd.to_owned(),
            source,
        })?
        .len();
    Ok((k, i))
}

/// Refuses `mem_mib` below what `kernel` and `initrd` need.
///
/// # Errors
/// [`ConfigError::MemoryTooSmall`] with the number needed, or [`ConfigError::MemoryNeed`].
pub fn check(mem_mib: u32, kernel: &Path, initrd: &Path) -> Result<(), ConfigError> {
    let need_mib = boot_need_mib(kernel, initrd)?;
    if u64::from(mem_mib) < need_mib {
        return Err(ConfigError::MemoryTooSmall { mem_mib, need_mib });
    }
    Ok(())
}

/// `ceil((kernel + 3 initrd) / MiB) + MARGIN_MIB`.
pub fn need_mib(kernel_bytes: u64, initrd_bytes: u64) -> u64 {
    let bytes = kernel_bytes.saturating_add(initrd_bytes.saturating_mul(3));
    bytes.div_ceil(MIB) + MARGIN_MIB
}

/// The least workload memory limit (Docker's: "Minimum memory limit allowed is 6MB").
pub const MIN_LIMIT_MIB: u64 = 6;

/// The largest workload memory limit, in MiB: 1 TiB, the largest VM
/// ([`crate::qemu::VmConfig::resources`] refuses a VM sized above it when the box starts).
pub const MAX_LIMIT_MIB: u64 = 1 << 20;

/// Refuses a workload memory limit (`--memory`, in bytes) Docker would refuse or no VM could
/// hold.
///
/// # Errors
/// [`ConfigError::MemoryLimit`].
pub fn check_limit(limit_bytes: u64) -> Result<(), ConfigError> {
    if !(MIN_LIMIT_MIB * MIB..=MAX_LIMIT_MIB * MIB).contains(&limit_bytes) {
        return Err(ConfigError::MemoryLimit(limit_bytes));
    }
    Ok(())
}

/// What the guest itself holds besides its kernel image and initrd, at any size: slab, the
/// modules, guest-init, page tables, the boot's page cache, and room for exec sessions (see
/// [`vm_mib_for_limit`]).
pub const GUEST_OWN_MIB: u64 = 64;

/// The part of the VM's memory the guest kernel keeps for itself per MiB it manages, in
/// percent: the page structures (64 B per 4 KiB page, 1.6 %), hash tables sized by memory and
/// the watermarks.
const PER_RAM_PERCENT: u64 = 3;

/// The VM size, in MiB, that leaves a workload limited to `limit_bytes` (Docker's `--memory`)
/// that much memory beside the guest's own, on `kernel` with `initrd`; never below the
/// boot need.
///
/// The guest holds its loaded kernel `K`, the initrd `I` (unpacked, it stays: guest-init and the
/// modules), [`GUEST_OWN_MIB`] and [`PER_RAM_PERCENT`] of the whole; what is left is
/// the limit: `RAM = (limit + K + I + own) / (1 - 3 %)`. Measured (TCG, microvm, 6.12 cloud
/// kernel, busybox, `transparent_hugepage=never`): RAM less `MemAvailable` after boot is 108,
/// 133 and 159 MiB at 256, 1024 and 2048 MiB, against `K + I + 42 MiB + 3 %` = 108, 131, 161.
/// Untouched guest memory costs the host nothing (free page reporting returns it), so the
/// margin is cheap. A SEV-SNP guest also keeps bounce buffers for its devices: 6 % of its
/// memory, at least 64 MiB (`sev_setup_arch`, arch/x86/mm/mem_encrypt_amd.c).
///
/// # Errors
/// [`MemoryError`] when a file cannot be read or the kernel format is unknown.
pub fn vm_mib_for_limit(
    limit_bytes: u64,
    kernel: &Path,
    initrd: &Path,
    snp: bool,
) -> Result<u64, MemoryError> {
    let (k, i) = boot_sizes(kernel, initrd)?;
    let limit_mib = limit_bytes.div_ceil(MIB);
    Ok(sized_for_limit(limit_mib, k, i, snp).max(need_mib(k, i)))
}

/// [`vm_mib_for_limit`] from the kernel's and initrd's sizes in bytes.
pub fn sized_for_limit(limit_mib: u64, kernel_bytes: u64, initrd_bytes: u64, snp: bool) -> u64 {
    let fixed = limit_mib
        .saturating_add(kernel_bytes.saturating_add(initrd_bytes).div_ceil(MIB))
        .saturating_add(GUEST_OWN_MIB);
    let ram = |fixed: u64, percent: u64| fixed.saturating_mul(100).div_ceil(100 - percent);
    if !snp {
        return ram(fixed, PER_RAM_PERCENT);
    }
    // Bounce buffers: 6 % of the whole, or 64 MiB when that is more.
    let proportional = ram(fixed, PER_RAM_PERCENT + 6);
    if proportional * 6 / 100 >= 64 {
        proportional
    } else {
        ram(fixed.saturating_add(64), PER_RAM_PERCENT)
    }
}

/// Bytes the kernel occupies once loaded: the `PT_LOAD` segments' `p_memsz` of an ELF64
/// `vmlinux`, or a bzImage's `init_size` (boot protocol 2.10+, offset 0x260).
///
/// # Errors
/// [`MemoryError`].
pub fn kernel_footprint(path: &Path) -> Result<u64, MemoryError> {
    let io = |source| MemoryError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut head = [0u8; 0x270];
    let n = read_up_to(&mut f, &mut head).map_err(io)?;
    let head = &head[..n];
    if head.starts_with(b"\x7fELF") {
        return elf_load_memsz(&mut f, head).map_err(io)?.ok_or_else(|| {
            MemoryError::UnknownKernel {
                path: path.to_owned(),
            }
        });
    }
    if head.get(0x202..0x206) == Some(b"HdrS") {
        if let Some(b) = head.get(0x260..0x264) {
            let init_size = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            return Ok(u64::from(init_size));
        }
    }
    Err(MemoryError::UnknownKernel {
        path: path.to_owned(),
    })
}

/// Sum of `p_memsz` over `PT_LOAD` program headers of a little-endian ELF64 file; `None` when
/// the header is not that.
fn elf_load_memsz(f: &mut File, head: &[u8]) -> std::io::Result<Option<u64>> {
    const ELFCLASS64: u8 = 2;
    const ELFDATA2LSB: u8 = 1;
    const PT_LOAD: u32 = 1;
    const PHDR_SIZE: usize = 0x38;
    if head.len() < 0x40 || head[4] != ELFCLASS64 || head[5] != ELFDATA2LSB {
        return Ok(None);
    }
    let u16_at = |o: usize| u16::from_le_bytes([head[o], head[o + 1]]);
    let phoff = u64::from_le_bytes(head[0x20..0x28].try_into().unwrap_or([0; 8]));
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    if phentsize < PHDR_SIZE || phnum == 0 {
        return Ok(None);
    }
    let mut table = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut table)?;
    let mut total = 0u64;
    for ph in table.chunks_exact(phentsize) {
        let p_type = u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]);
        if p_type == PT_LOAD {
            let memsz = u64::from_le_bytes(ph[0x28..0x30].try_into().unwrap_or([0; 8]));
            total = total.saturating_add(memsz);
        }
    }
    Ok((total > 0).then_some(total))
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with `segs` (type, memsz) program headers.
    fn elf(segs: &[(u32, u64)]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&u16::try_from(segs.len()).unwrap().to_le_bytes());
        for (t, memsz) in segs {
            let mut ph = vec![0u8; 0x38];
            ph[..4].copy_from_slice(&t.to_le_bytes());
            ph[0x28..0x30].copy_from_slice(&memsz.to_le_bytes());
            b.extend(ph);
        }
        b
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    #[test]
    fn an_elf_kernel_counts_only_load_segments() {
        // The 6.12 cloud vmlinux's four PT_LOAD memsz values and its PT_NOTE.
        let f = write(&elf(&[
            (1, 0x1aa_4440),
            (1, 0x6d_9000),
            (1, 0x3_9000),
            (1, 0xee_e000),
            (4, 0x1f4),
        ]));
        assert_eq!(kernel_footprint(f.path()).unwrap(), 51_004_480);
    }

    #[test]
    fn a_bzimage_uses_init_size() {
        let mut b = vec![0u8; 0x300];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x260..0x264].copy_from_slice(&0x0300_0000u32.to_le_bytes());
        assert_eq!(kernel_footprint(write(&b).path()).unwrap(), 0x0300_0000);
    }

    #[test]
    fn other_files_are_refused() {
        let f = write(b"not a kernel");
        assert!(matches!(
            kernel_footprint(f.path()),
            Err(MemoryError::UnknownKernel { .. })
        ));
        assert!(matches!(
            kernel_footprint(Path::new("/nonexistent/vmlinux")),
            Err(MemoryError::Io { .. })
        ));
        let no_load = write(&elf(&[(4, 10)]));
        assert!(kernel_footprint(no_load.path()).is_err());
    }

    #[test]
    fn the_need_matches_the_measured_boots() {
        let k = 51_004_480;
        // busybox: failed at 110, booted at 112.
        let busybox = need_mib(k, 22_083_916) - MARGIN_MIB;
        assert!((110..=113).contains(&busybox), "{busybox}");
        // busybox + 40 MB: failed at 226, booted at 232.
        let big = need_mib(k, 62_084_032) - MARGIN_MIB;
        assert!((226..=232).contains(&big), "{big}");
    }

    #[test]
    fn memory_below_the_need_is_refused_with_the_number() {
        let kernel = write(&elf(&[(1, 48 * MIB)]));
        let initrd = write(&vec![0u8; 1024]);
        let err = check(64, kernel.path(), initrd.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--memory 64 MiB is too small for this kernel and init: at least 65 MiB is needed"
        );
        check(65, kernel.path(), initrd.path()).unwrap();
    }

    #[test]
    fn the_need_is_computed_from_real_files() {
        let kernel = write(&elf(&[(1, 48 * MIB)]));
        let initrd = write(&vec![0u8; 1024]);
        assert_eq!(
            boot_need_mib(kernel.path(), initrd.path()).unwrap(),
            49 + MARGIN_MIB
        );
    }

    #[test]
    fn a_limit_gets_the_guest_s_own_share_on_top() {
        let k = 51_004_480; // the 6.12 cloud vmlinux
        let i = 10 * MIB;
        // 200 + 49 + 10 + 64 = 323, over 97 %.
        assert_eq!(sized_for_limit(200, k, i, false), 333);
        // What is left after the measured overhead (K + I + 42 + 3 %) covers the limit.
        for limit in [6, 64, 200, 1024, 4096] {
            let ram = sized_for_limit(limit, k, i, false);
            let left = ram - (k + i).div_ceil(MIB) - 42 - ram * 3 / 100;
            assert!(left >= limit, "{limit}: {ram} leaves {left}");
        }
        // SEV-SNP: 64 MiB of bounce buffers when small, 6 % when large.
        assert_eq!(sized_for_limit(200, k, i, true), 399);
        let big = sized_for_limit(4096, k, i, true);
        assert!(big - big * 9 / 100 >= 4096 + 59 + 64, "{big}");
    }

    #[test]
    fn limits_are_docker_s_range() {
        assert!(check_limit(6 * MIB).is_ok());
        assert!(check_limit(1 << 40).is_ok());
        for bad in [0, 1, 6 * MIB - 1, (1 << 40) + 1] {
            let e = check_limit(bad).unwrap_err().to_string();
            assert!(e.contains("out of range") && e.contains("6 MiB"), "{e}");
        }
    }

    #[test]
    fn a_small_limit_still_gets_a_vm_that_boots() {
        let kernel = write(&elf(&[(1, 48 * MIB)]));
        let initrd = write(&vec![0u8; 30 << 20]);
        // need: 48 + 90 + 16 = 154; sized: (6 + 78 + 64) / 0.97 = 153.
        assert_eq!(
            vm_mib_for_limit(6 * MIB, kernel.path(), initrd.path(), false).unwrap(),
            154
        );
        assert_eq!(
            vm_mib_for_limit(100 * MIB - 5, kernel.path(), initrd.path(), false).unwrap(),
            250
        );
    }
}
