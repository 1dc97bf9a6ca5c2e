//! Read-only filesystem images: the block device a box boots its root filesystem from.
//!
//! Per manifest digest the store builds, once, an erofs image of the unpacked rootfs
//! (`mkfs.erofs`, Debian's erofs-utils) followed by its dm-verity hash tree (`veritysetup
//! format`, Debian's cryptsetup-bin), in one file:
//!
//! ```text
//! rootfs/<hex>.erofs        erofs data blocks (4 KiB) ‖ verity hash tree (no verity superblock)
//! rootfs/<hex>.erofs.json   FsImage: root hash, data blocks, hash offset, sizes
//! ```
//!
//! The guest opens the device with dm-verity against the root hash, which the host puts on the
//! (measured) kernel command line, so a changed byte in either part is refused by the guest
//! kernel. Data and hash blocks are both 4096 bytes and there is no superblock, so the hash tree
//! starts at block `data_blocks`: the command line needs only the block count and the root hash.
//! The layers are unpacked into a scratch tree that goes as soon as the image is built, in RAM
//! when it fits (`scratch`), so the only uncompressed copy of an image on disk is its erofs
//! image (besides its compressed layer blobs).
//!
//! The root hash depends only on the image (and erofs-utils' version): the superblock's build
//! time is fixed (`SOURCE_DATE_EPOCH`, which also keeps every file's own mtime: Python compares
//! them with its `.pyc` files) and the unpack gives directories no layer lists a fixed mode
//! and time, so a measurement predicted on one host holds on another.
//!
//! A build's steps make images that each add a layer to the last: [`StepTrees`] keeps the
//! last step's unpacked tree, so the next step's filesystem applies only its own layer before
//! `mkfs.erofs` instead of unpacking every layer again (the same bytes either way).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fs_err as fs;
use serde::{Deserialize, Serialize};

use super::{fsutil, scratch, FileLock, ImageStore, LocalImage, StoreError};

/// Block size of the erofs image and of the verity tree.
pub const BLOCK_SIZE: u64 = 4096;
/// The image builder.
pub(super) const MKFS_EROFS: &str = "mkfs.erofs";
/// The hash-tree builder.
pub(super) const VERITYSETUP: &str = "veritysetup";
/// Most bytes of a tool's output kept for an error message.
const MAX_TOOL_OUTPUT: usize = 4096;

/// A built filesystem image and what the guest needs to verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsImage {
    /// The file: erofs data followed by the hash tree.
    #[serde(skip)]
    pub path: PathBuf,
    /// dm-verity root hash (sha256, hex, no salt).
    pub root_hash: String,
    /// Number of 4 KiB data blocks (the hash tree starts right after them).
    pub data_blocks: u64,
    /// Byte offset of the hash tree (`data_blocks * 4096`).
    pub hash_offset: u64,
    /// Size of the whole file.
    pub size: u64,
    /// Apparent size of the unpacked rootfs the image was built from (Docker's SIZE).
    pub unpacked_bytes: u64,
}

impl FsImage {
    /// The dm-verity part of the kernel command line: `<data blocks>,<root hash>`.
    pub fn verity_arg(&self) -> String {
        format!("{},{}", self.data_blocks, self.root_hash)
    }
}

impl ImageStore {
    /// Where the filesystem image of a manifest lives (it may not exist yet).
    pub fn filesystem_path(&self, digest_hex: &str) -> PathBuf {
        self.dir.join("rootfs").join(format!("{digest_hex}.erofs"))
    }

