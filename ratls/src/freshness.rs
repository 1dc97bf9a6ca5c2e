//! Freshness: binding evidence to one TLS connection.
//!
//! Certificate evidence alone says "this key was born in a TEE with measurement M"; anyone who
//! copies the certificate *and* key (or a relay) could replay it. So after the TLS 1.3
//! handshake:
//!
//! 1. both sides compute `exporter = TLS-Exporter(EXPORTER_LABEL, no context, 32)` (RFC 8446
//!    §7.5), a value unique to this connection's keys;
//! 2. the verifier sends a random 32-byte nonce ([`Message::Challenge`]);
//! 3. the attested side asks its TEE for a **fresh** report with claims
//!    `{"nonce": SHA-256(exporter ‖ nonce), "pubkey-hash": <its certificate key>}` and sends
//!    the evidence ([`Message::Evidence`]);
//! 4. the verifier checks it like the certificate's (see [`crate::verifier`]) and that the
//!    nonce claim is [`binding`]`(exporter, nonce)`.
//!
//! A report replayed from another connection carries another exporter's binding; a report
//! reused with recomputed claims fails REPORT_DATA. A side that does not verify its peer sends
//! [`Message::Skip`] instead of a challenge, and a side asked to attest that cannot answers
//! [`Message::Skip`] too (which the verifier treats as a refusal).
//!
//! # Framing
//!
//! | offset | size | field |
//! |--------|------|-------|
//! | 0 | 1 | type: `0x01` challenge, `0x02` skip, `0x03` evidence |
//! | 1 | 4 | payload length, big-endian (32 for a challenge, 0 for skip, at most [`MAX_EVIDENCE_LEN`]) |
//! | 5 | n | payload |
//!
//! Order: the client's message (challenge or skip) first and the server's answer; then the
//! server's message and the client's answer.

use a3s_attestation::hw::Attester;
use ring::digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cert::{Identity, REPORT_VMPL};
use crate::evidence::{Claims, Evidence};

/// The exporter label.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-a3s-box-ra-binding";
/// Length of the exporter value.
pub const EXPORTER_LEN: usize = 32;
/// Length of a verifier nonce.
pub const NONCE_LEN: usize = 32;
/// Longest evidence message accepted.
pub const MAX_EVIDENCE_LEN: usize = 16 * 1024;

const CHALLENGE: u8 = 0x01;
const SKIP: u8 = 0x02;
const EVIDENCE: u8 = 0x03;

/// The claims nonce that answers `nonce` on the connection with `exporter`:
/// `SHA-256(exporter ‖ nonce)`.
pub fn binding(exporter: &[u8; EXPORTER_LEN], nonce: &[u8; NONCE_LEN]) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(exporter);
    ctx.update(nonce);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// This connection's exporter value.
///
/// # Errors
/// When the handshake has not completed.
pub fn exporter<D>(
    conn: &rustls::ConnectionCommon<D>,
) -> Result<[u8; EXPORTER_LEN], rustls::Error> {
    conn.export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
}

/// A random verifier nonce.
///
/// # Errors
/// When the system random number generator fails.
pub fn nonce() -> Result<[u8; NONCE_LEN], ProtocolError> {
    use ring::rand::SecureRandom;
    let mut n = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut n)
        .map_err(|_| ProtocolError::Random)?;
    Ok(n)
}

