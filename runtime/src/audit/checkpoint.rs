//! Signed checkpoints: an anchor for the log kept somewhere an attacker on this host cannot
//! rewrite, so that cutting or deleting the log (and `head.json` with it) is detected.
//!
//! A checkpoint is a C2SP `tlog-checkpoint` in the C2SP `signed-note` form:
//!
//! ```text
//! a3s-box/audit            origin (also the key name)
//! 1500                     tree size: entries covered (seq 1..=1500)
//! <base64 Merkle root>     RFC 6962 tree over the entries' 32-byte hashes
//!
//! — a3s-box/audit <base64(key id(4) ‖ Ed25519 signature(64))>
//! ```
//!
//! The key id is the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key); the signature
//! covers the text above the blank line, final newline included. The signing key is an Ed25519
//! seed in `A3S_HOME/auth/audit-checkpoint.key` (0600). The last checkpoint written is also kept
//! in the audit directory, and the writer refuses to extend a log shorter than it.
//!
//! What it protects against: anyone who can delete or cut the log after a checkpoint was taken
//! and stored off the host, even with root, is detected by `audit verify --checkpoint FILE`
//! (fewer entries, or another tree). What it does not: entries written after the newest
//! checkpoint that was stored elsewhere can still be cut by someone who can also delete
//! `head.json`; someone who holds the signing key (root on this host) can sign a checkpoint of
//! a rewritten log, so only checkpoints taken before the compromise and kept elsewhere count;
//! and a checkpoint says nothing about events that were never written.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::files;
use super::log::{sync_dir, AuditError, AuditLog};
use super::verify::ChainError;

/// The origin line and key name of our checkpoints.
pub const ORIGIN: &str = "a3s-box/audit";
/// The copy of the newest checkpoint inside the audit directory.
pub(crate) const LAST: &str = "checkpoint";
/// A checkpoint note is a few hundred bytes; anything past this is not one.
pub const MAX_CHECKPOINT_BYTES: u64 = 4096;
/// A key file holds 64 hex digits and a newline.
const MAX_KEY_BYTES: u64 = 128;
/// C2SP signed-note signature type of Ed25519.
const ED25519: u8 = 0x01;

/// A checkpoint that verified against the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckpointSummary {
    /// Entries the checkpoint covers.
    pub size: u64,
    /// Its Merkle root, base64.
    pub root: String,
    /// Entries the log holds now (at least `size`).
    pub entries: u64,
}

/// A checkpoint is unreadable, unsigned by our key, or not a prefix of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// Not a checkpoint note in the expected form.
    #[error("not an a3s-box audit checkpoint: {0}")]
    Malformed(String),
    /// The file exceeds [`MAX_CHECKPOINT_BYTES`].
    #[error("{path} exceeds {MAX_CHECKPOINT_BYTES} bytes: not a checkpoint")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// No valid signature by this home's checkpoint key.
    #[error("the checkpoint is not signed by this home's checkpoint key ({key})")]
    BadSignature {
        /// The public key file used.
        key: PathBuf,
    },
    /// The log holds fewer entries than the checkpoint covers.
    #[error(
        "the log holds {entries} entries but the checkpoint covers {size}: entries were removed \
         (the log was cut or deleted)"
    )]
    Truncated {
        /// Entries in the log.
        entries: u64,
        /// Entries covered.
        size: u64,
    },
    /// The first `size` entries are not the ones the checkpoint signed.
    #[error(
        "the first {size} entries do not have the checkpoint's Merkle root: the log was rewritten"
    )]
    RootMismatch {
        /// Entries covered.
        size: u64,
    },
    /// The checkpoint key file is readable by others, unreadable or malformed.
    #[error("checkpoint key {path}: {why}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// The log's own chain is broken.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Reading or writing files failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The Ed25519 key that signs this home's checkpoints.
