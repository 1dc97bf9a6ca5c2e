//! Confidential pods' container images, checked and unpacked here, never on the host.
//!
//! The host sends an image in the [`a3s_vmm::pod_image`] stream; guest-init accepts its
//! manifest only when the manifest's sha256 is on the allow-list of the kernel command line
//! (measured at launch), and each blob only when its sha256 is the manifest's digest for it.
//! A layer is written to a scratch file and hashed before any of it is unpacked, so unverified
//! bytes never reach the container's root. Any failure removes the container's directory.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use a3s_image::oci::{Descriptor, Manifest};
use a3s_image::unpack::{decompress, Unpacker};
use a3s_vmm::pod_image::{
    allowed_images, CONTAINERS_DIR, GUEST_POD_IMAGE_IN, GUEST_POD_MOUNT_IN, GUEST_POD_RM,
    MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES, MAX_POD_MOUNT_BYTES, POD_MOUNT_NAME,
};
use sha2::{Digest as _, Sha256};

/// Runs a pod helper if `args` (argv without argv[0]) names one; returns its exit code.
pub(crate) fn helper(args: &[String]) -> Option<i32> {
    let result = match args {
        [cmd, dir] if cmd == GUEST_POD_IMAGE_IN => image_in(Path::new(dir)),
        [cmd, dir] if cmd == GUEST_POD_RM => {
            container_dir(Path::new(dir)).and_then(|d| remove(&d).map_err(|e| e.to_string()))
        }
        [cmd, dir] if cmd == GUEST_POD_MOUNT_IN => {
            mount_dir(Path::new(dir)).and_then(|d| mount_in(io::stdin().lock(), &d))
        }
        [cmd, ..] if cmd == GUEST_POD_IMAGE_IN || cmd == GUEST_POD_RM => {
            Err(format!("usage: {cmd} {CONTAINERS_DIR}/ID"))
        }
        [cmd, ..] if cmd == GUEST_POD_MOUNT_IN => {
            Err(format!("usage: {cmd} {CONTAINERS_DIR}/ID/mounts/N"))
        }
        _ => return None,
    };
    Some(match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    })
}

fn image_in(dir: &Path) -> Result<(), String> {
    let dir = container_dir(dir)?;
    let cmdline =
        fs::read_to_string("/proc/cmdline").map_err(|e| format!("reading /proc/cmdline: {e}"))?;
    let allowed = allowed_images(&cmdline).ok_or(
        "this VM was not booted with an image allow-list (a3s.pod_images): it is not a \
         confidential pod, and verified images are only for those",
    )?;
    fs::create_dir_all(CONTAINERS_DIR).map_err(|e| format!("creating {CONTAINERS_DIR}: {e}"))?;
    receive(io::stdin().lock(), &allowed, &dir).map(drop)
}

/// `/containers/ID/mounts/N` of an existing container directory, or why not.
fn mount_dir(dir: &Path) -> Result<PathBuf, String> {
    let bad = || {
        format!(
            "{} is not a mount copy ({CONTAINERS_DIR}/ID/mounts/N)",
            dir.display()
        )
    };
    let parts: Vec<Component<'_>> = dir
        .strip_prefix(CONTAINERS_DIR)
        .map_err(|_| bad())?
        .components()
        .collect();
    let [Component::Normal(id), Component::Normal(mounts), Component::Normal(n)] = parts[..] else {
        return Err(bad());
    };
    let numeric = n
        .to_str()
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if mounts != "mounts" || !numeric {
        return Err(bad());
    }
    let container = Path::new(CONTAINERS_DIR).join(id);
    if !container.is_dir() {
        return Err(format!(
            "container directory {} does not exist: its image comes first",
            container.display()
        ));
    }
    Ok(dir.to_owned())
}

/// A reader that fails once more than `left` bytes came through, and says so in `over`
/// (the tar crate's error for it names only the entry).
struct Limited<'a, R> {
    inner: R,
    left: u64,
    over: &'a std::cell::Cell<bool>,
}

impl<R: Read> Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match self.left.checked_sub(n as u64) {
            Some(left) => self.left = left,
            None => {
                self.over.set(true);
                return Err(io::Error::other("over the size limit"));
            }
        }
        Ok(n)
    }
}

/// Receives one mount's copy (a `cp` stream) at `dir`, replacing an earlier one.
fn mount_in(input: impl Read, dir: &Path) -> Result<(), String> {
    let parent = dir.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    remove(dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    let over = std::cell::Cell::new(false);
    // Tar headers and padding on top of the files' bytes: 4 MiB.
    let input = Limited {
        inner: input,
        left: MAX_POD_MOUNT_BYTES + (4 << 20),
        over: &over,
    };
    a3s_vmm::copy::unpack(input, POD_MOUNT_NAME, dir, false)
        .map(drop)
        .map_err(|e| {
            let _ = remove(dir);
            if over.get() {
                format!(
                    "the copy for {} is larger than {MAX_POD_MOUNT_BYTES} bytes of files",
                    dir.display()
                )
            } else {
                format!("receiving the copy of {}: {e}", dir.display())
            }
        })
}

/// `/containers/NAME` with NAME a plain file name, or why not.
fn container_dir(dir: &Path) -> Result<PathBuf, String> {
    let mut parts = dir.strip_prefix(CONTAINERS_DIR).ok().map(Path::components);
    match (
        parts.as_mut().and_then(Iterator::next),
        parts.and_then(|mut p| p.next()),
    ) {
        (Some(Component::Normal(_)), None) => Ok(dir.to_owned()),
        _ => Err(format!(
            "{} is not a container directory ({CONTAINERS_DIR}/ID)",
            dir.display()
        )),
    }
}

fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// What was received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Received {
    /// The manifest's digest (`sha256:<hex>`).
    pub(crate) manifest: String,
    /// Layers unpacked.
    pub(crate) layers: usize,
}

