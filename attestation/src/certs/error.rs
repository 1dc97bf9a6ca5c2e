//! Error types, one enum per operation.

use time::OffsetDateTime;
use x509_parser::error::X509Error;

use super::{Role, TrustOrigin};
use crate::Product;

/// Reading bytes as AMD SEV-SNP certificates failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The input held no certificate at all.
    #[error("input holds no certificate")]
    Empty,
    /// A PEM block could not be decoded.
    #[error("pem block #{index} is malformed")]
    Pem {
        /// Zero-based index of the block in the input.
        index: usize,
        /// What x509-parser reported.
        #[source]
        source: x509_parser::error::PEMError,
    },
    /// A PEM block has a label other than `CERTIFICATE`.
    #[error("pem block #{index} is labelled {label:?}, expected \"CERTIFICATE\"")]
    PemLabel {
        /// Zero-based index of the block in the input.
        index: usize,
        /// The label found.
        label: String,
    },
    /// A certificate is not a well-formed DER X.509 certificate.
    #[error("certificate #{index} is not a valid x.509 der encoding")]
    Der {
        /// Zero-based index of the certificate in the input.
        index: usize,
        /// What x509-parser reported.
        #[source]
        source: X509Error,
    },
    /// A PEM block holds bytes after its certificate.
    #[error("certificate #{index} is followed by {len} trailing bytes in its pem block")]
    TrailingData {
        /// Zero-based index of the certificate in the input.
        index: usize,
        /// Number of unexpected bytes.
        len: usize,
    },
    /// The subject has no (or no UTF-8) common name.
    #[error("certificate subject has no usable common name")]
    MissingCommonName,
    /// The subject common name is not one of AMD's (fail closed).
    #[error("unknown certificate role for subject common name {common_name:?}")]
    UnknownRole {
        /// The common name found.
        common_name: String,
    },
    /// The certificate is not X.509 v3.
    #[error("{role} certificate has x.509 version field {version}, expected 2 (v3)")]
    Version {
        /// The certificate's role.
        role: Role,
        /// The raw version field.
        version: u32,
    },
    /// The signature algorithm is not AMD's RSASSA-PSS with SHA-384.
    #[error("{role} certificate has an unsupported signature algorithm")]
    SignatureAlgorithm {
        /// The certificate's role.
        role: Role,
        /// What is wrong with the algorithm.
        #[source]
        source: AlgorithmError,
    },
    /// The signature algorithm inside the signed part differs from the outer one.
    #[error("{role} certificate names different signature algorithms inside and outside the signed part")]
    SignatureAlgorithmMismatch {
        /// The certificate's role.
        role: Role,
    },
    /// The signature BIT STRING has unused bits.
    #[error("{role} certificate signature has {unused_bits} unused bits")]
    SignatureBits {
        /// The certificate's role.
        role: Role,
        /// The unused-bit count found.
        unused_bits: u8,
    },
    /// The public key is not of the type this role requires.
    #[error("{role} certificate public key must be {expected}: {reason}")]
    PublicKey {
        /// The certificate's role.
        role: Role,
        /// The required key type.
        expected: &'static str,
        /// What was found instead.
        reason: String,
    },
    /// A critical extension this crate does not understand.
    #[error("{role} certificate has unsupported critical extension {oid}")]
    CriticalExtension {
        /// The certificate's role.
        role: Role,
        /// The extension's OID in dotted form.
        oid: String,
    },
    /// A standard extension (basic constraints, key usage) is malformed or repeated.
    #[error("{role} certificate has an invalid {name} extension")]
    StandardExtension {
        /// The certificate's role.
        role: Role,
        /// The extension's name.
        name: &'static str,
    },
    /// The AMD extensions of a VCEK or VLEK are invalid.
    #[error("{role} certificate has invalid amd extensions")]
    Extension {
        /// The certificate's role.
        role: Role,
        /// What is wrong.
        #[source]
        source: ExtensionError,
    },
}

