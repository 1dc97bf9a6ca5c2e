//! Sealed-data envelope (AES-256-GCM, versioned header as AAD) keyed by a TEE-derived key.
//!
//! # Envelope format, version 1
//!
//! All integers are little-endian.
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0x00 | 7 | magic `b"A3SSEAL"` |
//! | 0x07 | 1 | format version, `1` |
//! | 0x08 | 1 | ROOT_KEY_SELECT: `0` VCEK, `1` VMRK |
//! | 0x09 | 8 | GUEST_FIELD_SELECT (bits 63:7 must be zero) |
//! | 0x11 | 4 | GUEST_SVN mixed into the key |
//! | 0x15 | 8 | TCB_VERSION mixed into the key |
//! | 0x1D | 12 | random 96-bit AES-GCM nonce, fresh for every envelope |
//! | 0x29 | n + 16 | AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag |
//!
//! The header is everything before the ciphertext (0x29 = [`HEADER_LEN`] bytes) and the
//! **whole header is the AES-GCM additional authenticated data**, so no header byte can change
//! without the tag failing. The key-derivation fields (0x08..0x1D) are the [`KeyParams`] the
//! key is derived with again when unsealing; the key itself is never stored.
//!
//! Parsing fails closed: an unknown magic, version, root key or field-select bit is an error
//! of its own ([`UnsealError`]), never skipped. Every failure of the tag (wrong key, a changed
//! byte, truncation past the header) is the single [`UnsealError::Authentication`], so the
//! caller cannot tell them apart (and neither can an attacker).
//!
//! # Keys
//!
//! Keys come from a [`SealingKeySource`]: [`AttesterKeySource`] asks the SEV-SNP secure
//! processor (or the simulator behind the same [`Attester`] trait) for a derived key
//! (MSG_KEY_REQ at VMPL 0); [`StaticKey`] wraps a key obtained elsewhere. Keys live in
//! [`Zeroizing`] buffers and are wiped when dropped; their `Debug` prints `[redacted]`.

use std::fmt;

use a3s_attestation::hw::{Attester, HwError};
use a3s_attestation::key_request::{KeyRequest, KeySelect};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

pub use a3s_attestation::key_request::{GuestFieldSelect, RootKey};
pub use a3s_attestation::report::TcbVersion;

/// The envelope magic (offset 0x00).
pub const MAGIC: [u8; 7] = *b"A3SSEAL";
/// The envelope format version this crate writes and reads (offset 0x07).
pub const VERSION: u8 = 1;
/// The AES-GCM nonce length (96 bits).
pub const NONCE_LEN: usize = 12;
/// The AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// The header length: everything before the ciphertext, all of it authenticated.
pub const HEADER_LEN: usize = NONCE_OFFSET + NONCE_LEN;

const VERSION_OFFSET: usize = 0x07;
const ROOT_KEY_OFFSET: usize = 0x08;
const FIELD_SELECT_OFFSET: usize = 0x09;
const GUEST_SVN_OFFSET: usize = 0x11;
const TCB_VERSION_OFFSET: usize = 0x15;
const NONCE_OFFSET: usize = 0x1D;

/// The key-derivation parameters stored in the envelope header: which root key and which
/// guest fields the sealing key is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyParams {
    /// ROOT_KEY_SELECT: the chip's VCEK or the guest's VMRK.
    pub root_key: RootKey,
    /// GUEST_FIELD_SELECT: the guest fields mixed into the key.
    pub field_select: GuestFieldSelect,
    /// GUEST_SVN mixed in when selected (at most the guest's).
    pub guest_svn: u32,
    /// TCB_VERSION mixed in when selected (at most the committed TCB).
    pub tcb_version: TcbVersion,
}

impl KeyParams {
    /// A VCEK-rooted key bound to `field_select`, with SVN and TCB version zero.
    pub fn new(field_select: GuestFieldSelect) -> Self {
        Self {
            root_key: RootKey::Vcek,
            field_select,
            guest_svn: 0,
            tcb_version: TcbVersion(0),
        }
    }

