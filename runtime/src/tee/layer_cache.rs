//! Kept layers: the encrypted writable layer a confidential box made on its first boot, copied
//! before anything was written to it, so the next box with the same launch measurement starts
//! from it instead of formatting its own.
//!
//! ```text
//! cache/tee-layers/<key>.img     (0700 directory, 0600 files; sparse: a few MiB of data)
//! key = SHA-256("a3s-tee-layer-v1", mode, measurement, guest policy, layer size)
//! ```
//!
//! Why it is sound: the layer key is derived from the secure processor and bound to the launch
//! measurement and policy, so every box with the same measurement has the same key, and a
//! freshly made layer holds nothing but an empty filesystem. Handing one box's pristine layer
//! to another is what the host can always do (replay ciphertext it has seen); the guest
//! learns from `TeeSetup::layer_prefilled` that its disk came from here, and makes a new layer
//! when the kept one does not open (the key changed, e.g. with the firmware's TCB, or the file
//! was damaged) instead of refusing to start. A layer is only put on a disk that was never
//! written (all holes), so a box's own layer is never replaced.
//!
//! Formatting under TCG takes 1-2 s of a confidential start (dm-integrity's journal and ext4's
//! metadata, each sector through AES-GCM in an emulated CPU); copying the kept layer takes
//! milliseconds.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::spec::TeeMode;

/// Layers kept at most; the least recently used go first.
const KEEP: usize = 8;

/// The kept layers of one home.
#[derive(Clone, Debug)]
pub struct LayerCache {
    dir: PathBuf,
}

/// What identifies the key a layer is encrypted under, and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerId<'a> {
    /// SNP or simulated (a simulator's keys are not the chip's).
    pub mode: TeeMode,
    /// The launch measurement, hex.
    pub measurement: &'a str,
    /// The SNP guest policy (`None`: the simulator's default).
    pub policy: Option<u64>,
    /// The layer disk's size in bytes.
    pub size: u64,
}

impl LayerId<'_> {
    fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"a3s-tee-layer-v1\0");
        h.update(format!("{:?}\0", self.mode).as_bytes());
        h.update(self.measurement.to_ascii_lowercase().as_bytes());
        h.update(b"\0");
        h.update(self.policy.map_or(u64::MAX, |p| p).to_le_bytes());
        h.update(self.size.to_le_bytes());
        hex::encode(h.finalize())
    }
}