/// Reads one image stream from `input`, checks it against `allowed` and unpacks it at
/// `dir/rootfs` (`dir` must not exist; it is removed again on any failure).
pub(crate) fn receive<R: Read>(
    input: R,
    allowed: &[String],
    dir: &Path,
) -> Result<Received, String> {
    fs::create_dir(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let result = receive_into(input, allowed, dir);
    if result.is_err() {
        let _ = remove(dir);
    }
    result
}

fn receive_into<R: Read>(mut input: R, allowed: &[String], dir: &Path) -> Result<Received, String> {
    let mut len = [0u8; 8];
    input
        .read_exact(&mut len)
        .map_err(|e| format!("reading the manifest length: {e}"))?;
    let len = u64::from_be_bytes(len);
    if len > MAX_MANIFEST_BYTES {
        return Err(format!(
            "the manifest is {len} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
        ));
    }
    let manifest = read_exact(&mut input, len, "the manifest")?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
    if !allowed.contains(&digest) {
        return Err(format!(
            "image manifest {digest} is not on this pod's measured allow-list \
             (io.a3s.box/images); refusing it"
        ));
    }
    let parsed: Manifest = serde_json::from_slice(&manifest)
        .map_err(|e| format!("manifest {digest} is not an image manifest: {e}"))?;
    if parsed.config.size > MAX_CONFIG_BYTES {
        return Err(format!(
            "the image config is {} bytes, over the {MAX_CONFIG_BYTES}-byte limit",
            parsed.config.size
        ));
    }
    let config = read_exact(&mut input, parsed.config.size, "the image config")?;
    check_digest(&parsed.config, &Sha256::digest(&config), "the image config")?;
    let rootfs = dir.join("rootfs");
    fs::create_dir(&rootfs).map_err(|e| format!("creating {}: {e}", rootfs.display()))?;
    let mut unpacker = Unpacker::new(&rootfs);
    let scratch = dir.join("layer.partial");
    for (i, layer) in parsed.layers.iter().enumerate() {
        let what = format!("layer {i} ({})", layer.digest);
        let hash = spool(&mut input, layer.size, &scratch, &what)?;
        check_digest(layer, &hash, &what)?;
        let file = File::open(&scratch).map_err(|e| format!("{what}: {e}"))?;
        let tar = decompress(BufReader::new(file)).map_err(|e| format!("{what}: {e}"))?;
        unpacker
            .apply(tar)
            .map_err(|e| format!("unpacking {what}: {}", chain(&e)))?;
        fs::remove_file(&scratch).map_err(|e| format!("{what}: {e}"))?;
    }
    unpacker
        .finish()
        .map_err(|e| format!("finishing the root: {}", chain(&e)))?;
    Ok(Received {
        manifest: digest,
        layers: parsed.layers.len(),
    })
}

fn read_exact<R: Read>(input: &mut R, len: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    input
        .take(len)
        .read_to_end(&mut buf)
        .map_err(|e| format!("reading {what}: {e}"))?;
    if buf.len() as u64 != len {
        return Err(format!("{what} ended after {} of {len} bytes", buf.len()));
    }
    Ok(buf)
}

/// Copies exactly `len` bytes of `input` to `path`, returning their sha256.
fn spool<R: Read>(input: &mut R, len: u64, path: &Path, what: &str) -> Result<[u8; 32], String> {
    let mut out = File::create(path).map_err(|e| format!("{what}: {e}"))?;
    let mut hasher = Sha256::new();
    let mut left = len;
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = input
            .read(&mut buf[..want])
            .map_err(|e| format!("reading {what}: {e}"))?;
        if n == 0 {
            return Err(format!("{what} ended after {} of {len} bytes", len - left));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("{what}: {e}"))?;
        left -= n as u64;
    }
    Ok(hasher.finalize().into())
}

fn check_digest(d: &Descriptor, hash: &[u8], what: &str) -> Result<(), String> {
    let actual = format!("sha256:{}", hex::encode(hash));
    if d.digest.as_str() == actual {
        Ok(())
    } else {
        Err(format!(
            "{what}: its content hashes to {actual}, not the manifest's {}; refusing the image",
            d.digest
        ))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        msg.push_str(&format!(": {c}"));
        cur = c.source();
    }
    msg
}

#[cfg(test)]
mod tests;
