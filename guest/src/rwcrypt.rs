//! The encrypted, integrity-protected writable layer of a confidential box.
//!
//! ```text
//! a3s-rw disk ─ dm-integrity (journal, 28-byte tags) ─ dm-crypt capi:gcm(aes)-random ─ ext4
//! ```
//!
//! AES-256-GCM with a random 96-bit IV per sector, tag and IV stored by dm-integrity (what
//! `cryptsetup luksFormat --cipher aes-gcm-random --integrity aead` sets up, without a LUKS
//! header: the key is never stored, it is derived again at every boot from the secure
//! processor, bound to the launch measurement). The host sees ciphertext; a block it changes
//! fails the tag check (EIO in the guest); a VM with another measurement derives another key and
//! cannot open the layer. Not covered: the host can replay an older copy of the whole disk or of
//! single sectors with their tags (no freshness), as with any dm-integrity AEAD volume.
//!
//! On first boot the disk is all zeros: dm-integrity writes its superblock and an 8 MiB journal,
//! and ext4 is made on the decrypted device with the `mke2fs` the host put into the (measured)
//! initrd, through dm-integrity's direct mode (each block written once; the box itself always
//! writes through the journal). The ext4 journal is initialised in full
//! (`lazy_journal_init=0`) because journal recovery after an unclean stop reads past the last
//! transaction, and a never-written sector fails the AEAD check. A layer whose making was cut
//! short (no ext4 superblock behind a first block that decrypts) is made again.
//!
//! A layer just made is reported to the host (`LayerMade`) before anything else writes to it;
//! the host keeps a copy, and the next box of the same measurement (same key) starts from it
//! (`TeeSetup::layer_prefilled`) and skips all of the above. Such a copy that does not open is
//! made again here, not refused.
//!
//! What making the layer faster did not change: the cipher, the tags and where they are kept,
//! the key, and journalled writes for everything the box writes. Direct mode only drops the
//! atomicity of a sector and its tag while mke2fs runs, and a layer that was being made when
//! the VM stopped is never used: it is made again.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use crate::dm;
use crate::rootfs::Disk;

/// dm-integrity's superblock magic.
const INTEGRITY_MAGIC: &[u8; 8] = b"integrt\0";
/// GCM tag (16) + random IV (12) per sector.
const TAG_SIZE: u32 = 28;
/// Where the host put `mke2fs` and its libraries in a TEE box's initrd.
pub(crate) const TOOLS_DIR: &str = "/.a3s/tools";
const INTEGRITY_NAME: &str = "a3s-rw-integrity";
const CRYPT_NAME: &str = "a3s-rw";
/// dm-integrity's journal: 8 MiB. The kernel's default (1/128 of the disk, at most 64 MiB) is
/// written in full when the layer is made and held in guest memory while it is open: 64 MiB
/// of a 10 GiB layer took a second to format under TCG and a quarter of a 256 MiB guest's RAM.
/// The journal only batches writes; its size is no part of the integrity guarantee.
const JOURNAL_SECTORS: u64 = 16384;

/// How long each part of opening the layer took, in order (`inspect` shows them as TEE steps).
pub(crate) type Steps = Vec<(&'static str, Duration)>;

/// What opens a layer: its key, and what the host did with the disk.
pub(crate) struct Unlock<'a> {
    /// The layer key (derived from the TEE).
    pub(crate) key: &'a [u8; 32],
    /// The host filled this box's never-used disk with a copy of a layer made, and never
    /// used, by an earlier box with the same launch measurement (so the same key): a layer
    /// that then does not open (the key changed, e.g. with the firmware's TCB) or holds no
    /// ext4 is made again instead of refused. The host could zero the disk anyway; the hint
    /// gives it nothing more.
    pub(crate) prefilled: bool,
    /// Called once a layer was made and closed, before anything else writes to it: the host
    /// keeps a copy for the next box with this measurement, and answers when it is done.
    pub(crate) on_made: &'a dyn Fn() -> anyhow::Result<()>,
}