    /// The filesystem image of `image` with its verity tree, built once per manifest digest
    /// (under a per-image lock, so concurrent starts build it once) and reused afterwards.
    ///
    /// # Errors
    /// The rootfs cannot be unpacked, `mkfs.erofs` or `veritysetup` is missing or fails, or a
    /// cached metadata file is damaged.
    pub fn filesystem(&self, image: &LocalImage) -> Result<FsImage, StoreError> {
        let hex = image.digest.hex();
        let path = self.filesystem_path(hex);
        let meta = meta_path(&path);
        if let Some(found) = load(&path, &meta)? {
            return Ok(found);
        }
        let _hold = self.hold()?;
        let _lock = FileLock::exclusive(&self.dir.join("rootfs").join(format!(".{hex}.fs.lock")))?;
        if let Some(found) = load(&path, &meta)? {
            return Ok(found); // another process built it while we waited
        }
        // A tree `rootfs` kept for another use is built from, then goes: the erofs image
        // replaces it. Otherwise the layers go to a scratch tree, removed when dropped.
        let kept = self.dir.join("rootfs").join(hex);
        let built = if kept.is_dir() {
            let built = build(&kept, &path, hex)?;
            if let Err(e) = fs::remove_dir_all(&kept) {
                tracing::warn!(tree = %kept.display(), error = %e, "could not remove the unpacked rootfs");
            }
            built
        } else {
            let tree = self.unpack_scratch(image)?;
            build(tree.root(), &path, hex)?
        };
        let json = serde_json::to_vec_pretty(&built).map_err(io::Error::other)?;
        fsutil::write_atomic(&meta, &json)?;
        Ok(built)
    }

    /// [`ImageStore::filesystem`] for a build step's image: when `kept` holds the tree of an
    /// image whose layers begin `image`'s (the previous step's), only the layers after them
    /// are applied to it; the tree is then kept for the next step. Any failure on that path
    /// (a tree that ran out of RAM, say) drops the kept tree and builds the usual way. Not
    /// as a non-root user (see [`crate::unpack::Unpacker::settle`]).
    ///
    /// # Errors
    /// As [`ImageStore::filesystem`].
    pub fn filesystem_extending(
        &self,
        image: &LocalImage,
        kept: &StepTrees,
    ) -> Result<FsImage, StoreError> {
        let path = self.filesystem_path(image.digest.hex());
        if let Some(found) = load(&path, &meta_path(&path))? {
            return Ok(found);
        }
        if !rustix::process::geteuid().is_root() {
            return self.filesystem(image);
        }
        let mut slot = kept
            .0
            .lock()
            .map_err(|_| io::Error::other("the kept build tree's lock is poisoned"))?;
        match self.extend(image, slot.take()) {
            Ok((built, tree)) => {
                *slot = Some(tree);
                Ok(built)
            }
            Err(e) => {
                tracing::debug!(image = %image.digest, error = %e, "building from a kept tree failed; unpacking every layer");
                drop(slot);
                self.filesystem(image)
            }
        }
    }

    /// Builds `image`'s filesystem on `kept` when its layers begin `image`'s, else on a fresh
    /// scratch tree; returns the image and the tree, now `image`'s.
    fn extend(
        &self,
        image: &LocalImage,
        kept: Option<KeptTree>,
    ) -> Result<(FsImage, KeptTree), StoreError> {
        let hex = image.digest.hex();
        let path = self.filesystem_path(hex);
        let meta = meta_path(&path);
        let _hold = self.hold()?;
        let _lock = FileLock::exclusive(&self.dir.join("rootfs").join(format!(".{hex}.fs.lock")))?;
        let (_, diff_ids) = self.diff_ids(image)?;
        let mut tree = match kept {
            Some(k) if diff_ids.starts_with(&k.diff_ids) => k,
            _ => {
                let disk = self.dir.join("rootfs");
                let tree = scratch::place(self.unpacked_estimate(image)?, &disk)?;
                let unpacker = crate::unpack::Unpacker::new(tree.root());
                KeptTree {
                    diff_ids: Vec::new(),
                    tree,
                    unpacker,
                }
            }
        };
        self.apply_layers(image, &mut tree.unpacker, tree.diff_ids.len())?;
        tree.unpacker
            .settle()
            .map_err(|source| StoreError::Unpack {
                layer: image.digest.clone(),
                source,
            })?;
        tree.diff_ids = diff_ids;
        let built = match load(&path, &meta)? {
            Some(found) => found, // another process built it while we waited
            None => {
                let built = build(tree.tree.root(), &path, hex)?;
                let json = serde_json::to_vec_pretty(&built).map_err(io::Error::other)?;
                fsutil::write_atomic(&meta, &json)?;
                built
            }
        };
        Ok((built, tree))
    }

