//! SHA-256 digests of boot artefacts (kernel, initrd), hashed once and kept in a private cache,
//! so a TEE start does not re-read some 60 MB it has measured before.
//!
//! # Threat model
//!
//! A cached digest is used only for the very file it was computed from, unchanged:
//!
//! - **Key: the file's identity and change stamps**, read with `fstat` on the descriptor that
//!   would be hashed: device, inode, size, `mtime` and `ctime` in nanoseconds. Any write,
//!   truncation, `mmap` store or replacement (a new inode) changes at least one of them. A
//!   writer can set `mtime` back (`utimensat`), but not `ctime`: the kernel sets it on every
//!   change, including the `utimensat` itself, and only a clock change (root) steers it.
//! - **Racy stamps are not cached.** `ctime` ticks at the kernel's coarse clock, so a file
//!   written again within one tick of being hashed could keep its stamps. A digest is stored
//!   only when the file's `ctime` is at least [`RACY_SECS`] older than the moment hashing
//!   began (git's "racy clean" rule); a newer file is hashed every time until it settles.
//! - **The file must not change while it is hashed**: the stamps are read before and after;
//!   a difference fails the measurement (closed), it is never cached.
//! - **Entries are authenticated**: each carries an HMAC-SHA256 over all its fields under a
//!   random key (`key`, 0600) in the cache directory (`$A3S_HOME/cache/measure`, 0700). An
//!   entry that is edited, truncated, copied from another path or another home, or not owned
//!   by this user with no group/other write access is ignored: the file is hashed again and
//!   the entry rewritten.
//! - **Out of scope**: an attacker running as this user or as root, who could as well replace
//!   the a3s-box binary. With real SEV-SNP the firmware measures what is actually loaded, so a
//!   wrong cached digest could only make attestation fail (the expected value would differ),
//!   never pass; in simulated mode the host's computation is the measurement, which is why
//!   the cache refuses anything it cannot authenticate.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use a3s_vmm::file_id::FileId as Stamp;

use super::TeeError;

/// `off` hashes every artefact on every start (to measure what the cache saves: bench/tee.sh).
pub const CACHE_ENV: &str = "A3S_BOX_MEASURE_CACHE";
/// The cache directory under `A3S_HOME`.
pub const CACHE_DIR: &str = "cache/measure";
/// A file whose `ctime` is younger than this when hashing starts is not cached.
pub const RACY_SECS: u64 = 2;
/// Largest entry read (an entry is a few hundred bytes).
const MAX_ENTRY_BYTES: u64 = 4096;
/// The entry format, part of every MAC.
const FORMAT: &str = "a3s-measure-cache-v1";

/// Whether a digest came from the cache, and if not why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Lookup {
    /// A valid entry for this unchanged file.
    Hit,
    /// No entry yet.
    Miss,
    /// The entry is for a different identity or stamps (the file changed).
    Changed,
    /// The entry failed authentication, did not parse, or had unsafe ownership or mode.
    Refused,
    /// Hashed and not cached: the file changed too recently (see [`RACY_SECS`]).
    Racy,
}

/// The private digest cache of one `A3S_HOME`.
pub struct DigestCache {
    dir: PathBuf,
    key: zeroize::Zeroizing<[u8; 32]>,
    /// [`RACY_SECS`], shorter in tests.
    racy: Duration,
}

impl std::fmt::Debug for DigestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCache")
            .field("dir", &self.dir)
            .field("key", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    path: PathBuf,
    stamp: Stamp,
    sha256: String,
    mac: String,
}