/// A certificate's or CRL's signature algorithm is not RSASSA-PSS with SHA-384, MGF1-SHA-384
/// and a 48-byte salt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// The algorithm OID is not id-RSASSA-PSS (1.2.840.113549.1.1.10).
    #[error("algorithm is {oid}, expected rsassa-pss (1.2.840.113549.1.1.10)")]
    NotRsaPss {
        /// The OID found, dotted.
        oid: String,
    },
    /// The RSASSA-PSS parameters are absent or not a DER SEQUENCE.
    #[error("rsassa-pss parameters are missing")]
    MissingParameters,
    /// The RSASSA-PSS parameters are not strictly DER encoded.
    #[error("rsassa-pss parameters are malformed: {reason}")]
    Malformed {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A parameter names an algorithm other than the one AMD uses.
    #[error("rsassa-pss {field} is {actual}, expected {expected}")]
    Parameter {
        /// Which parameter (`"hash"`, `"mask generation function"`, `"mgf1 hash"`).
        field: &'static str,
        /// What AMD uses.
        expected: &'static str,
        /// What was found (dotted OID).
        actual: String,
    },
    /// The salt length is not 48.
    #[error("rsassa-pss salt length is {actual}, expected 48")]
    SaltLength {
        /// The salt length found.
        actual: String,
    },
    /// The trailer field is not 1.
    #[error("rsassa-pss trailer field is {actual}, expected 1")]
    TrailerField {
        /// The trailer field found.
        actual: String,
    },
}

/// The AMD extensions (OID 1.3.6.1.4.1.3704.1.x) of a VCEK or VLEK are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtensionError {
    /// A required extension is absent.
    #[error("missing {name} extension")]
    Missing {
        /// The extension's name (`"blSPL"`, `"hwID"`, ...).
        name: &'static str,
    },
    /// An extension appears more than once.
    #[error("{oid} extension appears more than once")]
    Duplicate {
        /// The extension's OID, dotted.
        oid: String,
    },
    /// An extension under AMD's arc that this crate does not know (fail closed).
    #[error("unknown amd extension {oid}")]
    Unknown {
        /// The extension's OID, dotted.
        oid: String,
    },
    /// An extension value is not the DER type it must be.
    #[error("{name} extension is malformed: {reason}")]
    Malformed {
        /// The extension's name.
        name: &'static str,
        /// Which rule was broken.
        reason: &'static str,
    },
    /// An integer value does not fit its field.
    #[error("{name} extension value (der integer {value}) is out of range 0..={max}")]
    OutOfRange {
        /// The extension's name.
        name: &'static str,
        /// The encoded integer's contents in hex.
        value: String,
        /// The largest allowed value.
        max: u32,
    },
    /// The productName is not a generation this crate knows.
    #[error("productName {name:?} is not a known product")]
    UnknownProduct {
        /// The productName found.
        name: String,
    },
    /// hwID has the wrong length for the product.
    #[error("hwID is {actual} bytes, expected {expected} for {product}")]
    HwIdLength {
        /// The product named by productName.
        product: Product,
        /// The expected length.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// fmcSPL is present on a product without FMC, or absent on one with it.
    #[error("fmcSPL presence ({present}) does not fit {product}: only turin carries it")]
    FmcSpl {
        /// The product named by productName.
        product: Product,
        /// Whether the extension was present.
        present: bool,
    },
}

