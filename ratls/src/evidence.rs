//! The evidence an RA-TLS certificate (and a freshness answer) carries, as CBOR.
//!
//! # Wire format
//!
//! The value of the X.509 extension [`EVIDENCE_OID`] (`2.23.133.5.4.9`, TCG DICE
//! `tcg-dice-conceptual-message-wrapper`, as in CCC "Interoperable RA-TLS" and Gramine ≥ 1.8)
//! is raw CBOR, with no further DER wrapping:
//!
//! ```text
//! evidence     = #6.<tag>([ report: bstr .size 1184, claims: bstr .cbor claims-map ])
//! claims-map   = { ? "nonce": bstr .size (1..64), "pubkey-hash": bstr .cbor hash-entry }
//! hash-entry   = [ alg: uint (1 = SHA-256, 7 = SHA-384, 8 = SHA-512), digest: bstr ]
//! endorsements = #6.<tag>([ + cert: bstr ])          ; extension 2.23.133.5.4.2, DER VCEK/ASK/ARK
//! ```
//!
//! - `pubkey-hash` is the hash of the certificate's DER SubjectPublicKeyInfo (algorithm and
//!   key), as every RA-TLS design hashes it. We write SHA-384; we accept 1, 7 and 8.
//! - The SEV-SNP report's `REPORT_DATA` is `SHA-256(claims) ‖ 0^32`: the hash of the exact
//!   claims bytes, the upper 32 bytes zero. Both halves are checked.
//! - The tag says whose evidence it is ([`EvidenceKind`]):
//!   - **hardware**: `1668557430` = `TN(10572)` (RFC 9277), the tag the AMD SEV-SNP CoRIM profile
//!     draft requests for `application/vnd.amd.sev-snp.attestation-report` (provisional);
//!   - **simulated**: `1668612071` = `TN(65000)`, a CoAP Content-Format in the *experimental use*
//!     range (65000–65535), which no registered evidence type can ever have. A verifier that was
//!     not told to accept the A3S Box simulator rejects this tag before it looks at the report.
//! - Encoding is deterministic CBOR (definite lengths, shortest heads, map keys in bytewise
//!   order of their encodings, so `"nonce"` before `"pubkey-hash"`). The parser rejects every
//!   other encoding, unknown tags, unknown claims, duplicate keys and trailing bytes.

use a3s_attestation::report::ReportError;
use a3s_attestation::Report;
use ring::digest;

use crate::cbor::{self, Reader};

/// OID of the evidence extension: TCG DICE conceptual message wrapper.
pub const EVIDENCE_OID: &[u64] = &[2, 23, 133, 5, 4, 9];
/// OID of the endorsements extension: TCG DICE endorsement manifest.
pub const ENDORSEMENTS_OID: &[u64] = &[2, 23, 133, 5, 4, 2];
/// CBOR tag of hardware SEV-SNP evidence: `TN(10572)`.
pub const TAG_SNP: u64 = 1_668_557_430;
/// CBOR tag of A3S Box simulator evidence: `TN(65000)`, experimental-use range.
pub const TAG_SNP_SIMULATED: u64 = 1_668_612_071;
/// Length of an SEV-SNP attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// Longest accepted `nonce` claim.
pub const MAX_NONCE_LEN: usize = 64;
/// Most certificates accepted in an endorsements extension.
pub const MAX_ENDORSEMENTS: usize = 4;

const NONCE_KEY: &str = "nonce";
const PUBKEY_HASH_KEY: &str = "pubkey-hash";

/// Whose key hierarchy signed the evidence, as told by its CBOR tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EvidenceKind {
    /// AMD SEV-SNP firmware ([`TAG_SNP`]).
    Hardware,
    /// The A3S Box simulator ([`TAG_SNP_SIMULATED`]).
    Simulated,
}

impl EvidenceKind {
    /// The CBOR tag of this kind.
    pub fn tag(self) -> u64 {
        match self {
            Self::Hardware => TAG_SNP,
            Self::Simulated => TAG_SNP_SIMULATED,
        }
    }