    /// `image`'s layers unpacked into a scratch tree: in RAM when it fits, on disk when it
    /// does not or when RAM turned out too small after all.
    fn unpack_scratch(&self, image: &LocalImage) -> Result<scratch::ScratchTree, StoreError> {
        let disk = self.dir.join("rootfs");
        let tree = scratch::place(self.unpacked_estimate(image)?, &disk)?;
        match self.unpack_to(image, tree.root()) {
            Ok(()) => Ok(tree),
            Err(e) if tree.in_ram() && out_of_space(&e) => {
                drop(tree);
                tracing::info!(image = %image.digest, "the unpacked image did not fit in RAM; unpacking it on disk");
                let tree = scratch::on_disk(&disk)?;
                self.unpack_to(image, tree.root())?;
                Ok(tree)
            }
            Err(e) => Err(e),
        }
    }

    /// About how many bytes `image`'s layers unpack to: each gzip layer's own record of its
    /// uncompressed size (modulo 4 GiB), and never less than four times its compressed size.
    fn unpacked_estimate(&self, image: &LocalImage) -> Result<u64, StoreError> {
        let manifest = self.manifest(&image.digest)?;
        let mut total = 0u64;
        for layer in &manifest.layers {
            let mut blob = self.open_blob(&layer.digest)?;
            let recorded = gzip_isize(&mut blob).unwrap_or(0);
            total = total.saturating_add(recorded.max(layer.size.saturating_mul(4)));
        }
        Ok(total)
    }
}

/// A gzip stream's last four bytes: its uncompressed size modulo 2^32 (RFC 1952 ISIZE).
fn gzip_isize(file: &mut (impl std::io::Read + std::io::Seek)) -> Option<u64> {
    use std::io::SeekFrom;
    let mut magic = [0u8; 2];
    file.read_exact(&mut magic).ok()?;
    if magic != [0x1f, 0x8b] {
        return None;
    }
    file.seek(SeekFrom::End(-4)).ok()?;
    let mut isize = [0u8; 4];
    file.read_exact(&mut isize).ok()?;
    Some(u64::from(u32::from_le_bytes(isize)))
}

/// The error says a file system was full.
fn out_of_space(e: &StoreError) -> bool {
    let io = match e {
        StoreError::Io(e) => e,
        StoreError::Unpack {
            source: crate::unpack::UnpackError::Write { source, .. },
            ..
        } => source,
        _ => return false,
    };
    io.kind() == io::ErrorKind::StorageFull
}

fn meta_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// The cached image, if both files are there and agree.
fn load(path: &Path, meta: &Path) -> Result<Option<FsImage>, StoreError> {
    let (Ok(meta_stat), Ok(stat)) = (std::fs::metadata(meta), std::fs::metadata(path)) else {
        return Ok(None);
    };
    // A few hundred bytes when we wrote it: the store's document limit bounds the read.
    if meta_stat.len() > super::MAX_DOCUMENT_BYTES {
        return Err(StoreError::TooLarge {
            what: meta.display().to_string(),
            size: meta_stat.len(),
        });
    }
    let Ok(bytes) = std::fs::read(meta) else {
        return Ok(None);
    };
    let mut image: FsImage =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Malformed {
            what: meta.display().to_string(),
            source,
        })?;
    if image.size != stat.len() || image.hash_offset != image.data_blocks * BLOCK_SIZE {
        // A half-replaced pair (or a hand-edited file): rebuild rather than boot it.
        return Ok(None);
    }
    image.path = path.to_owned();
    Ok(Some(image))
}

/// The unpacked tree of a build's last step, kept for the next (see the module docs). Dropped,
/// it removes the tree.
#[derive(Debug, Default)]
pub struct StepTrees(std::sync::Mutex<Option<KeptTree>>);

impl StepTrees {
    /// Removes the kept tree, if any.
    pub fn release(&self) {
        if let Ok(mut slot) = self.0.lock() {
            slot.take();
        }
    }