    /// The MSG_KEY_REQ for these parameters, at VMPL 0 with the default KEY_SEL and no
    /// launch mitigation vector.
    pub fn key_request(&self) -> KeyRequest {
        KeyRequest {
            root_key: self.root_key,
            key_select: KeySelect::Default,
            field_select: self.field_select,
            vmpl: 0,
            guest_svn: self.guest_svn,
            tcb_version: self.tcb_version,
            launch_mit_vector: 0,
        }
    }
}

/// Where sealing keys come from.
pub trait SealingKeySource {
    /// The 256-bit key for `params`; the same parameters in the same TEE give the same key.
    ///
    /// # Errors
    /// [`KeyError`] when the key cannot be derived (e.g. the TEE refuses the request).
    fn derive(&self, params: &KeyParams) -> Result<Zeroizing<[u8; 32]>, KeyError>;
}

/// A sealing key could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The TEE (or simulator) refused or could not be reached.
    #[error("deriving the sealing key")]
    Hardware(#[source] HwError),
}

/// Sealing keys derived by the secure processor through an [`Attester`] (hardware or
/// simulator), as MSG_KEY_REQ at VMPL 0.
pub struct AttesterKeySource<A> {
    attester: A,
}

impl<A: Attester> AttesterKeySource<A> {
    /// Keys derived through `attester`.
    pub fn new(attester: A) -> Self {
        Self { attester }
    }
}

impl<A> fmt::Debug for AttesterKeySource<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttesterKeySource").finish_non_exhaustive()
    }
}

impl<A: Attester> SealingKeySource for AttesterKeySource<A> {
    fn derive(&self, params: &KeyParams) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        self.attester
            .derived_key(&params.key_request())
            .map(Zeroizing::new)
            .map_err(KeyError::Hardware)
    }
}

/// A fixed 256-bit key (e.g. one released by a key broker), the same for every [`KeyParams`].
/// Wiped on drop; `Debug` prints `[redacted]`.
pub struct StaticKey(Zeroizing<[u8; 32]>);

impl StaticKey {
    /// Wraps `key`.
    pub fn new(key: Zeroizing<[u8; 32]>) -> Self {
        Self(key)
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticKey([redacted])")
    }
}

impl SealingKeySource for StaticKey {
    fn derive(&self, _params: &KeyParams) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        Ok(self.0.clone())
    }
}

/// Sealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key could not be derived.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The system random number generator failed to produce a nonce.
    #[error("generating the nonce")]
    Random(#[source] rand_core::Error),
    /// The plaintext is longer than AES-GCM can encrypt under one nonce.
    #[error("the plaintext is too long to seal")]
    TooLong,
}

/// Unsealing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsealError {
    /// The envelope ends inside the header.
    #[error("the envelope is {0} bytes long, shorter than its {HEADER_LEN}-byte header")]
    Truncated(usize),
    /// The envelope does not start with [`MAGIC`].
    #[error("not a sealed envelope (wrong magic)")]
    Magic,
    /// The format version is not [`VERSION`].
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// ROOT_KEY_SELECT is neither 0 nor 1.
    #[error("unknown root key select {0}")]
    RootKey(u8),
    /// GUEST_FIELD_SELECT has reserved bits set.
    #[error("guest field select {0:#x} has reserved bits set")]
    FieldSelect(u64),
    /// The key could not be derived.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The tag did not verify: wrong key, modified envelope, or truncated ciphertext.
    #[error("the envelope failed authentication")]
    Authentication,
}

/// Seals `plaintext` under the key `source` derives for `params`, with a fresh random nonce.
///
/// # Errors
/// [`SealError`] when the key or the nonce cannot be obtained.
pub fn seal(
    source: &dyn SealingKeySource,
    params: &KeyParams,
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng
        .try_fill_bytes(&mut nonce)
        .map_err(SealError::Random)?;
    seal_with_nonce(source, params, nonce, plaintext)
}

/// [`seal`] with a caller-chosen nonce. Reusing a nonce under one key breaks AES-GCM: this
/// exists for golden-vector tests only.
///
/// # Errors
/// As [`seal`].
#[doc(hidden)]
pub fn seal_with_nonce(
    source: &dyn SealingKeySource,
    params: &KeyParams,
    nonce: [u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let key = source.derive(params)?;
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let mut envelope = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    envelope.extend_from_slice(&encode_header(params, &nonce));
    envelope.extend_from_slice(plaintext);
    let (header, body) = envelope.split_at_mut(HEADER_LEN);
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(nonce), header, body)
        .map_err(|_| SealError::TooLong)?;
    envelope.extend_from_slice(&tag);
    Ok(envelope)
}