/// Opens (formatting on first use) the encrypted layer on `disk`; returns the decrypted device
/// and the time its parts took.
///
/// # Errors
/// The disk holds something else, the kernel refuses a table, or formatting fails.
pub(crate) fn open(disk: &Disk, unlock: &Unlock<'_>) -> anyhow::Result<(PathBuf, Steps)> {
    let mut steps = Steps::new();
    let mut lap = Instant::now();
    let key = unlock.key;
    let raw = disk.dev_path();
    let kept_unusable = |why: &dyn std::fmt::Display| -> anyhow::Result<u64> {
        eprintln!(
            "a3s-guest-init: the layer the host kept for this measurement does not open \
             ({why}); making a new one"
        );
        let _ = close();
        forget_integrity(&raw)?;
        format_integrity(disk, &raw)
    };
    let provided = match superblock(&raw)? {
        Superblock::Integrity { provided_sectors } => {
            match open_made(disk, key, provided_sectors) {
                Ok(Some(crypt)) => {
                    steps.push(("rw_open", lap.elapsed()));
                    return Ok((crypt, steps));
                }
                // The VM stopped while the layer was being made (mke2fs writes the superblock
                // last): nothing of the box's can be on it yet; make it again.
                Ok(None) => {
                    steps.push(("rw_open", lap.elapsed()));
                    lap = Instant::now();
                    provided_sectors
                }
                Err(e) if unlock.prefilled => kept_unusable(&format!("{e:#}"))?,
                Err(e) => return Err(e),
            }
        }
        Superblock::Empty => format_integrity(disk, &raw)?,
        Superblock::Other if unlock.prefilled => kept_unusable(&"no dm-integrity superblock")?,
        Superblock::Other => bail!(
            "the writable layer disk of this confidential box holds neither an encrypted layer nor \
             zeros: refusing to use it"
        ),
    };
    steps.push(("rw_integrity_format", lap.elapsed()));
    lap = Instant::now();
    // ext4 is made through direct writes: through the journal every block would be written
    // twice, and a format cut short is seen above and made again.
    let crypt = map(disk, key, provided, Mode::Direct)?;
    zero_probed_blocks(&crypt, provided)?;
    steps.push(("rw_zero_probed", lap.elapsed()));
    lap = Instant::now();
    mkfs(&crypt)?;
    close()?;
    steps.push(("rw_mkfs", lap.elapsed()));
    lap = Instant::now();
    (unlock.on_made)()?;
    steps.push(("rw_kept", lap.elapsed()));
    lap = Instant::now();
    let crypt = map(disk, key, provided, Mode::Journal)?;
    if !has_ext4(&crypt)? {
        bail!("mke2fs left no ext4 superblock on the encrypted writable layer");
    }
    steps.push(("rw_open", lap.elapsed()));
    Ok((crypt, steps))
}

/// The decrypted device of a layer with a dm-integrity superblock, or `None` (mappings
/// closed) when it holds no ext4 yet.
fn open_made(disk: &Disk, key: &[u8; 32], provided: u64) -> anyhow::Result<Option<PathBuf>> {
    let crypt = map(disk, key, provided, Mode::Journal)?;
    if has_ext4(&crypt)? {
        return Ok(Some(crypt));
    }
    close()?;
    Ok(None)
}

/// Writes dm-integrity's superblock and journal on a zeroed disk; returns the sectors it
/// provides.
fn format_integrity(disk: &Disk, raw: &Path) -> anyhow::Result<u64> {
    // A short mapping makes the kernel write the superblock and the journal for the whole
    // device; then its size is known and the real mapping can be made.
    integrity(disk, 8, Mode::Format)?;
    dm::remove(INTEGRITY_NAME).context("removing the formatting mapping")?;
    let Superblock::Integrity { provided_sectors } = superblock(raw)? else {
        bail!("dm-integrity did not format the writable layer disk");
    };
    Ok(provided_sectors)
}

/// Zeroes dm-integrity's superblock, so the next activation formats the disk afresh. What
/// else the old layer left is never read: under a new format every sector is written before
/// it is read (see [`zero_probed_blocks`]), as on a zeroed disk.
fn forget_integrity(raw: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(raw)
        .with_context(|| format!("opening {}", raw.display()))?;
    f.write_all(&[0u8; 4096])
        .and_then(|()| f.sync_all())
        .with_context(|| format!("clearing the old layer's superblock on {}", raw.display()))
}

/// Whether the decrypted layer starts with an ext4 superblock; an error when its first block
/// does not decrypt (another key, or changed on the host).
fn has_ext4(dev: &Path) -> anyhow::Result<bool> {
    let mut head = [0u8; 4096];
    if let Err(e) = File::open(dev).and_then(|mut f| f.read_exact(&mut head)) {
        bail!(
            "the encrypted writable layer does not open with this VM's key ({e}): it was written \
             by a box with another launch measurement, or changed on the host"
        );
    }
    Ok(is_ext4(&head))
}