/// A certificate was not validly issued by the claimed issuer at the given time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// AMD's hierarchy does not allow this issuer role for this child role.
    #[error("an {issuer} cannot issue a {child} certificate")]
    Role {
        /// The issuer's role.
        issuer: Role,
        /// The child's role.
        child: Role,
    },
    /// Issuer and child name different product generations.
    #[error("{issuer} for {issuer_product} cannot issue a {child} for {child_product}")]
    Generation {
        /// The issuer's role.
        issuer: Role,
        /// The issuer's generation.
        issuer_product: Product,
        /// The child's role.
        child: Role,
        /// The child's generation.
        child_product: Product,
    },
    /// The issuer lacks `basicConstraints CA:TRUE` or the needed key usage.
    #[error("{issuer} certificate is not a ca allowed to sign certificates")]
    NotCa {
        /// The issuer's role.
        issuer: Role,
    },
    /// The child's issuer name is not the issuer's subject name.
    #[error("issuer name of the {child} certificate does not match the {issuer} subject")]
    Name {
        /// The issuer's role.
        issuer: Role,
        /// The child's role.
        child: Role,
    },
    /// The RSASSA-PSS signature over the child's TBS bytes does not verify.
    #[error("{child} certificate signature does not verify with the {issuer} key")]
    Signature {
        /// The issuer's role.
        issuer: Role,
        /// The child's role.
        child: Role,
    },
    /// `at` is before the child's notBefore.
    #[error("{role} certificate is not valid before {not_before}, checked at {at}")]
    NotYetValid {
        /// The role of the certificate outside its validity.
        role: Role,
        /// The certificate's notBefore.
        not_before: OffsetDateTime,
        /// The time of the check.
        at: OffsetDateTime,
    },
    /// `at` is after the child's notAfter.
    #[error("{role} certificate expired at {not_after}, checked at {at}")]
    Expired {
        /// The role of the certificate outside its validity.
        role: Role,
        /// The certificate's notAfter.
        not_after: OffsetDateTime,
        /// The time of the check.
        at: OffsetDateTime,
    },
}

/// Building trust anchors failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootsError {
    /// A certificate has the wrong role for its slot.
    #[error("{product} trust anchor slot for {expected} holds a {actual} certificate")]
    Role {
        /// The product of the anchor set.
        product: Product,
        /// The role the slot needs.
        expected: Role,
        /// The role found.
        actual: Role,
    },
    /// A CA certificate names another product generation than its slot.
    #[error("{role} certificate names {actual}, but the anchor set is for {product}")]
    Generation {
        /// The product of the anchor set.
        product: Product,
        /// The certificate's role.
        role: Role,
        /// The generation the certificate names.
        actual: Product,
    },
    /// Two anchor sets for the same product.
    #[error("more than one trust anchor set for {product}")]
    DuplicateProduct {
        /// The repeated product.
        product: Product,
    },
    /// A signature inside the anchor set does not verify (time is not checked here).
    #[error("{product} trust anchors do not chain")]
    Issue {
        /// The product of the anchor set.
        product: Product,
        /// The failing link.
        #[source]
        source: IssueError,
    },
    /// A built-in root failed to load (a build defect).
    #[error("built-in {product} {role} certificate is invalid")]
    BuiltIn {
        /// The product.
        product: Product,
        /// The role of the broken file.
        role: Role,
        /// Why it failed.
        #[source]
        source: CertError,
    },
}

/// Verifying a VCEK or VLEK up to pinned trust anchors failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The supplied certificates hold no VCEK or VLEK.
    #[error("certificate chain holds no vcek or vlek")]
    MissingVek,
    /// The supplied certificates hold two certificates with the same role.
    #[error("certificate chain holds more than one {role}")]
    DuplicateRole {
        /// The repeated role.
        role: Role,
    },
    /// The trust anchors have no entry for this product.
    #[error("trust anchors ({origin}) have no root for {product}")]
    UnknownProduct {
        /// The product asked for.
        product: Product,
        /// Which anchors were used.
        origin: TrustOrigin,
    },
    /// A supplied ARK is not the pinned root for the product.
    #[error("supplied ARK is not the pinned {product} root ({origin})")]
    ArkMismatch {
        /// The product.
        product: Product,
        /// Which anchors were used.
        origin: TrustOrigin,
    },
    /// A supplied CA certificate belongs to another product generation.
    #[error("supplied {role} is for {actual}, expected {product}")]
    Generation {
        /// The product being verified.
        product: Product,
        /// The certificate's role.
        role: Role,
        /// The generation the certificate names.
        actual: Product,
    },
    /// Neither the chain nor the anchors provide the intermediate the VEK needs.
    #[error("no {role} for {product} in the chain or the trust anchors")]
    MissingIntermediate {
        /// The missing role (ASK or ASVK).
        role: Role,
        /// The product.
        product: Product,
    },
    /// One link of the chain failed.
    #[error("{product} chain link {issuer} -> {child} does not verify")]
    Link {
        /// The product.
        product: Product,
        /// The issuing role.
        issuer: Role,
        /// The issued role.
        child: Role,
        /// What failed.
        #[source]
        source: IssueError,
    },
    /// The VEK's productName is not the product being verified.
    #[error("{role} productName {product_name:?} does not belong to {product}")]
    ProductName {
        /// The product being verified.
        product: Product,
        /// The VEK's role.
        role: Role,
        /// The productName found.
        product_name: String,
    },
    /// The CRL given was not issued by this product's ARK.
    #[error("crl was not issued by the {product} ARK")]
    CrlIssuer {
        /// The product.
        product: Product,
    },
    /// A certificate in the chain is revoked.
    #[error("{role} certificate with serial {serial} is revoked")]
    Revoked {
        /// The revoked certificate's role.
        role: Role,
        /// Its serial number in hex.
        serial: String,
    },
}

