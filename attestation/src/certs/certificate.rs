//! Parsing one AMD SEV-SNP certificate into an owned, checked form, and checking that one
//! certificate issued another.

use std::fmt;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{
    OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_X509_EXT_BASIC_CONSTRAINTS,
    OID_X509_EXT_KEY_USAGE,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

use super::crl::normalize_serial;
use super::extensions::VekExtensions;
use super::pem;
use super::signature::{self, REPORT_SIGNATURE_COMPONENT_LEN};
use super::{CertError, IssueError, ReportSignatureError, Role, VekKind};
use crate::Product;

/// DER contents of secp384r1, 1.3.132.0.34.
const OID_SECP384R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
/// Length of an uncompressed SEC1 P-384 point (0x04 || X || Y).
const P384_POINT_LEN: usize = 97;

/// One parsed certificate of AMD's SEV-SNP hierarchy (ARK, ASK, ASVK, VCEK or VLEK).
///
/// Invariants established by parsing: the certificate is X.509 v3, signed with RSASSA-PSS
/// SHA-384 (MGF1-SHA-384, salt 48) with identical inner and outer algorithm identifiers; its
/// subject common name names one AMD role; CA roles hold an RSA key, VCEK/VLEK a P-384 key;
/// a VCEK/VLEK carries valid AMD extensions; it has no critical extension this crate does not
/// understand. The original DER is kept byte for byte.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    role: Role,
    product: Option<Product>,
    common_name: String,
    subject: Vec<u8>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    spki: Vec<u8>,
    key: Vec<u8>,
    cert_sign: bool,
    crl_sign: bool,
    vek: Option<VekExtensions>,
}