pub struct CheckpointKey {
    key: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("path", &self.path)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CheckpointKey {
    /// Loads the key at `path`, creating it (0600) when `create` and it is missing.
    ///
    /// # Errors
    /// [`CheckpointError::Key`] when it is missing (and not created), readable by other users,
    /// too long or not 64 hex digits.
    pub fn load(path: &Path, create: bool) -> Result<Self, CheckpointError> {
        let err = |why: String| CheckpointError::Key {
            path: path.to_owned(),
            why,
        };
        let file =
            match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound && create => return Self::create(path),
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(err(
                    "missing: it is created by `a3s-box audit checkpoint`; a deleted key means \
                     this home can no longer vouch for its old checkpoints"
                        .into(),
                )),
                Err(e) => return Err(err(format!("cannot open: {e}"))),
            };
        let mode = file
            .metadata()
            .map_err(|e| err(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "mode {:04o} lets other users read it. Fix: chmod 600 {}",
                mode & 0o7777,
                path.display()
            )));
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_KEY_BYTES {
            return Err(err(format!(
                "longer than {MAX_KEY_BYTES} bytes: not a key file"
            )));
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut())
            .map_err(|_| err("not 64 hex digits".into()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            path: path.to_owned(),
        })
    }

    fn create(path: &Path) -> Result<Self, CheckpointError> {
        let err = |e: std::io::Error| CheckpointError::Key {
            path: path.to_owned(),
            why: format!("cannot create: {e}"),
        };
        if let Some(dir) = path.parent() {
            crate::home::private_dir(dir).map_err(err)?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(seed.as_mut());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(seed.as_ref())));
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
            path: path.to_owned(),
        })
    }

    fn key_id(&self) -> [u8; 4] {
        key_id(&self.key.verifying_key())
    }
}

fn key_id(public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(ORIGIN.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// RFC 6962 Merkle tree hash over `leaves` (each an entry's 32-byte hash).
pub(crate) fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest([]).into(),
        [leaf] => {
            let mut h = Sha256::new();
            h.update([0x00]);
            h.update(leaf);
            h.finalize().into()
        }
        _ => {
            // The largest power of two smaller than the number of leaves.
            let k = 1usize << (usize::BITS - 1 - (leaves.len() - 1).leading_zeros());
            let mut h = Sha256::new();
            h.update([0x01]);
            h.update(merkle_root(&leaves[..k]));
            h.update(merkle_root(&leaves[k..]));
            h.finalize().into()
        }
    }
}

/// A parsed checkpoint note (signature not yet checked).
struct Note<'a> {
    body: &'a str,
    size: u64,
    root: [u8; 32],
    signatures: Vec<(&'a str, Vec<u8>)>,
}

fn parse(text: &str) -> Result<Note<'_>, CheckpointError> {
    let bad = |why: &str| CheckpointError::Malformed(why.to_owned());
    let split = text
        .find("\n\n")
        .ok_or_else(|| bad("no blank line between the body and the signatures"))?;
    let body = &text[..=split];
    let mut lines = body.lines();
    if lines.next() != Some(ORIGIN) {
        return Err(bad(&format!("the first line is not the origin {ORIGIN:?}")));
    }
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| bad("the second line is not a tree size"))?;
    let root = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
        .ok_or_else(|| bad("the third line is not a base64 SHA-256 root"))?;
    let mut signatures = Vec::new();
    for line in text[split + 2..].lines() {
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("a signature line does not start with an em dash"))?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or_else(|| bad("a signature line has no signature"))?;
        let sig = STANDARD
            .decode(sig)
            .map_err(|_| bad("a signature is not base64"))?;
        signatures.push((name, sig));
    }
    Ok(Note {
        body,
        size,
        root,
        signatures,
    })
}

impl AuditLog {
    /// Verifies the chain and returns a signed checkpoint of it (the text of the note), also
    /// keeping a copy in the audit directory that the writer checks before every write.
    ///
    /// # Errors
    /// A broken chain, key and file errors.
    pub fn checkpoint(&self, key: &CheckpointKey) -> Result<String, CheckpointError> {
        let _lock = self.lock()?;
        self.verify()?;
        let leaves = self.leaf_hashes()?;
        let root = merkle_root(&leaves);
        let body = format!("{ORIGIN}\n{}\n{}\n", leaves.len(), STANDARD.encode(root));
        let signature: Signature = key.key.sign(body.as_bytes());
        let mut blob = key.key_id().to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        let note = format!("{body}\n\u{2014} {ORIGIN} {}\n", STANDARD.encode(blob));
        self.keep_last(&note)?;
        Ok(note)
    }