    /// How many layers the kept tree holds (`None`: none kept).
    #[cfg(test)]
    fn held(&self) -> Option<usize> {
        self.0.lock().ok()?.as_ref().map(|k| k.diff_ids.len())
    }
}

/// A kept tree: the diff ids of the layers it holds, the tree, and its unpacker (which
/// remembers every directory's mode and time for the next settle).
#[derive(Debug)]
struct KeptTree {
    diff_ids: Vec<crate::reference::Digest>,
    tree: scratch::ScratchTree,
    unpacker: crate::unpack::Unpacker,
}

/// The build time written into every erofs superblock (`u32::MAX`, in 2106).
const EROFS_BUILD_TIME: u64 = u32::MAX as u64;

/// Builds `dest` from `tree`: erofs, then the hash tree appended to the same file.
fn build(tree: &Path, dest: &Path, hex: &str) -> Result<FsImage, StoreError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .suffix(".erofs")
        .tempfile_in(dir)?;
    let mut mkfs = Command::new(MKFS_EROFS);
    mkfs.arg("--quiet")
        .arg("--preserve-mtime")
        // A stable UUID per image: nothing in the guest depends on it.
        .arg(format!("-U{}", uuid_of(hex)))
        // A fixed build time in the superblock instead of now: two builds of one image, on
        // this host or another, are then the same bytes with the same dm-verity root hash,
        // which the measured command line of a confidential box carries (a verifier's
        // reference value holds on every node). mkfs.erofs clamps file times to it; one at
        // 2106 clamps none.
        .env("SOURCE_DATE_EPOCH", EROFS_BUILD_TIME.to_string());
    if !rustix::process::geteuid().is_root() {
        // Unpacked without root, every file belongs to the caller; inside the box that would
        // be an arbitrary uid, root is what the old initramfs root gave too.
        mkfs.arg("--all-root");
    }
    mkfs.arg(tmp.path()).arg(tree);
    run_tool(MKFS_EROFS, &mut mkfs)?;
    let size = tmp.as_file().metadata()?.len();
    // mkfs.erofs writes whole 4 KiB blocks; pad defensively so the block count is exact.
    let data_blocks = size.div_ceil(BLOCK_SIZE);
    let hash_offset = data_blocks * BLOCK_SIZE;
    tmp.as_file().set_len(hash_offset)?;
    let mut verity = Command::new(VERITYSETUP);
    verity
        .args(["format", "--no-superblock", "--salt=-", "--hash=sha256"])
        .arg("--data-block-size=4096")
        .arg("--hash-block-size=4096")
        .arg(format!("--data-blocks={data_blocks}"))
        .arg(format!("--hash-offset={hash_offset}"))
        .arg(tmp.path())
        .arg(tmp.path());
    let out = run_tool(VERITYSETUP, &mut verity)?;
    let root_hash = parse_root_hash(&out).ok_or_else(|| StoreError::FsTool {
        tool: VERITYSETUP.into(),
        message: format!("no root hash in its output: {}", clip(&out)),
    })?;
    tmp.as_file().sync_all()?;
    let size = tmp.as_file().metadata()?.len();
    tmp.persist(dest).map_err(|e| e.error)?;
    fsutil::sync_dir(dir)?;
    Ok(FsImage {
        path: dest.to_owned(),
        root_hash,
        data_blocks,
        hash_offset,
        size,
        unpacked_bytes: apparent_size(tree)?,
    })
}

/// Runs a builder tool, returning its stdout; a failure carries the end of its output.
fn run_tool(tool: &str, cmd: &mut Command) -> Result<String, StoreError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StoreError::FsTool {
            tool: tool.into(),
            message: if e.kind() == io::ErrorKind::NotFound {
                "not installed".into()
            } else {
                e.to_string()
            },
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(StoreError::FsTool {
            tool: tool.into(),
            message: format!("{}: {}", out.status, clip(stderr.trim())),
        });
    }
    Ok(stdout)
}

fn clip(s: &str) -> String {
    if s.len() <= MAX_TOOL_OUTPUT {
        return s.to_owned();
    }
    let mut start = s.len() - MAX_TOOL_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// `Root hash:      \t<hex>` from `veritysetup format`.
fn parse_root_hash(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(str::trim)
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_ascii_lowercase)
}