impl DigestCache {
    /// Opens (creating, owner-only) the cache of the home at `home_root`.
    ///
    /// # Errors
    /// [`TeeError::Measure`] when the directory or its key cannot be made or read.
    pub fn open(home_root: &Path) -> Result<Self, TeeError> {
        let dir = home_root.join(CACHE_DIR);
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            TeeError::Measure(format!("{what} {}: {e}", dir.display()))
        };
        crate::home::private_dir(&dir).map_err(|e| fail("creating the digest cache", &e))?;
        let key = load_or_make_key(&dir.join("key")).map_err(|e| fail("the key of", &e))?;
        Ok(Self {
            dir,
            key,
            racy: Duration::from_secs(RACY_SECS),
        })
    }

    /// The SHA-256 of the file at `path` (`what` names it in errors, e.g. "kernel"), read at
    /// most `limit` bytes, and whether the cache supplied it.
    ///
    /// # Errors
    /// [`TeeError::Measure`] when the file cannot be read, is larger than `limit`, or changed
    /// while it was hashed.
    pub fn sha256(
        &self,
        path: &Path,
        what: &str,
        limit: u64,
    ) -> Result<([u8; 32], Lookup), TeeError> {
        let fail = |e: &dyn std::fmt::Display| {
            TeeError::Measure(format!("reading the {what} {}: {e}", path.display()))
        };
        let started = SystemTime::now();
        let mut file = File::open(path).map_err(|e| fail(&e))?;
        let before = Stamp::of_metadata(&file.metadata().map_err(|e| fail(&e))?);
        if before.len > limit {
            return Err(fail(&format_args!(
                "{} bytes is more than the {limit} allowed",
                before.len
            )));
        }
        let entry_path = self.entry_path(path);
        let lookup = match self.read_entry(&entry_path, path) {
            Some(Ok(e)) if e.stamp == before => {
                let mut d = [0u8; 32];
                if hex::decode_to_slice(&e.sha256, &mut d).is_ok() {
                    return Ok((d, Lookup::Hit));
                }
                Lookup::Refused
            }
            Some(Ok(_)) => Lookup::Changed,
            Some(Err(())) => Lookup::Refused,
            None => Lookup::Miss,
        };
        let digest = hash_stream(&mut file, limit).map_err(|e| fail(&e))?;
        let after = Stamp::of_metadata(&file.metadata().map_err(|e| fail(&e))?);
        if after != before {
            return Err(fail(
                &"it changed while it was being measured; start the box again",
            ));
        }
        if !before.settled(started, self.racy) {
            return Ok((digest, Lookup::Racy));
        }
        // A cache that cannot be written costs the next start a re-hash, nothing else.
        let _ = self.write_entry(&entry_path, path, before, &digest);
        Ok((digest, lookup))
    }

    fn entry_path(&self, path: &Path) -> PathBuf {
        let name = Sha256::digest(path.as_os_str().as_encoded_bytes());
        self.dir.join(format!("{}.json", hex::encode(&name[..16])))
    }

    /// `None`: no entry; `Err`: an entry that must not be trusted.
    fn read_entry(&self, entry_path: &Path, path: &Path) -> Option<Result<Entry, ()>> {
        let file = match std::fs::File::open(entry_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(_) => return Some(Err(())),
        };
        let Ok(meta) = file.metadata() else {
            return Some(Err(()));
        };
        if meta.uid() != nix::unistd::geteuid().as_raw() || meta.permissions().mode() & 0o022 != 0 {
            return Some(Err(()));
        }
        let mut text = String::new();
        if file
            .take(MAX_ENTRY_BYTES)
            .read_to_string(&mut text)
            .is_err()
        {
            return Some(Err(()));
        }
        let Ok(entry) = serde_json::from_str::<Entry>(&text) else {
            return Some(Err(()));
        };
        let Ok(tag) = hex::decode(&entry.mac) else {
            return Some(Err(()));
        };
        if entry.path != path {
            return Some(Err(()));
        }
        let mac = self.mac(&entry.path, &entry.stamp, &entry.sha256);
        Some(mac.verify_slice(&tag).map(|()| entry).map_err(|_| ()))
    }

    fn write_entry(
        &self,
        entry_path: &Path,
        path: &Path,
        stamp: Stamp,
        digest: &[u8; 32],
    ) -> std::io::Result<()> {
        let sha256 = hex::encode(digest);
        let mac = hex::encode(self.mac(path, &stamp, &sha256).finalize().into_bytes());
        let entry = Entry {
            path: path.to_owned(),
            stamp,
            sha256,
            mac,
        };
        let bytes = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        write_private_atomic(entry_path, &bytes)
    }

    fn mac(&self, path: &Path, stamp: &Stamp, sha256: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..]).expect("HMAC takes any key size");
        let fields = format!(
            "{FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}\n{sha256}",
            stamp.dev,
            stamp.ino,
            stamp.len,
            stamp.mtime_ns,
            stamp.ctime_ns,
            path.as_os_str().len()
        );
        mac.update(fields.as_bytes());
        mac.update(path.as_os_str().as_encoded_bytes());
        mac
    }
}

fn hash_stream(file: &mut File, limit: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(std::io::Error::other(format!(
                "more than the {limit} bytes allowed"
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// The cache's key: 32 random bytes, made once, owner-only.
fn load_or_make_key(path: &Path) -> std::io::Result<zeroize::Zeroizing<[u8; 32]>> {
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    if let Ok(mut f) = File::open(path) {
        let meta = f.metadata()?;
        let private = meta.uid() == nix::unistd::geteuid().as_raw()
            && meta.permissions().mode() & 0o077 == 0
            && meta.len() == 32;
        if private && f.read_exact(&mut key[..]).is_ok() {
            return Ok(key);
        }
    }
    // Missing, unreadable or exposed: a new key, which voids every entry made under the old.
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key[..]);
    write_private_atomic(path, &key[..])?;
    Ok(key)
}

/// Writes `bytes` to `path` through a 0600 temporary file and a rename.
fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