    /// Checks that the log still holds every entry `checkpoint` (a note read from a file)
    /// covers, unchanged, and that `key` signed it.
    ///
    /// # Errors
    /// [`CheckpointError`] naming what is wrong.
    pub fn verify_checkpoint(
        &self,
        checkpoint: &str,
        key: &CheckpointKey,
    ) -> Result<CheckpointSummary, CheckpointError> {
        let note = parse(checkpoint)?;
        let public = key.key.verifying_key();
        let id = key_id(&public);
        let signed = note.signatures.iter().any(|(name, blob)| {
            *name == ORIGIN
                && blob.len() == 4 + 64
                && blob[..4] == id
                && Signature::from_slice(&blob[4..])
                    .is_ok_and(|s| public.verify(note.body.as_bytes(), &s).is_ok())
        });
        if !signed {
            return Err(CheckpointError::BadSignature {
                key: key.path.clone(),
            });
        }
        let leaves = self.leaf_hashes()?;
        let entries = leaves.len() as u64;
        let size = usize::try_from(note.size).map_err(|_| CheckpointError::Truncated {
            entries,
            size: note.size,
        })?;
        if size > leaves.len() {
            return Err(CheckpointError::Truncated {
                entries,
                size: note.size,
            });
        }
        if merkle_root(&leaves[..size]) != note.root {
            return Err(CheckpointError::RootMismatch { size: note.size });
        }
        self.verify()?;
        Ok(CheckpointSummary {
            size: note.size,
            root: STANDARD.encode(note.root),
            entries,
        })
    }

    /// The 32-byte hash of every entry, oldest first (the chain is checked by `verify`).
    fn leaf_hashes(&self) -> Result<Vec<[u8; 32]>, CheckpointError> {
        let mut leaves = Vec::new();
        for path in files::log_files(self.dir()).map_err(AuditError::from)? {
            files::for_each_line(&path, |line_no, line| {
                let hash = files::split_hash(line)
                    .and_then(|(_, h)| {
                        let mut out = [0u8; 32];
                        hex::decode_to_slice(h, &mut out).ok().map(|()| out)
                    })
                    .ok_or_else(|| ChainError::Malformed {
                        path: path.clone(),
                        line: line_no,
                    })?;
                leaves.push(hash);
                Ok(())
            })?;
        }
        Ok(leaves)
    }

    fn keep_last(&self, note: &str) -> Result<(), AuditError> {
        let tmp = self.dir().join(format!("{LAST}.tmp"));
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(note.as_bytes())?;
        f.sync_data()?;
        drop(f);
        fs_err::rename(&tmp, self.dir().join(LAST))?;
        sync_dir(self.dir())?;
        Ok(())
    }
}

/// The tree size of the last checkpoint kept in `dir`, if any (its signature is checked by
/// `verify --checkpoint`; here it only stops the writer from dropping covered lines).
///
/// # Errors
/// [`AuditError::CorruptTip`] when the file is there but is not a checkpoint.
pub(crate) fn committed_size(dir: &Path) -> Result<Option<u64>, AuditError> {
    let path = dir.join(LAST);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AuditError::Io(e)),
    };
    let mut text = String::new();
    file.take(MAX_CHECKPOINT_BYTES)
        .read_to_string(&mut text)
        .map_err(|_| AuditError::CorruptTip { path: path.clone() })?;
    parse(&text)
        .map(|n| Some(n.size))
        .map_err(|_| AuditError::CorruptTip { path })
}

/// Reads a checkpoint file given on the command line, bounded.
///
/// # Errors
/// [`CheckpointError::TooLarge`], I/O errors.
pub fn read_checkpoint(path: &Path) -> Result<String, CheckpointError> {
    let file = fs_err::File::open(path).map_err(AuditError::from)?;
    let mut text = String::new();
    file.take(MAX_CHECKPOINT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| CheckpointError::Malformed(format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err(CheckpointError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(text)
}
