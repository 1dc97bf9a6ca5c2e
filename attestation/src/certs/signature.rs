//! The signature schemes of AMD's hierarchy: RSASSA-PSS (SHA-384, MGF1-SHA-384, 48-byte salt)
//! on certificates and CRLs, ECDSA P-384 with SHA-384 on attestation reports.

use std::borrow::Cow;

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384};
use x509_parser::asn1_rs::{Oid, Tag};
use x509_parser::x509::AlgorithmIdentifier;

use super::der::{self, Reader, SmallUint};
use super::{AlgorithmError, ReportSignatureError, Role};

/// DER contents of id-RSASSA-PSS, 1.2.840.113549.1.1.10.
const OID_RSASSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
/// DER contents of id-mgf1, 1.2.840.113549.1.1.8.
const OID_MGF1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08];
/// DER contents of id-sha384, 2.16.840.1.101.3.4.2.2.
const OID_SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
/// RSASSA-PSS salt length AMD uses (the SHA-384 output size).
const PSS_SALT_LEN: u32 = 48;

/// Length of each little-endian ECDSA component field in an attestation report.
pub const REPORT_SIGNATURE_COMPONENT_LEN: usize = 72;
/// Number of low bytes of each component that may be non-zero (a P-384 scalar).
const P384_SCALAR_LEN: usize = 48;

/// Checks that `alg` is exactly RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48, trailer 1.
///
/// Defaults from RFC 4055 (SHA-1, salt 20) are rejected; the hash AlgorithmIdentifiers may
/// carry NULL parameters or none; no other or trailing field is accepted.
pub(crate) fn check_rsa_pss_sha384(alg: &AlgorithmIdentifier<'_>) -> Result<(), AlgorithmError> {
    if alg.algorithm.as_bytes() != OID_RSASSA_PSS {
        return Err(AlgorithmError::NotRsaPss {
            oid: alg.algorithm.to_id_string(),
        });
    }
    let params = alg
        .parameters
        .as_ref()
        .filter(|any| any.tag() == Tag::Sequence && any.header.is_constructed())
        .ok_or(AlgorithmError::MissingParameters)?;
    let malformed = |reason| AlgorithmError::Malformed { reason };

    let mut fields = Reader::new(params.data);
    let hash = fields
        .read_optional(der::context(0))
        .map_err(malformed)?
        .ok_or_else(|| sha1_default("hash"))?;
    check_sha384_identifier(hash, "hash")?;

    let mgf = fields
        .read_optional(der::context(1))
        .map_err(malformed)?
        .ok_or_else(|| sha1_default("mask generation function"))?;
    let mgf = der::read_single(mgf, der::TAG_SEQUENCE).map_err(malformed)?;
    let mut mgf = Reader::new(mgf);
    let mgf_oid = mgf.read(der::TAG_OID).map_err(malformed)?;
    if mgf_oid != OID_MGF1 {
        return Err(AlgorithmError::Parameter {
            field: "mask generation function",
            expected: "mgf1 (1.2.840.113549.1.1.8)",
            actual: dotted(mgf_oid),
        });
    }
    let mgf_hash = mgf.read(der::TAG_SEQUENCE).map_err(malformed)?;
    mgf.finish().map_err(malformed)?;
    check_sha384_contents(mgf_hash, "mgf1 hash")?;

    let salt = fields
        .read_optional(der::context(2))
        .map_err(malformed)?
        .ok_or_else(|| AlgorithmError::SaltLength {
            actual: "20 (default)".to_owned(),
        })?;
    match small_integer(salt).map_err(malformed)? {
        SmallUint::Fits(PSS_SALT_LEN) => {}
        SmallUint::Fits(other) => {
            return Err(AlgorithmError::SaltLength {
                actual: other.to_string(),
            })
        }
        SmallUint::OutOfRange(hex) => return Err(AlgorithmError::SaltLength { actual: hex }),
    }

    if let Some(trailer) = fields.read_optional(der::context(3)).map_err(malformed)? {
        match small_integer(trailer).map_err(malformed)? {
            SmallUint::Fits(1) => {}
            SmallUint::Fits(other) => {
                return Err(AlgorithmError::TrailerField {
                    actual: other.to_string(),
                })
            }
            SmallUint::OutOfRange(hex) => return Err(AlgorithmError::TrailerField { actual: hex }),
        }
    }
    fields.finish().map_err(malformed)
}