    /// The kind a tag denotes; `None` for any other tag.
    pub fn from_tag(tag: u64) -> Option<Self> {
        match tag {
            TAG_SNP => Some(Self::Hardware),
            TAG_SNP_SIMULATED => Some(Self::Simulated),
            _ => None,
        }
    }

    /// Whether this is simulator evidence.
    pub fn is_simulated(self) -> bool {
        self == Self::Simulated
    }
}

/// A hash algorithm of a `pubkey-hash` entry (IANA Named Information registry ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlg {
    /// SHA-256, id 1.
    Sha256,
    /// SHA-384, id 7.
    Sha384,
    /// SHA-512, id 8.
    Sha512,
}

impl HashAlg {
    /// The registry id.
    pub fn id(self) -> u64 {
        match self {
            Self::Sha256 => 1,
            Self::Sha384 => 7,
            Self::Sha512 => 8,
        }
    }

    fn from_id(id: u64) -> Option<Self> {
        match id {
            1 => Some(Self::Sha256),
            7 => Some(Self::Sha384),
            8 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.ring(), data).as_ref().to_vec()
    }
}

/// A `pubkey-hash` claim: the hash of a DER SubjectPublicKeyInfo.
///
/// Invariant: `digest` has the output length of `alg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PubkeyHash {
    alg: HashAlg,
    digest: Vec<u8>,
}

impl PubkeyHash {
    /// The hash of `spki_der` with `alg`.
    pub fn of(alg: HashAlg, spki_der: &[u8]) -> Self {
        Self {
            alg,
            digest: alg.digest(spki_der),
        }
    }

    /// The algorithm.
    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// The digest.
    pub fn digest(&self) -> &[u8] {
        &self.digest
    }

    /// Whether this is the hash of `spki_der`.
    pub fn matches(&self, spki_der: &[u8]) -> bool {
        // A hash of a public key: nothing secret to leak through timing.
        self.alg.digest(spki_der) == self.digest
    }
}

/// The claims evidence binds into REPORT_DATA: the TLS key, and optionally a nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Hash of the certificate's SubjectPublicKeyInfo.
    pub pubkey_hash: PubkeyHash,
    /// A freshness value (for a post-handshake answer: `SHA-256(exporter ‖ verifier nonce)`).
    pub nonce: Option<Vec<u8>>,
}

impl Claims {
    /// Claims for the key `spki_der` (hashed with SHA-384) and `nonce`.
    pub fn for_key(spki_der: &[u8], nonce: Option<Vec<u8>>) -> Self {
        Self {
            pubkey_hash: PubkeyHash::of(HashAlg::Sha384, spki_der),
            nonce,
        }
    }

    /// The deterministic CBOR encoding (the "claims buffer").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        cbor::head(
            &mut out,
            cbor::MAP,
            if self.nonce.is_some() { 2 } else { 1 },
        );
        if let Some(nonce) = &self.nonce {
            cbor::text(&mut out, NONCE_KEY);
            cbor::bytes(&mut out, nonce);
        }
        let mut entry = Vec::new();
        cbor::head(&mut entry, cbor::ARRAY, 2);
        cbor::head(&mut entry, cbor::UINT, self.pubkey_hash.alg.id());
        cbor::bytes(&mut entry, &self.pubkey_hash.digest);
        cbor::text(&mut out, PUBKEY_HASH_KEY);
        cbor::bytes(&mut out, &entry);
        out
    }

    /// Parses a claims buffer strictly.
    ///
    /// # Errors
    /// [`ParseError`] naming the first rule the bytes break.
    pub fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(input);
        let n = r.map("claims map")?;
        let (mut nonce, mut pubkey_hash) = (None, None);
        let mut last_key: Option<&str> = None;
        for _ in 0..n {
            let offset = r.offset();
            let key = r.text("claim name")?;
            // Deterministic order: shorter text keys first, then bytewise.
            if let Some(prev) = last_key {
                if (prev.len(), prev.as_bytes()) >= (key.len(), key.as_bytes()) {
                    return Err(ParseError::NotDeterministic {
                        offset,
                        why: "claims not in deterministic key order, or repeated",
                    });
                }
            }
            last_key = Some(key);
            match key {
                NONCE_KEY => {
                    let value = r.bytes("nonce claim")?;
                    if value.is_empty() || value.len() > MAX_NONCE_LEN {
                        return Err(ParseError::NonceLength(value.len()));
                    }
                    nonce = Some(value.to_vec());
                }
                PUBKEY_HASH_KEY => pubkey_hash = Some(parse_hash_entry(r.bytes("pubkey-hash")?)?),
                other => return Err(ParseError::UnknownClaim(other.to_owned())),
            }
        }
        r.finish()?;
        Ok(Self {
            pubkey_hash: pubkey_hash.ok_or(ParseError::MissingPubkeyHash)?,
            nonce,
        })
    }

    /// REPORT_DATA binding `claims_bytes`: `SHA-256(claims) ‖ 0^32`.
    pub fn report_data(claims_bytes: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(digest::digest(&digest::SHA256, claims_bytes).as_ref());
        out
    }
}