/// A UUID made from the first 16 bytes of the manifest digest.
fn uuid_of(hex: &str) -> String {
    let h: String = hex.chars().chain(std::iter::repeat('0')).take(32).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Sum of the apparent sizes of regular files and symlinks under `root`.
fn apparent_size(root: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.path().symlink_metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_file_system_sends_the_unpack_back_to_disk() {
        let write = |e: io::Error| StoreError::Unpack {
            layer: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            source: crate::unpack::UnpackError::Write {
                path: "usr/lib/x".into(),
                source: e,
            },
        };
        // ENOSPC, as a tmpfs reports it.
        assert!(out_of_space(&write(io::Error::from_raw_os_error(28))));
        assert!(out_of_space(&StoreError::Io(io::Error::from_raw_os_error(
            28
        ))));
        assert!(!out_of_space(&write(io::Error::from_raw_os_error(13))));
        assert!(!out_of_space(&StoreError::Unpack {
            layer: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
                .parse()
                .unwrap(),
            source: crate::unpack::UnpackError::PathTraversal {
                path: "../x".into()
            },
        }));
    }

    #[test]
    fn the_gzip_trailer_gives_the_unpacked_size_and_other_blobs_none() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![7u8; 100_000]).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(gzip_isize(&mut io::Cursor::new(gz)), Some(100_000));
        assert_eq!(
            gzip_isize(&mut io::Cursor::new(b"plain tar".to_vec())),
            None
        );
        assert_eq!(gzip_isize(&mut io::Cursor::new(vec![0x1f, 0x8b])), None);
    }

    #[test]
    fn root_hash_is_read_from_veritysetup_output() {
        let out = "VERITY header information for v.img\nUUID:            \t\nHash type:       \t1\n\
                   Root hash:      \t0BFBC6DF797FA4C59D4957312F09A256A21C8C6EAB1FA3CC6C7B902CE88D9E02\n";
        assert_eq!(
            parse_root_hash(out).unwrap(),
            "0bfbc6df797fa4c59d4957312f09a256a21c8c6eab1fa3cc6c7b902ce88d9e02"
        );
        assert!(parse_root_hash("Root hash: xyz\n").is_none());
        assert!(parse_root_hash("").is_none());
    }

    #[test]
    fn uuid_is_shaped_like_one() {
        let u = uuid_of("0123456789abcdef0123456789abcdef0123");
        assert_eq!(u, "01234567-89ab-cdef-0123-456789abcdef");
    }

    /// Whether the tools are here; says SKIPPED when not (a missing tool never passes in CI).
    fn tools_or_skip() -> bool {
        if tools_present() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: mkfs.erofs/veritysetup not installed (run scripts/setup)"
        );
        eprintln!("SKIPPED: mkfs.erofs/veritysetup not installed (run scripts/setup)");
        false
    }

    fn tools_present() -> bool {
        [MKFS_EROFS, VERITYSETUP].iter().all(|t| {
            Command::new(t)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
    }

    /// A layer tar of files (`(path, bytes)`; a `.wh.` name is a whiteout).
    fn layer_tar(dir: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_600_000_000);
            b.append_data(&mut h, path, *data).unwrap();
        }
        let p = dir.join(name);
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        p
    }

    /// A store with a base image and three steps on it (two layers, then a config-only
    /// step), as `build` makes them; returns the steps' images.
    fn build_steps(root: &Path, files: &Path) -> (ImageStore, Vec<LocalImage>) {
        let store = ImageStore::open(root).unwrap();
        let base = store
            .import_rootfs(
                &layer_tar(
                    files,
                    "base.tar",
                    &[("etc/hostname", b"box\n"), ("opt/app/old", b"1")],
                ),
                &"local/base".parse().unwrap(),
            )
            .unwrap();
        let l1 = layer_tar(
            files,
            "l1.tar",
            &[("etc/motd", b"hi"), ("srv/www/index", b"x")],
        );
        let l2 = layer_tar(
            files,
            "l2.tar",
            &[
                ("etc/.wh.hostname", b""),
                ("opt/app/.wh..wh..opq", b""),
                ("opt/app/new", b"2"),
                ("var/lib/deep/f", b"3"),
            ],
        );
        let mut steps = Vec::new();
        let mut parent = base.clone();
        for layer in [Some(l1.as_path()), Some(l2.as_path()), None] {
            let m = store.manifest(&parent.digest).unwrap();
            let digest = store
                .commit(&crate::store::Commit {
                    parent: Some(&parent.digest),
                    config: store.config_json(&m).unwrap(),
                    layer,
                    history: crate::oci::History::default(),
                })
                .unwrap();
            parent = LocalImage {
                digest,
                ..parent.clone()
            };
            steps.push(parent.clone());
        }
        (store, steps)
    }

    #[test]
    fn a_build_steps_filesystem_from_the_kept_tree_is_the_one_a_full_unpack_builds() {
        if !tools_or_skip() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (kept_store, steps) = build_steps(&tmp.path().join("a"), tmp.path());
        let kept = StepTrees::default();
        let extended: Vec<FsImage> = steps
            .iter()
            .map(|s| kept_store.filesystem_extending(s, &kept).unwrap())
            .collect();
        if rustix::process::geteuid().is_root() {
            assert_eq!(kept.held(), Some(3), "base, then the two steps' layers");
        }
        // Another store unpacks every layer for each image: the same file systems.
        let (full_store, same_steps) = build_steps(&tmp.path().join("b"), tmp.path());
        for (i, (step, ext)) in same_steps.iter().zip(&extended).enumerate() {
            assert_eq!(step.digest, steps[i].digest);
            let full = full_store.filesystem(step).unwrap();
            assert_eq!(full.root_hash, ext.root_hash, "step {i}");
            assert!(
                std::fs::read(&full.path).unwrap() == std::fs::read(&ext.path).unwrap(),
                "step {i}"
            );
        }
        // Released, the kept tree goes.
        kept.release();
        assert_eq!(kept.held(), None);
    }

    #[test]
    fn builds_an_erofs_image_with_a_verity_tree_that_veritysetup_verifies() {
        if !tools_or_skip() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hello"), b"hello from the image\n").unwrap();
        std::os::unix::fs::symlink("hello", tree.join("etc/link")).unwrap();
        // Several data blocks, so there is a hash tree (one block is its own root).
        let big: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(tree.join("etc/big"), &big).unwrap();
        let dest = tmp.path().join("x.erofs");
        let img = build(&tree, &dest, "ab".repeat(32).as_str()).unwrap();
        assert_eq!(img.hash_offset, img.data_blocks * BLOCK_SIZE);
        assert!(img.size > img.hash_offset, "the hash tree follows the data");
        assert_eq!(img.unpacked_bytes, 21 + 5 + 64 * 1024);
        // erofs magic at offset 1024.
        let head = fsutil::read_limited(&dest, 1028).unwrap();
        assert_eq!(&head[1024..1028], &0xE0F5_E1E2u32.to_le_bytes());
        // The independent check: veritysetup verifies data against the tree and root hash.
        let verify = |root: &str| {
            Command::new(VERITYSETUP)
                .args(["verify", "--no-superblock", "--salt=-"])
                .arg(format!("--data-blocks={}", img.data_blocks))
                .arg(format!("--hash-offset={}", img.hash_offset))
                .arg(&dest)
                .arg(&dest)
                .arg(root)
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(verify(&img.root_hash));
        assert!(!verify(&"00".repeat(32)));
        // Built again (another time, another place): the same bytes, the same root hash.
        let again = tmp.path().join("y.erofs");
        let img2 = build(&tree, &again, "ab".repeat(32).as_str()).unwrap();
        assert_eq!(img2.root_hash, img.root_hash);
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&dest).unwrap());
        // One byte changed in the data: verification fails.
        let mut bytes = std::fs::read(&dest).unwrap();
        bytes[1030] ^= 1;
        std::fs::write(&dest, &bytes).unwrap();
        assert!(!verify(&img.root_hash));
    }
}
