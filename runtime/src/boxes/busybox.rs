//! The embedded default image: `busybox`, built on this machine from Debian's busybox-static, so
//! `a3s-box run --rm busybox echo hi` works without a registry or internet access.

use std::path::Path;
use std::process::Command;

use a3s_image::{ImageRef, ImageStore, LocalImage, StoreError};

/// Where Debian's `busybox-static` installs the binary.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// True for `busybox` / `busybox:latest` (Docker Hub's library image name, no digest).
pub fn is_default(reference: &ImageRef) -> bool {
    reference.familiar() == "busybox:latest" && reference.digest().is_none()
}

/// Builds the rootfs tarball from the host's static busybox and imports it as `reference`.
///
/// # Errors
/// [`StoreError::Io`] when busybox-static is missing (the message says how to install it) or the
/// tarball cannot be written; import errors.
pub fn import(
    store: &ImageStore,
    reference: &ImageRef,
    cache: &Path,
) -> Result<LocalImage, StoreError> {
    // One importer at a time: each import is a new image (its config carries a creation time),
    // and a second concurrent import would retag the name away from the digest the first
    // caller's box records.
    let dir = cache.join("busybox");
    let _lock = crate::state::lock_file(&dir.join(".lock"))
        .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
    match store.resolve(reference) {
        Err(StoreError::NotFound { .. }) => {}
        found => return found,
    }
    let tar = dir.join(format!("rootfs-{}.tar", std::process::id()));
    write_rootfs_tar(&tar)?;
    let result = store.import_rootfs(&tar, reference);
    let _ = std::fs::remove_file(&tar);
    result
}

/// Writes the busybox rootfs as a reproducible tarball (fixed mtimes and owners, sorted
/// applets), so the layer is the same on every machine.
///
/// # Errors
/// i/o, or busybox-static not installed.
pub fn write_rootfs_tar(path: &Path) -> std::io::Result<()> {
    let binary = fs_err::read(BUSYBOX_BINARY).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("{e} (the default busybox image is built from Debian's busybox-static: apt-get install busybox-static, or run scripts/setup)"),
        )
    })?;
    let list = Command::new(BUSYBOX_BINARY).arg("--list-full").output()?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_owned())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && !l.contains(".."))
        .collect();
    applets.sort();
    applets.dedup();

    let file = fs_err::File::create(path)?;
    let mut b = tar::Builder::new(file);
    let dirs = [
        ("bin", 0o755),
        ("dev", 0o755),
        ("etc", 0o755),
        ("home", 0o755),
        ("proc", 0o555),
        ("root", 0o700),
        ("run", 0o755),
        ("sbin", 0o755),
        ("sys", 0o555),
        ("tmp", 0o1777),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("var", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (d, mode) in dirs {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        b.append_data(&mut h, d, std::io::empty())?;
    }
    let mut h = header(tar::EntryType::Regular, 0o755, binary.len() as u64);
    b.append_data(&mut h, "bin/busybox", binary.as_slice())?;
    for applet in &applets {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut h, applet, "/bin/busybox")?;
    }
    let files: [(&str, &str); 4] = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n"),
        ("etc/os-release", "NAME=\"A3S Box busybox\"\nID=busybox\n"),
    ];
    for (name, text) in files {
        let mut h = header(tar::EntryType::Regular, 0o644, text.len() as u64);
        b.append_data(&mut h, name, text.as_bytes())?;
    }
    b.into_inner()?.sync_all()?;
    Ok(())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_image_names() {
        for r in [
            "busybox",
            "busybox:latest",
            "docker.io/library/busybox:latest",
        ] {
            assert!(is_default(&r.parse().unwrap()), "{r}");
        }
        for r in ["busybox:1.36", "alpine", "example.com/busybox"] {
            assert!(!is_default(&r.parse().unwrap()), "{r}");
        }
    }

    #[test]
    fn busybox_tarball_is_reproducible_and_imports() {
        if !Path::new(BUSYBOX_BINARY).exists() {
            return; // scripts/setup installs busybox-static; nothing to build without it
        }
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        write_rootfs_tar(&a).unwrap();
        write_rootfs_tar(&b).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        let reference: ImageRef = "busybox".parse().unwrap();
        let image = import(&store, &reference, &dir.path().join("cache")).unwrap();
        let rootfs = store.rootfs(&image).unwrap();
        assert!(rootfs.join("bin/busybox").is_file());
        assert_eq!(
            std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(store.resolve(&reference).unwrap().digest, image.digest);
    }
}