/// Fresh evidence answering `nonce` on the connection with `exporter`, for `identity`'s key,
/// from `attester`. The attester may block.
///
/// # Errors
/// [`a3s_attestation::hw::HwError`] when the TEE gives no report.
pub fn fresh_evidence(
    identity: &Identity,
    attester: &dyn Attester,
    exporter: &[u8; EXPORTER_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, a3s_attestation::hw::HwError> {
    let claims = Claims::for_key(identity.spki_der(), Some(binding(exporter, nonce).to_vec()));
    let bytes = claims.encode();
    let evidence = attester.report(&Claims::report_data(&bytes), REPORT_VMPL)?;
    Ok(Evidence::encode(
        identity.kind(),
        evidence.report.as_bytes(),
        &bytes,
    ))
}

/// A freshness protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// "Prove you are live on this connection."
    Challenge([u8; NONCE_LEN]),
    /// "I do not verify you" or, as an answer, "I do not attest".
    Skip,
    /// A fresh evidence CBOR value.
    Evidence(Vec<u8>),
}

impl Message {
    /// The framed bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, &[u8]) = match self {
            Self::Challenge(n) => (CHALLENGE, n),
            Self::Skip => (SKIP, &[]),
            Self::Evidence(e) => (EVIDENCE, e),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        // Payloads are at most MAX_EVIDENCE_LEN (checked by the callers that build them).
        #[allow(clippy::cast_possible_truncation)]
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

/// Writes `message`.
///
/// # Errors
/// [`ProtocolError::Io`], or [`ProtocolError::TooLong`] for oversized evidence.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Message,
) -> Result<(), ProtocolError> {
    if let Message::Evidence(e) = message {
        if e.len() > MAX_EVIDENCE_LEN {
            return Err(ProtocolError::TooLong(e.len()));
        }
    }
    w.write_all(&message.encode()).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one message.
///
/// # Errors
/// [`ProtocolError`] for I/O errors, an early end, an unknown type or a bad length.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, ProtocolError> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    match head[0] {
        CHALLENGE if len == NONCE_LEN => {
            let mut n = [0u8; NONCE_LEN];
            r.read_exact(&mut n).await?;
            Ok(Message::Challenge(n))
        }
        SKIP if len == 0 => Ok(Message::Skip),
        EVIDENCE if len <= MAX_EVIDENCE_LEN => {
            let mut e = vec![0u8; len];
            r.read_exact(&mut e).await?;
            Ok(Message::Evidence(e))
        }
        kind @ (CHALLENGE | SKIP | EVIDENCE) => Err(ProtocolError::Length { kind, len }),
        other => Err(ProtocolError::UnknownMessage(other)),
    }
}

/// The freshness exchange broke down (not a verdict on evidence).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Reading or writing failed, or the peer closed the connection.
    #[error("freshness exchange I/O")]
    Io(#[from] std::io::Error),
    /// A message type this protocol does not define.
    #[error("unknown freshness message type {0:#04x}")]
    UnknownMessage(u8),
    /// A message with an impossible length.
    #[error("freshness message type {kind:#04x} with length {len}")]
    Length {
        /// The message type.
        kind: u8,
        /// The announced length.
        len: usize,
    },
    /// Evidence too long to send.
    #[error("evidence of {0} bytes is longer than {MAX_EVIDENCE_LEN}")]
    TooLong(usize),
    /// A message other than the one the protocol expects next.
    #[error("expected {expected}, the peer sent {found}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        found: &'static str,
    },
    /// The peer was asked to attest and declined.
    #[error("the peer declined to attest (it has no RA-TLS identity)")]
    Declined,
    /// The peer asked us to attest and we have no identity.
    #[error("the peer asked for attestation but this side has no RA-TLS identity")]
    NotAttested,
    /// The exporter value could not be derived.
    #[error("deriving the TLS exporter value")]
    Exporter(#[source] rustls::Error),
    /// The system random number generator failed.
    #[error("generating the nonce")]
    Random,
}

impl Message {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Challenge(_) => "a challenge",
            Self::Skip => "skip",
            Self::Evidence(_) => "evidence",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip() {
        for m in [
            Message::Challenge([7; 32]),
            Message::Skip,
            Message::Evidence(vec![1, 2, 3]),
        ] {
            let bytes = m.encode();
            assert_eq!(read_message(&mut &bytes[..]).await.unwrap(), m);
        }
    }

    #[tokio::test]
    async fn rejects_bad_frames() {
        let read = |b: &'static [u8]| async move { read_message(&mut &b[..]).await.unwrap_err() };
        assert!(matches!(
            read(&[0x09, 0, 0, 0, 0]).await,
            ProtocolError::UnknownMessage(9)
        ));
        assert!(matches!(
            read(&[0x01, 0, 0, 0, 31]).await,
            ProtocolError::Length { kind: 1, len: 31 }
        ));
        assert!(matches!(
            read(&[0x02, 0, 0, 0, 1]).await,
            ProtocolError::Length { kind: 2, .. }
        ));
        assert!(matches!(
            read(&[0x03, 0, 1, 0, 0]).await,
            ProtocolError::Length { kind: 3, .. }
        ));
        assert!(matches!(
            read(&[0x03, 0, 0, 0, 4, 1]).await,
            ProtocolError::Io(_)
        ));
    }

    #[test]
    fn binding_is_sha256_of_exporter_then_nonce() {
        let mut input = [1u8; 64];
        input[32..].fill(2);
        let want = digest::digest(&digest::SHA256, &input);
        assert_eq!(binding(&[1; 32], &[2; 32]), want.as_ref());
        assert_ne!(binding(&[1; 32], &[2; 32]), binding(&[2; 32], &[1; 32]));
    }
}