impl Certificate {
    /// Parses exactly one DER certificate (no trailing bytes).
    ///
    /// # Errors
    ///
    /// [`CertError`] if the bytes are not one well-formed AMD SEV-SNP certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) = parse_one(der, 0)?;
        if !rest.is_empty() {
            return Err(CertError::TrailingData {
                index: 0,
                len: rest.len(),
            });
        }
        Ok(cert)
    }

    /// Parses every certificate in `bytes`: one or more concatenated DER certificates, or PEM
    /// text with one or more `CERTIFICATE` blocks (LF or CRLF line ends, text between blocks
    /// ignored), as AMD's KDS serves them.
    ///
    /// # Errors
    ///
    /// [`CertError`] if there is no certificate, or any block or certificate is invalid.
    pub fn parse_all(bytes: &[u8]) -> Result<Vec<Self>, CertError> {
        let certs = if bytes.first() == Some(&0x30) {
            let mut certs = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let (after, cert) = parse_one(rest, certs.len())?;
                certs.push(cert);
                rest = after;
            }
            certs
        } else {
            pem::certificate_blocks(bytes)?
                .iter()
                .enumerate()
                .map(|(index, der)| {
                    let (rest, cert) = parse_one(der, index)?;
                    if rest.is_empty() {
                        Ok(cert)
                    } else {
                        Err(CertError::TrailingData {
                            index,
                            len: rest.len(),
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        if certs.is_empty() {
            return Err(CertError::Empty);
        }
        Ok(certs)
    }

    /// The certificate exactly as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The signed part (TBSCertificate) exactly as received.
    pub fn tbs_der(&self) -> &[u8] {
        &self.tbs
    }

    /// The certificate's role, from its subject common name.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The product generation: from the common name for ARK/ASK/ASVK, from the productName
    /// extension for VCEK/VLEK.
    pub fn product(&self) -> Option<Product> {
        self.product
    }

    /// The subject common name, e.g. `"SEV-VCEK"`.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The serial number as a big-endian magnitude without leading zero bytes (`[0]` for 0).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    /// Start of the validity period (inclusive).
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the validity period (inclusive).
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The subject Name DER.
    pub fn subject_der(&self) -> &[u8] {
        &self.subject
    }

    /// The issuer Name DER.
    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer
    }

    /// The AMD extensions of a VCEK or VLEK; `None` for CA certificates.
    pub fn vek_extensions(&self) -> Option<&VekExtensions> {
        self.vek.as_ref()
    }

    /// The kind of endorsement key, `None` for CA certificates.
    pub fn vek_kind(&self) -> Option<VekKind> {
        VekKind::from_role(self.role)
    }

    /// Checks that this certificate issued `child` and that `child` is valid at `at`: AMD's
    /// role pairing (ARK → ARK/ASK/ASVK, ASK → VCEK, ASVK → VLEK), same product generation,
    /// this certificate is a CA allowed to sign certificates, `child`'s issuer name equals this
    /// subject name, the RSASSA-PSS signature over `child`'s TBS bytes verifies with this key,
    /// and `child.not_before <= at <= child.not_after`.
    ///
    /// For a self-signed ARK, call it with the ARK as both arguments.
    ///
    /// # Errors
    ///
    /// [`IssueError`] naming the first check that failed.
    pub fn verify_issued(&self, child: &Self, at: OffsetDateTime) -> Result<(), IssueError> {
        self.verify_signed(child)?;
        child.check_validity(at)
    }

    /// Every check of [`Self::verify_issued`] except the validity period.
    pub(crate) fn verify_signed(&self, child: &Self) -> Result<(), IssueError> {
        let (issuer, child_role) = (self.role, child.role);
        if !issuer.may_issue(child_role) {
            return Err(IssueError::Role {
                issuer,
                child: child_role,
            });
        }
        if let (Some(issuer_product), Some(child_product)) = (self.product, child.product) {
            if issuer_product != child_product {
                return Err(IssueError::Generation {
                    issuer,
                    issuer_product,
                    child: child_role,
                    child_product,
                });
            }
        }
        if !self.cert_sign {
            return Err(IssueError::NotCa { issuer });
        }
        if child.issuer != self.subject {
            return Err(IssueError::Name {
                issuer,
                child: child_role,
            });
        }
        if !signature::verify_rsa_pss_sha384(&self.key, &child.tbs, &child.signature) {
            return Err(IssueError::Signature {
                issuer,
                child: child_role,
            });
        }
        Ok(())
    }

    /// Checks `not_before <= at <= not_after`.
    pub(crate) fn check_validity(&self, at: OffsetDateTime) -> Result<(), IssueError> {
        if at < self.not_before {
            return Err(IssueError::NotYetValid {
                role: self.role,
                not_before: self.not_before,
                at,
            });
        }
        if at > self.not_after {
            return Err(IssueError::Expired {
                role: self.role,
                not_after: self.not_after,
                at,
            });
        }
        Ok(())
    }

    /// Whether this certificate may sign CRLs (a CA whose key usage, if present, has cRLSign).
    pub(crate) fn may_sign_crls(&self) -> bool {
        self.crl_sign
    }

    /// The raw public key: PKCS#1 RSAPublicKey DER for CA roles, SEC1 point for VCEK/VLEK.
    pub(crate) fn public_key(&self) -> &[u8] {
        &self.key
    }

    /// Verifies a report signature with this certificate's key, whatever its provenance.
    pub(crate) fn verify_report_signature_unchecked(
        &self,
        signed_bytes: &[u8],
        r_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
        s_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
    ) -> Result<(), ReportSignatureError> {
        if !self.role.is_vek() {
            return Err(ReportSignatureError::NotVek { role: self.role });
        }
        signature::verify_report_signature(&self.key, self.role, signed_bytes, r_le, s_le)
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("role", &self.role)
            .field("common_name", &self.common_name)
            .field("product", &self.product)
            .field("serial", &hex::encode(&self.serial))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// Parses the certificate at the start of `input`, returning the bytes after it.
fn parse_one(input: &[u8], index: usize) -> Result<(&[u8], Certificate), CertError> {
    let (rest, x509) = X509Certificate::from_der(input).map_err(|err| CertError::Der {
        index,
        source: match err {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => {
                x509_parser::error::X509Error::InvalidCertificate
            }
        },
    })?;
    let cert = Certificate::from_x509(&x509, x509.as_raw())?;
    Ok((rest, cert))
}

impl Certificate {
    /// Checks and copies what verification needs out of a parsed certificate.
    fn from_x509(x509: &X509Certificate<'_>, der: &[u8]) -> Result<Self, CertError> {
        let tbs = &x509.tbs_certificate;
        let common_name = common_name(x509)?;
        let (role, name_product) =
            Role::from_common_name(&common_name).ok_or_else(|| CertError::UnknownRole {
                common_name: common_name.clone(),
            })?;

        if tbs.version != X509Version::V3 {
            return Err(CertError::Version {
                role,
                version: tbs.version.0,
            });
        }
        signature::check_rsa_pss_sha384(&x509.signature_algorithm)
            .map_err(|source| CertError::SignatureAlgorithm { role, source })?;
        if tbs.signature != x509.signature_algorithm {
            return Err(CertError::SignatureAlgorithmMismatch { role });
        }
        if x509.signature_value.unused_bits != 0 {
            return Err(CertError::SignatureBits {
                role,
                unused_bits: x509.signature_value.unused_bits,
            });
        }

        let key = public_key(x509, role)?;
        let (cert_sign, crl_sign) = standard_extensions(x509, role)?;
        let vek = VekKind::from_role(role)
            .map(|kind| VekExtensions::decode(x509, kind))
            .transpose()
            .map_err(|source| CertError::Extension { role, source })?;
        let product = name_product.or_else(|| vek.as_ref().map(|ext| ext.product));

        let serial = normalize_serial(x509.raw_serial()).to_vec();

        Ok(Self {
            der: der.to_vec(),
            tbs: tbs.as_ref().to_vec(),
            signature: x509.signature_value.data.to_vec(),
            role,
            product,
            common_name,
            subject: tbs.subject.as_raw().to_vec(),
            issuer: tbs.issuer.as_raw().to_vec(),
            serial,
            not_before: tbs.validity.not_before.to_datetime(),
            not_after: tbs.validity.not_after.to_datetime(),
            spki: tbs.subject_pki.raw.to_vec(),
            key,
            cert_sign,
            crl_sign,
            vek,
        })
    }
}

/// The single UTF-8 common name of the subject.
fn common_name(x509: &X509Certificate<'_>) -> Result<String, CertError> {
    let mut names = x509.subject().iter_common_name();
    let name = names.next().ok_or(CertError::MissingCommonName)?;
    if names.next().is_some() {
        return Err(CertError::MissingCommonName);
    }
    name.as_str()
        .map(str::to_owned)
        .map_err(|_| CertError::MissingCommonName)
}

/// The raw public key, checked against the type the role requires.
fn public_key(x509: &X509Certificate<'_>, role: Role) -> Result<Vec<u8>, CertError> {
    let spki = x509.public_key();
    let bits = &spki.subject_public_key;
    let fail = |expected: &'static str, reason: String| CertError::PublicKey {
        role,
        expected,
        reason,
    };
    if role.is_vek() {
        const EXPECTED: &str = "an ec p-384 key";
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(fail(
                EXPECTED,
                format!("algorithm {}", spki.algorithm.algorithm),
            ));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|any| any.clone().oid().ok());
        if curve.as_ref().map(|oid| oid.as_bytes()) != Some(OID_SECP384R1) {
            return Err(fail(EXPECTED, "curve is not secp384r1".to_owned()));
        }
        if bits.unused_bits != 0
            || bits.data.len() != P384_POINT_LEN
            || bits.data.first() != Some(&0x04)
        {
            return Err(fail(
                EXPECTED,
                "point is not 97 uncompressed bytes".to_owned(),
            ));
        }
    } else {
        const EXPECTED: &str = "an rsa key";
        if spki.algorithm.algorithm != OID_PKCS1_RSAENCRYPTION {
            return Err(fail(
                EXPECTED,
                format!("algorithm {}", spki.algorithm.algorithm),
            ));
        }
        let null_params =
            spki.algorithm.parameters.as_ref().is_none_or(|any| {
                any.tag() == x509_parser::asn1_rs::Tag::Null && any.data.is_empty()
            });
        if !null_params || bits.unused_bits != 0 {
            return Err(fail(EXPECTED, "malformed rsaEncryption key".to_owned()));
        }
    }
    Ok(bits.data.to_vec())
}

/// Checks critical extensions and returns (may sign certificates, may sign CRLs).
fn standard_extensions(x509: &X509Certificate<'_>, role: Role) -> Result<(bool, bool), CertError> {
    for ext in x509.extensions() {
        if ext.critical
            && ext.oid != OID_X509_EXT_BASIC_CONSTRAINTS
            && ext.oid != OID_X509_EXT_KEY_USAGE
        {
            return Err(CertError::CriticalExtension {
                role,
                oid: ext.oid.to_id_string(),
            });
        }
    }
    let basic = x509
        .basic_constraints()
        .map_err(|_| CertError::StandardExtension {
            role,
            name: "basic constraints",
        })?;
    let usage = x509.key_usage().map_err(|_| CertError::StandardExtension {
        role,
        name: "key usage",
    })?;
    let is_ca = basic.is_some_and(|ext| ext.value.ca);
    let cert_sign = is_ca && usage.as_ref().is_none_or(|ext| ext.value.key_cert_sign());
    let crl_sign = is_ca && usage.as_ref().is_none_or(|ext| ext.value.crl_sign());
    Ok((cert_sign, crl_sign))
}