/// An attestation report signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportSignatureError {
    /// Bytes 48..72 of the little-endian R or S field are not zero.
    #[error("signature component {component} has non-zero bytes above the low 48")]
    HighBytes {
        /// `"r"` or `"s"`.
        component: &'static str,
    },
    /// The certificate given does not hold a P-384 report-signing key.
    #[error("{role} certificate does not hold a report-signing key")]
    NotVek {
        /// The certificate's role.
        role: Role,
    },
    /// ECDSA P-384 SHA-384 verification failed.
    #[error("report signature does not verify with the {role} key")]
    Invalid {
        /// The VEK's role.
        role: Role,
    },
}

/// Parsing or verifying a certificate revocation list failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlError {
    /// The bytes are not a DER CRL.
    #[error("crl is not a valid der encoding")]
    Der {
        /// What x509-parser reported.
        #[source]
        source: X509Error,
    },
    /// Bytes follow the CRL.
    #[error("crl is followed by {len} trailing bytes")]
    TrailingData {
        /// Number of unexpected bytes.
        len: usize,
    },
    /// The CRL is not version 2.
    #[error("crl version is {version:?}, expected v2")]
    Version {
        /// The version field, if present.
        version: Option<u32>,
    },
    /// The signature algorithm is not AMD's RSASSA-PSS with SHA-384.
    #[error("crl has an unsupported signature algorithm")]
    SignatureAlgorithm {
        /// What is wrong.
        #[source]
        source: AlgorithmError,
    },
    /// The signature algorithm inside the signed part differs from the outer one.
    #[error("crl names different signature algorithms inside and outside the signed part")]
    SignatureAlgorithmMismatch,
    /// The signature BIT STRING has unused bits.
    #[error("crl signature has {unused_bits} unused bits")]
    SignatureBits {
        /// The unused-bit count found.
        unused_bits: u8,
    },
    /// The CRL or one of its entries has a critical extension (fail closed).
    #[error("crl has critical extension {oid}")]
    CriticalExtension {
        /// The extension's OID, dotted.
        oid: String,
    },
    /// The CRL's issuer name is not the subject of the certificate given as issuer.
    #[error("crl issuer name does not match the {issuer} subject")]
    IssuerName {
        /// The role of the certificate given as issuer.
        issuer: Role,
    },
    /// The certificate given as issuer may not sign CRLs.
    #[error("{issuer} certificate may not sign crls")]
    IssuerNotCrlSigner {
        /// The role of the certificate given as issuer.
        issuer: Role,
    },
    /// The signature does not verify with the issuer's key.
    #[error("crl signature does not verify with the {issuer} key")]
    Signature {
        /// The role of the certificate given as issuer.
        issuer: Role,
    },
    /// `at` is before the CRL's thisUpdate.
    #[error("crl is not valid before {this_update}, checked at {at}")]
    NotYetValid {
        /// The CRL's thisUpdate.
        this_update: OffsetDateTime,
        /// The time of the check.
        at: OffsetDateTime,
    },
    /// `at` is after the CRL's nextUpdate: the list is stale.
    #[error("crl is stale since {next_update}, checked at {at}")]
    Stale {
        /// The CRL's nextUpdate.
        next_update: OffsetDateTime,
        /// The time of the check.
        at: OffsetDateTime,
    },
}