fn parse_hash_entry(input: &[u8]) -> Result<PubkeyHash, ParseError> {
    let mut r = Reader::new(input);
    let n = r.array("hash entry")?;
    if n != 2 {
        return Err(ParseError::ArrayLength {
            what: "hash entry",
            expected: 2,
            found: n,
        });
    }
    let id = r.uint("hash algorithm id")?;
    let alg = HashAlg::from_id(id).ok_or(ParseError::UnknownHashAlg(id))?;
    let d = r.bytes("pubkey digest")?;
    r.finish()?;
    if d.len() != alg.ring().output_len() {
        return Err(ParseError::DigestLength {
            alg: id,
            found: d.len(),
        });
    }
    Ok(PubkeyHash {
        alg,
        digest: d.to_vec(),
    })
}

/// Parsed evidence: a report and the claims its REPORT_DATA should bind.
///
/// Parsing checks only the format; [`crate::Verifier`] checks what it means.
#[derive(Clone, Debug)]
pub struct Evidence {
    kind: EvidenceKind,
    report: Report,
    claims: Claims,
    claims_bytes: Vec<u8>,
}

impl Evidence {
    /// Encodes `report` and the claims buffer `claims_bytes` under `kind`'s tag.
    pub fn encode(kind: EvidenceKind, report: &[u8], claims_bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(report.len() + claims_bytes.len() + 16);
        cbor::head(&mut out, cbor::TAG, kind.tag());
        cbor::head(&mut out, cbor::ARRAY, 2);
        cbor::bytes(&mut out, report);
        cbor::bytes(&mut out, claims_bytes);
        out
    }

    /// Parses evidence strictly.
    ///
    /// # Errors
    /// [`ParseError`] naming the first rule the bytes break.
    pub fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new(input);
        let kind = read_tag(&mut r)?;
        let n = r.array("evidence array")?;
        if n != 2 {
            return Err(ParseError::ArrayLength {
                what: "evidence array",
                expected: 2,
                found: n,
            });
        }
        let report = r.bytes("report")?;
        let claims_bytes = r.bytes("claims buffer")?;
        r.finish()?;
        if report.len() != REPORT_LEN {
            return Err(ParseError::ReportLength(report.len()));
        }
        let report = Report::from_bytes(report)?;
        let claims = Claims::parse(claims_bytes)?;
        Ok(Self {
            kind,
            report,
            claims,
            claims_bytes: claims_bytes.to_vec(),
        })
    }

    /// Whose evidence the tag says this is.
    pub fn kind(&self) -> EvidenceKind {
        self.kind
    }

    /// The report.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The claims buffer exactly as received.
    pub fn claims_bytes(&self) -> &[u8] {
        &self.claims_bytes
    }
}

