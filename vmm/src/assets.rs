//! Boot assets: the guest kernel and the initrd (guest-init plus kernel modules, the same for
//! every image), built on the host and cached under `A3S_HOME/cache/`. The image's root
//! filesystem is not in the initrd: it is a read-only block device ([`crate::disk`]).
//!
//! ```text
//! cache/kernels/<release>-<vmlinuz sha256 prefix>/vmlinux   PVH ELF extracted from the bzImage
//! cache/initrd/base-<key>.cpio      guest-init at /.a3s/init, modules at /.a3s/modules/NN-*.ko
//! cache/initrd/memo-<inputs>.json   which key unchanged inputs gave (initrd_memo.rs)
//! ```
//!
//! Every cache entry is content-addressed and written to a temporary file, fsynced and renamed
//! into place, so concurrent builders at worst do the same work twice and readers never see a
//! partial file.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cpio::{CpioWriter, Meta};

/// Overrides where guest kernels are looked for (a release directory or a directory of them).
pub const KERNEL_DIR_ENV: &str = "A3S_BOX_KERNEL_DIR";
/// Overrides which `a3s-guest-init` binary goes into the initrd.
pub const GUEST_INIT_ENV: &str = "A3S_GUEST_INIT";
/// Path of guest-init inside the initramfs (`rdinit=`).
pub const INIT_PATH: &str = "/.a3s/init";