/// Unseals `envelope`, deriving the key from `source` with the parameters in its header.
///
/// # Errors
/// [`UnsealError::Authentication`] for any tag failure; other variants for a malformed header
/// or a key that cannot be derived.
pub fn unseal(
    source: &dyn SealingKeySource,
    envelope: &[u8],
) -> Result<Zeroizing<Vec<u8>>, UnsealError> {
    let (params, nonce) = decode_header(envelope)?;
    let Some((header, rest)) = envelope.split_at_checked(HEADER_LEN) else {
        return Err(UnsealError::Truncated(envelope.len()));
    };
    let Some((ciphertext, tag)) = rest.split_last_chunk::<TAG_LEN>() else {
        return Err(UnsealError::Authentication);
    };
    let key = source.derive(&params)?;
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let mut plaintext = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(
            &Nonce::from(nonce),
            header,
            plaintext.as_mut_slice(),
            &Tag::from(*tag),
        )
        .map_err(|_| UnsealError::Authentication)?;
    Ok(plaintext)
}

/// Reads the key parameters a sealed envelope was made with, checking its header.
///
/// # Errors
/// The header variants of [`UnsealError`].
pub fn envelope_params(envelope: &[u8]) -> Result<KeyParams, UnsealError> {
    decode_header(envelope).map(|(params, _)| params)
}

fn encode_header(params: &KeyParams, nonce: &[u8; NONCE_LEN]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..VERSION_OFFSET].copy_from_slice(&MAGIC);
    h[VERSION_OFFSET] = VERSION;
    h[ROOT_KEY_OFFSET] = match params.root_key {
        RootKey::Vcek => 0,
        RootKey::Vmrk => 1,
    };
    h[FIELD_SELECT_OFFSET..GUEST_SVN_OFFSET]
        .copy_from_slice(&params.field_select.raw().to_le_bytes());
    h[GUEST_SVN_OFFSET..TCB_VERSION_OFFSET].copy_from_slice(&params.guest_svn.to_le_bytes());
    h[TCB_VERSION_OFFSET..NONCE_OFFSET].copy_from_slice(&params.tcb_version.0.to_le_bytes());
    h[NONCE_OFFSET..].copy_from_slice(nonce);
    h
}

fn decode_header(envelope: &[u8]) -> Result<(KeyParams, [u8; NONCE_LEN]), UnsealError> {
    let Some(h) = envelope.first_chunk::<HEADER_LEN>() else {
        return Err(UnsealError::Truncated(envelope.len()));
    };
    if h[..VERSION_OFFSET] != MAGIC {
        return Err(UnsealError::Magic);
    }
    if h[VERSION_OFFSET] != VERSION {
        return Err(UnsealError::Version(h[VERSION_OFFSET]));
    }
    let root_key = match h[ROOT_KEY_OFFSET] {
        0 => RootKey::Vcek,
        1 => RootKey::Vmrk,
        other => return Err(UnsealError::RootKey(other)),
    };
    let mut u64_bytes = [0u8; 8];
    u64_bytes.copy_from_slice(&h[FIELD_SELECT_OFFSET..GUEST_SVN_OFFSET]);
    let raw_select = u64::from_le_bytes(u64_bytes);
    let field_select =
        GuestFieldSelect::new(raw_select).map_err(|_| UnsealError::FieldSelect(raw_select))?;
    let mut u32_bytes = [0u8; 4];
    u32_bytes.copy_from_slice(&h[GUEST_SVN_OFFSET..TCB_VERSION_OFFSET]);
    let guest_svn = u32::from_le_bytes(u32_bytes);
    u64_bytes.copy_from_slice(&h[TCB_VERSION_OFFSET..NONCE_OFFSET]);
    let tcb_version = TcbVersion(u64::from_le_bytes(u64_bytes));
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&h[NONCE_OFFSET..]);
    Ok((
        KeyParams {
            root_key,
            field_select,
            guest_svn,
            tcb_version,
        },
        nonce,
    ))
}

#[cfg(test)]
mod tests;