fn read_tag(r: &mut Reader<'_>) -> Result<EvidenceKind, ParseError> {
    let tag = r.tag()?;
    EvidenceKind::from_tag(tag).ok_or(ParseError::UnknownTag(tag))
}

/// Encodes DER certificates as an endorsements extension value under `kind`'s tag.
pub fn encode_endorsements(kind: EvidenceKind, certs: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    cbor::head(&mut out, cbor::TAG, kind.tag());
    cbor::head(&mut out, cbor::ARRAY, certs.len() as u64);
    for der in certs {
        cbor::bytes(&mut out, der);
    }
    out
}

/// Parses an endorsements extension value: its kind and the DER certificates.
///
/// # Errors
/// [`ParseError`] naming the first rule the bytes break.
pub fn parse_endorsements(input: &[u8]) -> Result<(EvidenceKind, Vec<&[u8]>), ParseError> {
    let mut r = Reader::new(input);
    let kind = read_tag(&mut r)?;
    let n = r.array("endorsements array")?;
    if n == 0 || n > MAX_ENDORSEMENTS {
        return Err(ParseError::EndorsementCount(n));
    }
    let certs = (0..n)
        .map(|_| r.bytes("endorsement certificate"))
        .collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Ok((kind, certs))
}

/// Evidence bytes that are not well-formed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input ends inside an item.
    #[error("evidence is truncated at byte {offset}")]
    Truncated {
        /// Where the missing item starts.
        offset: usize,
    },
    /// An item has another CBOR type than the format requires.
    #[error("expected {expected} at byte {offset}, found a {found}")]
    WrongType {
        /// Where the item starts.
        offset: usize,
        /// What the format requires there.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// The encoding is valid CBOR but not deterministic.
    #[error("evidence CBOR at byte {offset} is not deterministic: {why}")]
    NotDeterministic {
        /// Where the item starts.
        offset: usize,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// Bytes follow the last item.
    #[error("unexpected bytes after the evidence at byte {offset}")]
    TrailingBytes {
        /// Where they start.
        offset: usize,
    },
    /// A text string is not UTF-8.
    #[error("text at byte {offset} is not UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// The tag is neither hardware nor simulated SEV-SNP evidence.
    #[error("unknown evidence tag {0} (expected {TAG_SNP} for SEV-SNP or {TAG_SNP_SIMULATED} for the A3S Box simulator)")]
    UnknownTag(u64),
    /// An array has the wrong number of elements.
    #[error("{what} has {found} elements, expected {expected}")]
    ArrayLength {
        /// Which array.
        what: &'static str,
        /// How many it must have.
        expected: usize,
        /// How many it has.
        found: usize,
    },
    /// The endorsements hold no certificate or too many.
    #[error("endorsements hold {0} certificates (1 to {MAX_ENDORSEMENTS} allowed)")]
    EndorsementCount(usize),
    /// The report is not 1184 bytes.
    #[error("report is {0} bytes, expected {REPORT_LEN}")]
    ReportLength(usize),
    /// The report bytes are not a valid SEV-SNP report.
    #[error("the evidence report is invalid")]
    Report(#[from] ReportError),
    /// A claim this format does not define.
    #[error("unknown claim {0:?}")]
    UnknownClaim(String),
    /// The claims have no `pubkey-hash`.
    #[error("the claims have no pubkey-hash")]
    MissingPubkeyHash,
    /// A `pubkey-hash` algorithm other than SHA-256, SHA-384 or SHA-512.
    #[error("unknown pubkey-hash algorithm id {0} (accepted: 1, 7, 8)")]
    UnknownHashAlg(u64),
    /// A `pubkey-hash` digest of the wrong length for its algorithm.
    #[error("pubkey-hash digest for algorithm {alg} is {found} bytes long")]
    DigestLength {
        /// The algorithm id.
        alg: u64,
        /// The digest length.
        found: usize,
    },
    /// The nonce claim is empty or too long.
    #[error("nonce claim is {0} bytes (1 to {MAX_NONCE_LEN} allowed)")]
    NonceLength(usize),
}

#[cfg(test)]
mod tests;