impl LayerCache {
    /// The cache under `home` (`cache/tee-layers`, made 0700).
    ///
    /// # Errors
    /// The directory cannot be made.
    pub fn open(home: &Path) -> std::io::Result<Self> {
        let dir = home.join("cache").join("tee-layers");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self { dir })
    }

    fn entry(&self, id: &LayerId<'_>) -> PathBuf {
        self.dir.join(format!("{}.img", id.key()))
    }

    /// Puts the kept layer for `id` on `disk` when there is one and `disk` was never written;
    /// returns whether it did.
    ///
    /// # Errors
    /// Reading the entry or writing the disk failed. A copy that failed half-way is undone
    /// (the disk was all holes, so making it all holes again loses nothing); a disk not
    /// known to be unwritten is never touched.
    pub fn prefill(&self, id: &LayerId<'_>, disk: &Path) -> std::io::Result<bool> {
        let entry = self.entry(id);
        let Ok(src) = File::open(&entry) else {
            return Ok(false);
        };
        let dst = std::fs::OpenOptions::new().write(true).open(disk)?;
        let size = dst.metadata()?.len();
        if size != id.size || src.metadata()?.len() != size || !never_written(&dst)? {
            return Ok(false);
        }
        if let Err(e) = copy_data(&src, &dst, size).and_then(|()| dst.sync_all()) {
            let _ = dst.set_len(0).and_then(|()| dst.set_len(size));
            return Err(e);
        }
        // Used now: the last to be pruned.
        let _ = src.set_modified(std::time::SystemTime::now());
        Ok(true)
    }

    /// Keeps a copy of `disk`, just made by the guest, for the next box of `id`; prunes the
    /// least recently used beyond [`KEEP`].
    ///
    /// # Errors
    /// Reading the disk or writing the copy failed; no partial entry is left.
    pub fn keep(&self, id: &LayerId<'_>, disk: &Path) -> std::io::Result<()> {
        let src = File::open(disk)?;
        let size = src.metadata()?.len();
        if size != id.size {
            return Err(std::io::Error::other(format!(
                "the layer disk is {size} bytes, not the {} it was made with",
                id.size
            )));
        }
        let entry = self.entry(id);
        let tmp = entry.with_extension(format!("tmp-{}", std::process::id()));
        let result = (|| {
            let dst = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            dst.set_len(size)?;
            copy_data(&src, &dst, size)?;
            dst.sync_all()?;
            std::fs::rename(&tmp, &entry)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut kept: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "img"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        for (_, path) in kept.into_iter().skip(KEEP) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether `f` has no data at all (only holes): a layer disk no VM has written.
fn never_written(f: &File) -> std::io::Result<bool> {
    match nix::unistd::lseek(f.as_fd(), 0, nix::unistd::Whence::SeekData) {
        Ok(_) => Ok(false),
        Err(nix::errno::Errno::ENXIO) => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Copies the data extents of `src` (its first `size` bytes) to the same offsets of `dst`,
/// leaving holes as holes (a 10 GiB layer holds a few MiB).
fn copy_data(src: &File, mut dst: &File, size: u64) -> std::io::Result<()> {
    use nix::unistd::{lseek, Whence};
    let as_offset = |n: u64| i64::try_from(n).map_err(std::io::Error::other);
    let mut at = 0u64;
    while at < size {
        let start = match lseek(src.as_fd(), as_offset(at)?, Whence::SeekData) {
            Ok(o) => u64::try_from(o).map_err(std::io::Error::other)?,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let end = match lseek(src.as_fd(), as_offset(start)?, Whence::SeekHole) {
            Ok(o) => u64::try_from(o).map_err(std::io::Error::other)?,
            Err(e) => return Err(e.into()),
        }
        .min(size);
        let mut from = src;
        from.seek(SeekFrom::Start(start))?;
        dst.seek(SeekFrom::Start(start))?;
        let want = end - start;
        let copied = std::io::copy(&mut std::io::Read::take(from, want), &mut dst)?;
        if copied != want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the layer disk shrank while it was copied",
            ));
        }
        at = end;
    }
    dst.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    const SIZE: u64 = 64 << 20;

    fn id(measurement: &str) -> LayerId<'_> {
        LayerId {
            mode: TeeMode::Simulated,
            measurement,
            policy: None,
            size: SIZE,
        }
    }

    fn sparse(path: &Path) -> File {
        let f = File::create(path).unwrap();
        f.set_len(SIZE).unwrap();
        f
    }

    fn write_at(f: &File, at: u64, data: &[u8]) {
        let mut f = f;
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(data).unwrap();
        f.sync_all().unwrap();
    }

    fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut f = File::open(path).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        let mut b = vec![0u8; len];
        f.read_exact(&mut b).unwrap();
        b
    }

    #[test]
    fn a_kept_layer_fills_only_a_never_written_disk_of_its_measurement_and_size() {
        let d = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(d.path()).unwrap();
        let made = d.path().join("made.img");
        let f = sparse(&made);
        write_at(&f, 0, b"integrt\0superblock");
        write_at(&f, 40 << 20, &[7u8; 8192]);
        cache.keep(&id("aa"), &made).unwrap();
        let entry = cache.entry(&id("aa"));
        let meta = std::fs::metadata(&entry).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(d.path().join("cache/tee-layers"))
                .unwrap()
                .mode()
                & 0o777,
            0o700
        );
        // Holes stay holes: far less allocated than the apparent size.
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());

        let fresh = d.path().join("fresh.img");
        sparse(&fresh);
        assert!(cache.prefill(&id("aa"), &fresh).unwrap());
        assert_eq!(read_at(&fresh, 0, 18), b"integrt\0superblock");
        assert_eq!(read_at(&fresh, 40 << 20, 8192), vec![7u8; 8192]);
        assert_eq!(read_at(&fresh, 20 << 20, 16), vec![0u8; 16]);

        // Another measurement, another size, or a disk with data of its own: untouched.
        let other = d.path().join("other.img");
        sparse(&other);
        assert!(!cache.prefill(&id("bb"), &other).unwrap());
        let bigger = LayerId {
            size: SIZE * 2,
            ..id("aa")
        };
        assert!(!cache.prefill(&bigger, &other).unwrap());
        let used = d.path().join("used.img");
        let u = sparse(&used);
        write_at(&u, 4096, b"the box's own data");
        assert!(!cache.prefill(&id("aa"), &used).unwrap());
        assert_eq!(read_at(&used, 0, 8), vec![0u8; 8]);
        assert_eq!(read_at(&used, 4096, 18), b"the box's own data");
    }

    #[test]
    fn the_key_covers_mode_measurement_policy_and_size() {
        let base = id("ab");
        let keys = [
            base.key(),
            id("ac").key(),
            LayerId {
                mode: TeeMode::Snp,
                ..base.clone()
            }
            .key(),
            LayerId {
                policy: Some(0x30000),
                ..base.clone()
            }
            .key(),
            LayerId {
                size: SIZE + 4096,
                ..base.clone()
            }
            .key(),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(base.key(), id("AB").key(), "hex case does not matter");
    }

    #[test]
    fn keeping_prunes_the_least_recently_used_beyond_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(d.path()).unwrap();
        let disk = d.path().join("disk.img");
        let f = sparse(&disk);
        write_at(&f, 0, b"x");
        let names: Vec<String> = (0..KEEP + 2).map(|i| format!("{i:02x}")).collect();
        for (i, m) in names.iter().enumerate() {
            cache.keep(&id(m), &disk).unwrap();
            // Distinct times, oldest first.
            let t =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + i as u64);
            File::open(cache.entry(&id(m)))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        cache.prune();
        assert!(!cache.entry(&id(&names[0])).exists());
        assert!(!cache.entry(&id(&names[1])).exists());
        assert!(cache.entry(&id(&names[KEEP + 1])).exists());
        assert_eq!(std::fs::read_dir(&cache.dir).unwrap().count(), KEEP);
    }
}