/// The ext4 magic 0xEF53 at byte 56 of the superblock, which starts at byte 1024.
fn is_ext4(head: &[u8]) -> bool {
    head.get(1080..1082) == Some(&[0x53, 0xef][..])
}

/// How dm-integrity writes a sector and its tag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// First activation of a zeroed disk: writes the superblock and a journal of
    /// [`JOURNAL_SECTORS`].
    Format,
    /// Through the journal, so a sector and its tag land together (`J`): the box's own use.
    Journal,
    /// Straight to the sector and its tag (`D`): only while formatting ext4, whose result is
    /// discarded if the VM stops before it is complete.
    Direct,
}

/// dm-integrity (then dm-crypt over it) on `disk` in `mode`; returns the decrypted device.
fn map(disk: &Disk, key: &[u8; 32], sectors: u64, mode: Mode) -> anyhow::Result<PathBuf> {
    let integ = integrity(disk, sectors, mode)?;
    let integ_dev = major_minor(&integ)?;
    let params = Zeroizing::new(format!(
        "capi:gcm(aes)-random {} 0 {integ_dev} 0 1 integrity:{TAG_SIZE}:aead",
        Zeroizing::new(hex::encode(key)).as_str()
    ));
    dm::create(
        CRYPT_NAME,
        &dm::Table {
            sectors,
            target: "crypt",
            params: &params,
            readonly: false,
            secret: true,
        },
    )
    .context("opening the encrypted writable layer")
}

/// Removes the crypt and integrity mappings (after their writes are on the disk).
fn close() -> anyhow::Result<()> {
    dm::remove(CRYPT_NAME).context("closing the encrypted writable layer")?;
    dm::remove(INTEGRITY_NAME).context("closing the writable layer's dm-integrity")
}

enum Superblock {
    Integrity { provided_sectors: u64 },
    Empty,
    Other,
}

/// Reads the first 4 KiB of the raw disk, bypassing stale cached pages.
fn superblock(raw: &Path) -> anyhow::Result<Superblock> {
    let mut f = File::open(raw).with_context(|| format!("opening {}", raw.display()))?;
    // The kernel target writes the superblock with bios, not through this file's page cache.
    let _ = nix::fcntl::posix_fadvise(
        &f,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
    let mut head = vec![0u8; 4096];
    f.read_exact(&mut head)
        .with_context(|| format!("reading {}", raw.display()))?;
    Ok(parse_superblock(&head))
}

fn parse_superblock(head: &[u8]) -> Superblock {
    if head.starts_with(INTEGRITY_MAGIC) {
        let provided = head
            .get(16..24)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        if provided > 0 {
            return Superblock::Integrity {
                provided_sectors: provided,
            };
        }
        return Superblock::Other;
    }
    if head.iter().all(|b| *b == 0) {
        Superblock::Empty
    } else {
        Superblock::Other
    }
}

/// `integrity <disk> 0 28 J|D ...` of `sectors` sectors.
fn integrity(disk: &Disk, sectors: u64, mode: Mode) -> anyhow::Result<PathBuf> {
    let params = integrity_params(&disk.major_minor, mode);
    dm::create(
        INTEGRITY_NAME,
        &dm::Table {
            sectors,
            target: "integrity",
            params: &params,
            readonly: false,
            secret: false,
        },
    )
    .context("setting up dm-integrity on the writable layer disk")
}

fn integrity_params(dev: &str, mode: Mode) -> String {
    match mode {
        Mode::Format => format!("{dev} 0 {TAG_SIZE} J 1 journal_sectors:{JOURNAL_SECTORS}"),
        Mode::Journal => format!("{dev} 0 {TAG_SIZE} J 0"),
        Mode::Direct => format!("{dev} 0 {TAG_SIZE} D 0"),
    }
}

fn major_minor(dev: &Path) -> anyhow::Result<String> {
    let name = dev
        .file_name()
        .context("device path without a name")?
        .to_string_lossy();
    Ok(std::fs::read_to_string(format!("/sys/block/{name}/dev"))
        .with_context(|| format!("reading /sys/block/{name}/dev"))?
        .trim()
        .to_owned())
}

/// Writes encrypted zeros where mke2fs reads before it writes: its probes for old signatures
/// (first and last MiB) and the first block of each 128 MiB block group that gets a backup
/// superblock (written 1 KiB at a time, so the page cache reads the rest of the page).
/// A never-written sector fails the AEAD check and mke2fs would stop with an I/O error.
fn zero_probed_blocks(dev: &Path, sectors: u64) -> anyhow::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    const MIB: u64 = 1 << 20;
    const GROUP: u64 = 128 * MIB; // 32768 blocks of 4 KiB
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {}", dev.display()))?;
    let bytes = sectors * 512;
    let zeros = vec![0u8; 1 << 20];
    let mut spots: Vec<(u64, u64)> = vec![(0, MIB.min(bytes))];
    spots.extend(
        (1..bytes / GROUP + 1)
            .filter(|g| has_backup_superblock(*g))
            .map(|g| (g * GROUP, 4096)),
    );
    spots.push((bytes.saturating_sub(MIB), MIB.min(bytes)));
    for (start, len) in spots {
        let len = len.min(bytes.saturating_sub(start));
        f.seek(SeekFrom::Start(start))?;
        f.write_all(&zeros[..usize::try_from(len).unwrap_or(0)])?;
    }
    f.sync_all().context("flushing the layer's first writes")
}

