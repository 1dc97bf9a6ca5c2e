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
    let k = kernel_footprint(kernel)?;
    let i = std::fs::metadata(initrd)
        .map_err(|source| MemoryError::Io {
            path: initrd.to_owned(),
            source,
        })?
        .len();
    Ok(need_mib(k, i))
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
}