/// A boot asset could not be found or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// No directory holding a `vmlinuz` was found.
    #[error("no guest kernel found (looked in {})", display_paths(.searched))]
    NoKernel {
        /// Directories searched.
        searched: Vec<PathBuf>,
    },
    /// No statically linked guest-init was found.
    #[error("no statically linked a3s-guest-init found (looked at {})", display_paths(.searched))]
    NoGuestInit {
        /// Files tried.
        searched: Vec<PathBuf>,
    },
    /// The guest-init binary is dynamically linked and cannot run as PID 1 in the initramfs.
    #[error("{path} is dynamically linked; guest-init must be static")]
    GuestInitNotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// The kernel image is not a bzImage we can unpack.
    #[error("{path} is not a supported bzImage: {reason}")]
    BadKernel {
        /// The image.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A kernel module the guest needs is missing from the kernel's module tree.
    #[error("kernel module {name} not found under {modules}")]
    MissingModule {
        /// Module name.
        name: String,
        /// The module tree.
        modules: PathBuf,
    },
    /// A host program the guest needs (e.g. `mke2fs`) is missing or unusable.
    #[error("{program} cannot be put into the initrd: {reason}")]
    MissingProgram {
        /// The program.
        program: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("boot asset i/o failed")]
    Io(#[from] std::io::Error),
}

impl AssetError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoKernel { .. } => Some(format!(
                "install the guest kernel with `sudo scripts/setup` (unpacks Debian's \
                 linux-image-cloud-amd64 into $A3S_HOME/kernels/), or point {KERNEL_DIR_ENV} at a \
                 directory holding vmlinuz, config and modules/"
            )),
            Self::NoGuestInit { .. } | Self::GuestInitNotStatic { .. } => Some(format!(
                "build it with `scripts/build-guest-init` (cargo build -p a3s-guest --target \
                 x86_64-unknown-linux-gnu with -C target-feature=+crt-static), or set \
                 {GUEST_INIT_ENV} to a static build"
            )),
            Self::MissingProgram { .. } => Some("install e2fsprogs (`sudo scripts/setup`)".into()),
            _ => None,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An unpacked guest kernel release: `vmlinuz`, `config`, `modules/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelDir {
    /// The release directory.
    pub dir: PathBuf,
    /// The release name (directory name).
    pub release: String,
}

impl KernelDir {
    /// Finds the kernel: `A3S_BOX_KERNEL_DIR` if set, else the newest release under each of
    /// `candidates` (typically `$A3S_HOME/kernels` then `~/.a3s/kernels`).
    ///
    /// # Errors
    /// [`AssetError::NoKernel`] naming every place searched.
    pub fn locate(candidates: &[PathBuf]) -> Result<Self, AssetError> {
        let mut searched = Vec::new();
        let env = std::env::var_os(KERNEL_DIR_ENV).filter(|v| !v.is_empty());
        let roots: Vec<PathBuf> = match env {
            Some(dir) => vec![PathBuf::from(dir)],
            None => candidates.to_vec(),
        };
        for root in roots {
            if root.join("vmlinuz").is_file() {
                return Ok(Self::from_dir(root));
            }
            searched.push(root.clone());
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            let mut releases: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("vmlinuz").is_file())
                .collect();
            releases.sort();
            if let Some(dir) = releases.pop() {
                return Ok(Self::from_dir(dir));
            }
        }
        Err(AssetError::NoKernel { searched })
    }

    fn from_dir(dir: PathBuf) -> Self {
        let release = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self { dir, release }
    }

    /// The compressed kernel.
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The uncompressed PVH `vmlinux`, extracted once into `cache`.
    ///
    /// PVH entry of the uncompressed ELF skips the bzImage's real-mode setup and in-guest
    /// decompression, which under TCG saves about 2 s per boot (see the crate docs).
    ///
    /// # Errors
    /// [`AssetError::BadKernel`] for an image we cannot unpack, or i/o.
    pub fn vmlinux(&self, cache: &Path) -> Result<PathBuf, AssetError> {
        let bz = fs_err::read(self.vmlinuz())?;
        let key = short_hash(&[&bz]);
        let out = cache
            .join("kernels")
            .join(format!("{}-{key}", self.release))
            .join("vmlinux");
        if out.is_file() {
            return Ok(out);
        }
        let elf = extract_vmlinux(&bz).map_err(|reason| AssetError::BadKernel {
            path: self.vmlinuz(),
            reason,
        })?;
        write_atomic(&out, &elf)?;
        Ok(out)
    }

    /// Finds module `name` and, recursively, the modules it depends on (from each module's
    /// `depends=` modinfo), decompressed, without their signatures, and with what the guest's
    /// loader need not process hidden ([`crate::module_trim`]), in load order.
    ///
    /// # Errors
    /// [`AssetError::MissingModule`] or i/o.
    pub fn modules_with_deps(&self, names: &[&str]) -> Result<Vec<(String, Vec<u8>)>, AssetError> {
        let root = self.dir.join("modules");
        let mut index = Vec::new();
        index_modules(&root, &mut index)?;
        let mut out: Vec<(String, Vec<u8>)> = Vec::new();
        for name in names {
            self.add_module(&root, &index, &normalise(name), &mut out, 0)?;
        }
        Ok(out)
    }

    fn add_module(
        &self,
        root: &Path,
        index: &[PathBuf],
        name: &str,
        out: &mut Vec<(String, Vec<u8>)>,
        depth: usize,
    ) -> Result<(), AssetError> {
        if out.iter().any(|(n, _)| n == name) || depth > 16 {
            return Ok(());
        }
        let path = index
            .iter()
            .find(|p| module_name(p).as_deref() == Some(name))
            .ok_or_else(|| AssetError::MissingModule {
                name: name.to_owned(),
                modules: root.to_owned(),
            })?;
        let raw = fs_err::read(path)?;
        let ko = if path.extension().is_some_and(|e| e == "xz") {
            let mut out = Vec::new();
            lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out).map_err(|e| {
                std::io::Error::other(format!("decompressing {}: {e}", path.display()))
            })?;
            out
        } else {
            raw
        };
        let ko = crate::module_trim::trim(crate::module_signature::strip(ko));
        for dep in modinfo_depends(&ko) {
            self.add_module(root, index, &dep, out, depth + 1)?;
        }
        out.push((name.to_owned(), ko));
        Ok(())
    }
}

fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn module_name(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".ko.xz")
        .or_else(|| file.strip_suffix(".ko"))?;
    Some(normalise(stem))
}

fn index_modules(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AssetError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, out)?;
        } else if module_name(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// The `depends=` list in a module's `.modinfo` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    ko.split(|b| *b == 0)
        .filter_map(|s| s.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|d| !d.is_empty())
                .map(normalise)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Unpacks the ELF kernel from a bzImage (boot protocol ≥ 2.08: `payload_offset`/`payload_length`).
fn extract_vmlinux(bz: &[u8]) -> Result<Vec<u8>, String> {
    let u32_at = |off: usize| -> Result<u32, String> {
        bz.get(off..off + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| "truncated setup header".to_owned())
    };
    if bz.get(0x202..0x206) != Some(b"HdrS") {
        return Err("no HdrS boot-protocol signature".into());
    }
    let setup_sects = match bz.get(0x1f1).copied() {
        Some(0) => 4,
        Some(n) => usize::from(n),
        None => return Err("truncated setup header".into()),
    };
    let offset = (setup_sects + 1) * 512 + u32_at(0x248)? as usize;
    let len = u32_at(0x24c)? as usize;
    let payload = bz
        .get(offset..offset + len)
        .ok_or_else(|| "payload outside the image".to_owned())?;
    let mut elf = Vec::new();
    if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut dec = ruzstd::decoding::StreamingDecoder::new(payload)
            .map_err(|e| format!("zstd payload: {e}"))?;
        dec.read_to_end(&mut elf)
            .map_err(|e| format!("zstd payload: {e}"))?;
    } else if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        lzma_rs::xz_decompress(&mut &payload[..], &mut elf)
            .map_err(|e| format!("xz payload: {e}"))?;
    } else {
        return Err(format!(
            "payload compression {:02x?} is not zstd or xz",
            &payload[..payload.len().min(4)]
        ));
    }
    if !elf.starts_with(b"\x7fELF") {
        return Err("decompressed payload is not an ELF image".into());
    }
    Ok(elf)
}

/// Finds a statically linked guest-init: `A3S_GUEST_INIT`, then beside the running binary,
/// then the static cross-build directory of a cargo target tree
/// (`target/x86_64-unknown-linux-gnu/<profile>/`, what `scripts/build-guest-init` produces).
///
/// # Errors
/// [`AssetError::NoGuestInit`] or [`AssetError::GuestInitNotStatic`].
pub fn locate_guest_init() -> Result<PathBuf, AssetError> {
    let name = "a3s-guest-init";
    if let Some(p) = std::env::var_os(GUEST_INIT_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(AssetError::NoGuestInit { searched: vec![p] });
        }
        return if is_static_elf(&p)? {
            Ok(p)
        } else {
            Err(AssetError::GuestInitNotStatic { path: p })
        };
    }
    let mut searched = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_owned))
    {
        // target/<profile>/a3s-box (or target/<profile>/deps/e2e-* for tests, or
        // target/<profile>/examples/* for the runtime's examples)
        let dir = if dir.ends_with("deps") || dir.ends_with("examples") {
            dir.parent().map(Path::to_owned).unwrap_or(dir)
        } else {
            dir
        };
        searched.push(dir.join(name));
        if let (Some(profile), Some(target)) = (dir.file_name(), dir.parent()) {
            for p in [profile.to_os_string(), "release".into(), "debug".into()] {
                searched.push(target.join("x86_64-unknown-linux-gnu").join(p).join(name));
            }
        }
    }
    for p in &searched {
        if p.is_file() && is_static_elf(p)? {
            return Ok(p.clone());
        }
    }
    Err(AssetError::NoGuestInit { searched })
}

/// True when the ELF file has no `PT_INTERP` program header (no dynamic loader). Reads the
/// ELF header and the program header table only (guest-init is ≈ 8 MB, checked every start).
fn is_static_elf(path: &Path) -> Result<bool, AssetError> {
    use std::io::{Seek, SeekFrom};
    /// Largest program header table read (a real one is a few hundred bytes).
    const MAX_TABLE: u64 = 1 << 20;
    let le = |b: &[u8]| {
        b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    };
    let mut file = fs_err::File::open(path)?;
    let mut header = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut header)?;
    if header.len() < 64 || !header.starts_with(b"\x7fELF") || header[4] != 2 {
        return Ok(false);
    }
    let (phoff, phentsize, phnum) = (
        le(&header[0x20..0x28]),
        le(&header[0x36..0x38]),
        le(&header[0x38..0x3a]),
    );
    let Some(size) = phentsize.checked_mul(phnum).filter(|s| *s <= MAX_TABLE) else {
        return Ok(false);
    };
    if phentsize < 4 {
        return Ok(phnum == 0);
    }
    file.seek(SeekFrom::Start(phoff))?;
    let mut table = Vec::new();
    (&mut file).take(size).read_to_end(&mut table)?;
    if table.len() as u64 != size {
        return Ok(false);
    }
    let entry = usize::try_from(phentsize).unwrap_or(usize::MAX);
    Ok(table.chunks_exact(entry).all(|ph| le(&ph[..4]) != 3))
}

/// How modules are stored in the initrd (part of its key: a change rebuilds cached initrds).
const MODULE_FORMAT: &[u8] =
    b"modules: decompressed, signatures stripped, ftrace call sites and BTF hidden";

/// The base initrd: guest-init plus the given kernel modules.
#[derive(Clone, Debug)]
pub struct BaseInitrd {
    /// The cached archive.
    pub path: PathBuf,
    /// Content key (hash of guest-init, release and modules).
    pub key: String,
}

/// Builds (or finds in `cache`) the base initrd for `kernel` with `guest_init`, `modules` and
/// the host `programs` guest-init runs itself (with their shared libraries and loader, under
/// `/.a3s/tools/`; e.g. `mke2fs` for encrypted writable layers).
///
/// # Errors
/// Missing modules or programs, or i/o.
pub fn base_initrd(
    cache: &Path,
    kernel: &KernelDir,
    guest_init: &Path,
    modules: &[&str],
    programs: &[&Path],
) -> Result<BaseInitrd, AssetError> {
    base_initrd_with(
        cache,
        kernel,
        guest_init,
        modules,
        programs,
        crate::initrd_memo::RACY,
    )
}

/// [`base_initrd`], recording its memo only for inputs unchanged for `racy`.
fn base_initrd_with(
    cache: &Path,
    kernel: &KernelDir,
    guest_init: &Path,
    modules: &[&str],
    programs: &[&Path],
    racy: std::time::Duration,
) -> Result<BaseInitrd, AssetError> {
    let module_list = modules.join(",");
    let library_path = std::env::var_os("LD_LIBRARY_PATH").unwrap_or_default();
    let mut inputs: Vec<&[u8]> = vec![
        MODULE_FORMAT,
        kernel.release.as_bytes(),
        module_list.as_bytes(),
        guest_init.as_os_str().as_encoded_bytes(),
        library_path.as_encoded_bytes(),
    ];
    inputs.extend(programs.iter().map(|p| p.as_os_str().as_encoded_bytes()));
    let memo = crate::initrd_memo::InitrdMemo::new(cache, &inputs);
    let cpio = |key: &str| cache.join("initrd").join(format!("base-{key}.cpio"));
    if let Some(key) = memo.lookup() {
        let path = cpio(&key);
        if path.is_file() {
            return Ok(BaseInitrd { path, key });
        }
    }

    let mut reads = crate::initrd_memo::Reads::default();
    reads.note(guest_init);
    let init = fs_err::read(guest_init)?;
    let mut tools: Vec<(String, Vec<u8>)> = Vec::new();
    if !programs.is_empty() {
        reads.note(Path::new(crate::initrd_memo::LD_CACHE));
    }
    for p in programs {
        for file in program_with_libraries(p)? {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !tools.iter().any(|(n, _)| *n == name) {
                reads.note(&file);
                tools.push((name, fs_err::read(&file)?));
            }
        }
    }
    let mut parts: Vec<&[u8]> = vec![&init, kernel.release.as_bytes(), MODULE_FORMAT];
    parts.push(module_list.as_bytes());
    for (name, bytes) in &tools {
        parts.push(name.as_bytes());
        parts.push(bytes);
    }
    let key = short_hash(&parts);
    let path = cpio(&key);
    if path.is_file() {
        memo.record(&key, reads, racy);
        return Ok(BaseInitrd { path, key });
    }
    let mods = kernel.modules_with_deps(modules)?;
    let mut w = CpioWriter::new(Vec::new());
    w.dir(".a3s", Meta::root(0o700))?;
    w.file(".a3s/init", Meta::root(0o755), &init)?;
    w.dir(".a3s/modules", Meta::root(0o700))?;
    for (i, (name, ko)) in mods.iter().enumerate() {
        w.file(
            &format!(".a3s/modules/{i:02}-{name}.ko"),
            Meta::root(0o600),
            ko,
        )?;
    }
    if !tools.is_empty() {
        w.dir(".a3s/tools", Meta::root(0o700))?;
        for (name, bytes) in &tools {
            w.file(&format!(".a3s/tools/{name}"), Meta::root(0o755), bytes)?;
        }
    }
    write_atomic(&path, &w.finish()?)?;
    memo.record(&key, reads, racy);
    Ok(BaseInitrd { path, key })
}

/// A dynamically linked host program, its shared libraries and its loader (from `ldd`).
fn program_with_libraries(program: &Path) -> Result<Vec<PathBuf>, AssetError> {
    let missing = |reason: String| AssetError::MissingProgram {
        program: program.to_owned(),
        reason,
    };
    if !program.is_file() {
        return Err(missing("not found".into()));
    }
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| missing(format!("running ldd: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut files = vec![program.to_owned()];
    files.extend(parse_ldd(&text).map_err(missing)?);
    Ok(files)
}

/// The library paths in `ldd` output (`name => /path (addr)` and the loader's `/path (addr)`).
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("linux-vdso") || line.is_empty() {
            continue;
        }
        if line.contains("not found") {
            return Err(format!("a library is missing: {line}"));
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.trim(),
            None => line,
        };
        let path = path.split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            out.push(PathBuf::from(path));
        }
    }
    Ok(out)
}

pub(crate) fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `data` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory.
///
/// # Errors
/// i/o, naming the path.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other(format!("{} has no parent", path.display())))?;
    fs_err::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = fs_err::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs_err::rename(&tmp, path)?;
    fs_err::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ldd_output_lists_libraries_and_the_loader() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x7f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libext2fs.so.2"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn mke2fs_comes_with_its_libraries() {
        let files = program_with_libraries(Path::new(crate::disk::MKE2FS_PATH)).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"mke2fs".to_owned()), "{names:?}");
        assert!(
            names.contains(&"ld-linux-x86-64.so.2".to_owned()),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("libext2fs")),
            "{names:?}"
        );
    }

    #[test]
    fn rejects_images_without_a_boot_header() {
        assert!(extract_vmlinux(&[0u8; 4096]).unwrap_err().contains("HdrS"));
    }

    #[test]
    fn reads_module_dependencies_from_modinfo() {
        let ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio-ring\0vermagic=6.12\0";
        assert_eq!(modinfo_depends(ko), vec!["virtio", "virtio_ring"]);
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn missing_kernel_error_names_places_and_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var_os(KERNEL_DIR_ENV).is_some() {
            return; // the override would win; the test is about the fallback list
        }
        let err = KernelDir::locate(&[dir.path().to_owned()]).unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        assert!(err.hint().unwrap().contains("scripts/setup"));
    }

    #[test]
    fn finds_newest_release_under_a_kernels_directory() {
        let dir = tempfile::tempdir().unwrap();
        for r in ["6.1.0-cloud", "6.12.9-cloud"] {
            std::fs::create_dir_all(dir.path().join(r)).unwrap();
            std::fs::write(dir.path().join(r).join("vmlinuz"), b"x").unwrap();
        }
        if std::env::var_os(KERNEL_DIR_ENV).is_some() {
            return;
        }
        let k = KernelDir::locate(&[dir.path().join("absent"), dir.path().to_owned()]).unwrap();
        assert_eq!(k.release, "6.12.9-cloud");
    }

    #[test]
    fn a_second_start_finds_the_base_initrd_through_its_memo_until_an_input_changes() {
        let dir = tempfile::tempdir().unwrap();
        let kernel_dir = dir.path().join("6.12-test");
        std::fs::create_dir_all(kernel_dir.join("modules")).unwrap();
        let kernel = KernelDir::from_dir(kernel_dir);
        let cache = dir.path().join("cache");
        let init = dir.path().join("init");
        std::fs::write(&init, b"guest-init v1").unwrap();
        let mke2fs = Path::new(crate::disk::MKE2FS_PATH);
        let build =
            || base_initrd_with(&cache, &kernel, &init, &[], &[mke2fs], Duration::ZERO).unwrap();
        let first = build();
        let memos = || {
            std::fs::read_dir(cache.join("initrd"))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("memo-"))
                .count()
        };
        assert_eq!(memos(), 1, "the inputs had settled, so the memo is written");
        assert_eq!(build().key, first.key, "the memo names the same initrd");

        // A removed initrd is built again, not trusted from the memo.
        std::fs::remove_file(&first.path).unwrap();
        let again = build();
        assert_eq!(again.key, first.key);
        assert!(again.path.is_file());

        // Guest-init rebuilt: another initrd, with the new guest-init in it.
        std::fs::write(&init, b"guest-init v2").unwrap();
        let second = build();
        assert_ne!(second.key, first.key);
        let cpio = std::fs::read(&second.path).unwrap();
        assert!(cpio.windows(13).any(|w| w == b"guest-init v2"));
        assert_eq!(build().key, second.key);
    }

    #[test]
    fn modules_reach_the_initrd_without_their_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let kernel_dir = dir.path().join("6.12-test");
        let fs_dir = kernel_dir.join("modules/kernel/fs");
        std::fs::create_dir_all(&fs_dir).unwrap();
        let body = b"\x7fELF\0depends=\0the foo module body".to_vec();
        let sig = [0x30u8; 64];
        let mut ko = body.clone();
        ko.extend_from_slice(&sig);
        ko.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 64]);
        ko.extend_from_slice(b"~Module signature appended~\n");
        std::fs::write(fs_dir.join("foo.ko"), &ko).unwrap();
        let init = dir.path().join("init");
        std::fs::write(&init, b"guest-init").unwrap();
        let kernel = KernelDir::from_dir(kernel_dir);
        let cache = dir.path().join("cache");
        let rd = base_initrd_with(&cache, &kernel, &init, &["foo"], &[], Duration::ZERO).unwrap();
        let cpio = std::fs::read(&rd.path).unwrap();
        let has = |needle: &[u8]| cpio.windows(needle.len()).any(|w| w == needle);
        assert!(has(b".a3s/modules/00-foo.ko"));
        assert!(has(&body));
        assert!(!has(b"~Module signature appended~"));
    }

    #[test]
    fn dynamic_binaries_are_not_static() {
        // /bin/sh is dynamically linked on Debian; busybox-static is not.
        assert!(!is_static_elf(Path::new("/bin/sh")).unwrap());
        if Path::new("/bin/busybox").exists() {
            assert!(is_static_elf(Path::new("/bin/busybox")).unwrap());
        }
    }
}