/// Whether block group `g` holds a superblock backup under ext4's `sparse_super` (mke2fs's
/// default): groups 0 and 1 and the powers of 3, 5 and 7.
fn has_backup_superblock(g: u64) -> bool {
    let power_of = |base: u64| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    };
    g <= 1 || power_of(3) || power_of(5) || power_of(7)
}

/// ext4 on the decrypted device, with the measured `mke2fs` from the initrd. The ext4 journal
/// is 4 MiB (what mke2fs gives small filesystems; it holds metadata only): it is written in full
/// here (see the module docs), and under TCG every MiB written costs tens of ms.
fn mkfs(dev: &Path) -> anyhow::Result<()> {
    let tools = Path::new(TOOLS_DIR);
    let out = crate::init::run_helper(
        Command::new(tools.join("ld-linux-x86-64.so.2"))
            .arg("--library-path")
            .arg(tools)
            .arg(tools.join("mke2fs"))
            .args([
                "-q", "-F", "-t", "ext4", "-m", "0", "-J", "size=4", "-L", "a3s-rw",
            ])
            // No blocks reserved for growing the filesystem online (4 MiB written on a 10 GiB
            // layer): a layer keeps the size it was created with.
            .args(["-O", "^resize_inode"])
            .args([
                "-E",
                "lazy_itable_init=1,lazy_journal_init=0,nodiscard,root_owner=0:0",
            ])
            .arg(dev)
            .env_clear(),
    )
    .with_context(|| format!("running {}/mke2fs", tools.display()))?;
    if !out.status.success() {
        bail!(
            "mke2fs on the encrypted writable layer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_zeros_integrity_superblocks_and_anything_else() {
        assert!(matches!(parse_superblock(&[0u8; 4096]), Superblock::Empty));
        let mut sb = vec![0u8; 4096];
        sb[..8].copy_from_slice(INTEGRITY_MAGIC);
        sb[16..24].copy_from_slice(&123_456u64.to_le_bytes());
        assert!(matches!(
            parse_superblock(&sb),
            Superblock::Integrity {
                provided_sectors: 123_456
            }
        ));
        sb[16..24].fill(0);
        assert!(matches!(parse_superblock(&sb), Superblock::Other));
        let mut ext4 = vec![0u8; 4096];
        ext4[1080] = 0x53;
        ext4[1081] = 0xef;
        assert!(matches!(parse_superblock(&ext4), Superblock::Other));
        assert!(is_ext4(&ext4));
        assert!(!is_ext4(&[0u8; 4096]));
        assert!(!is_ext4(&[0u8; 100]));
    }

    #[test]
    fn backup_superblocks_are_in_groups_0_1_and_powers_of_3_5_7() {
        let groups: Vec<u64> = (0..400).filter(|g| has_backup_superblock(*g)).collect();
        assert_eq!(groups, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
    }

    #[test]
    fn the_journal_is_sized_only_when_formatting() {
        assert_eq!(
            integrity_params("254:16", Mode::Format),
            "254:16 0 28 J 1 journal_sectors:16384"
        );
        assert_eq!(integrity_params("254:16", Mode::Journal), "254:16 0 28 J 0");
        assert_eq!(integrity_params("254:16", Mode::Direct), "254:16 0 28 D 0");
    }
}