/// Verifies an RSASSA-PSS SHA-384 signature (salt 48) by an RSA key given as PKCS#1
/// `RSAPublicKey` DER (the contents of a certificate's subjectPublicKey BIT STRING).
pub(crate) fn verify_rsa_pss_sha384(
    rsa_public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, rsa_public_key)
        .verify(message, signature)
        .is_ok()
}

/// Verifies an SNP report signature: ECDSA P-384 with SHA-384 over `signed_bytes`, by the
/// uncompressed SEC1 point `point`, with R and S as the report stores them (72 bytes each,
/// little-endian, only the low 48 bytes may be non-zero).
pub(crate) fn verify_report_signature(
    point: &[u8],
    role: Role,
    signed_bytes: &[u8],
    r_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
    s_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
) -> Result<(), ReportSignatureError> {
    // ring takes the fixed-width big-endian encoding r || s.
    let mut fixed = [0_u8; 2 * P384_SCALAR_LEN];
    let (r_be, s_be) = fixed.split_at_mut(P384_SCALAR_LEN);
    big_endian_scalar(r_le, "r", r_be)?;
    big_endian_scalar(s_le, "s", s_be)?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
        .verify(signed_bytes, &fixed)
        .map_err(|_| ReportSignatureError::Invalid { role })
}

/// Writes the low 48 bytes of a 72-byte little-endian field into `out` as big-endian.
fn big_endian_scalar(
    le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
    component: &'static str,
    out: &mut [u8],
) -> Result<(), ReportSignatureError> {
    let (low, high) = le.split_at(P384_SCALAR_LEN);
    if high.iter().any(|&b| b != 0) {
        return Err(ReportSignatureError::HighBytes { component });
    }
    for (dst, src) in out.iter_mut().zip(low.iter().rev()) {
        *dst = *src;
    }
    Ok(())
}

/// Checks the contents of an EXPLICIT `[n]` tag holding an AlgorithmIdentifier for SHA-384.
fn check_sha384_identifier(explicit: &[u8], field: &'static str) -> Result<(), AlgorithmError> {
    let contents = der::read_single(explicit, der::TAG_SEQUENCE)
        .map_err(|reason| AlgorithmError::Malformed { reason })?;
    check_sha384_contents(contents, field)
}

/// Checks the contents of an AlgorithmIdentifier SEQUENCE for SHA-384 (NULL or no parameters).
fn check_sha384_contents(contents: &[u8], field: &'static str) -> Result<(), AlgorithmError> {
    let malformed = |reason| AlgorithmError::Malformed { reason };
    let mut reader = Reader::new(contents);
    let oid = reader.read(der::TAG_OID).map_err(malformed)?;
    if oid != OID_SHA384 {
        return Err(AlgorithmError::Parameter {
            field,
            expected: "sha384 (2.16.840.1.101.3.4.2.2)",
            actual: dotted(oid),
        });
    }
    if let Some(null) = reader.read_optional(der::TAG_NULL).map_err(malformed)? {
        if !null.is_empty() {
            return Err(malformed("non-empty null"));
        }
    }
    reader.finish().map_err(malformed)
}

/// Decodes the contents of an EXPLICIT `[n]` tag holding an INTEGER.
fn small_integer(explicit: &[u8]) -> Result<SmallUint, &'static str> {
    der::uint_contents(der::read_single(explicit, der::TAG_INTEGER)?)
}

/// The error for a PSS field left at its RFC 4055 SHA-1 default.
fn sha1_default(field: &'static str) -> AlgorithmError {
    AlgorithmError::Parameter {
        field,
        expected: "sha384 (2.16.840.1.101.3.4.2.2)",
        actual: "sha1 (default)".to_owned(),
    }
}

/// Dotted form of an OID given as DER contents, or its hex if it does not decode.
pub(crate) fn dotted(oid: &[u8]) -> String {
    let oid = Oid::new(Cow::Borrowed(oid));
    if oid.as_bytes().last().is_some_and(|b| b & 0x80 == 0) {
        oid.to_id_string()
    } else {
        hex::encode(oid.as_bytes())
    }
}
