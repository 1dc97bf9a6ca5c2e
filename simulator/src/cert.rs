//! Certificates and CRLs in AMD's KDS profile, marked as simulated.
//!
//! The profile copies AMD's certificates (checked against the Milan/Genoa/Turin ARKs and ASKs and
//! the Oak VCEKs in `fixtures/snp/`):
//!
//! - every signature is RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt, with the
//!   parameters present in the AlgorithmIdentifier;
//! - names are `OU=Engineering, C=US, L=Santa Clara, ST=CA, O=Advanced Micro Devices, CN=<cn>`
//!   (UTF8String, country PrintableString) with CN `ARK-<Gen>`, `SEV-<Gen>` and `SEV-VCEK`;
//! - the ARK has key usage keyCertSign+cRLSign (critical), a subject key identifier and
//!   basic constraints CA (critical); the ASK has SKI, AKI, CA with path length 0 (critical) and
//!   keyCertSign (critical);
//! - the VCEK has serial 0, a P-384 key and only AMD's extensions under 1.3.6.1.4.1.3704.1, in the
//!   order AMD writes them (see [`vcek`]).
//!
//! Two things differ on purpose, so that a simulated certificate is never mistaken for AMD's:
//! every name carries the extra RDN `OU=A3S Box SEV-SNP simulator (not AMD)` after
//! `OU=Engineering`, and no CRL distribution point names AMD's KDS.

use std::time::{Duration, SystemTime};

use a3s_attestation::report::Tcb;
use a3s_attestation::Product;
use rand_core::{OsRng, RngCore};
use rsa::pkcs1::RsaPssParams;
use rsa::pkcs8::EncodePublicKey;
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::RsaPrivateKey;
use sha2::{Digest, Sha256, Sha384};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::{Certificate, TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::der::asn1::{
    BitString, GeneralizedTime, Ia5String, ObjectIdentifier, OctetString, PrintableStringRef,
    SetOfVec, UtcTime, Utf8StringRef,
};
use x509_cert::der::{Any, DateTime, Decode, Encode};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};

use crate::SimError;

/// The organisational unit that marks every simulated certificate.
pub const SIMULATED_OU: &str = "A3S Box SEV-SNP simulator (not AMD)";

/// OID arc of AMD's VCEK extensions.
const AMD_ARC: &str = "1.3.6.1.4.1.3704.1";
/// id-RSASSA-PSS.
const ID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// PSS salt length AMD uses (the SHA-384 output size).
const PSS_SALT_LEN: u8 = 48;

const ID_OU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.11");
const ID_C: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.6");
const ID_L: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.7");
const ID_ST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.8");
const ID_O: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.10");
const ID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const ID_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.15");
const ID_SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const ID_AKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.35");
const ID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Back-dating of notBefore, for clocks that differ between machines sharing a home.
const BACKDATE: Duration = DAY;
/// AMD issues ARKs and ASKs for 25 years.
const CA_LIFETIME: Duration = Duration::from_secs(25 * 365 * 24 * 60 * 60);
/// AMD issues VCEKs for 7 years.
const VCEK_LIFETIME: Duration = Duration::from_secs(7 * 365 * 24 * 60 * 60);
/// The simulated CRL is issued once, with the root, and stays valid as long as the root.
const CRL_LIFETIME: Duration = CA_LIFETIME;

/// CN of the ARK of `product`: `ARK-Milan`.
pub(crate) fn ark_cn(product: Product) -> String {
    format!("ARK-{}", product.kds_name())
}

/// CN of the ASK of `product`: `SEV-Milan`.
pub(crate) fn ask_cn(product: Product) -> String {
    format!("SEV-{}", product.kds_name())
}

/// The productName extension AMD writes in VCEKs of `product`.
pub(crate) fn vcek_product_name(product: Product) -> &'static str {
    match product {
        Product::Milan => "Milan-B0",
        Product::Genoa => "Genoa",
        _ => "Turin",
    }
}

/// AMD's distinguished name with common name `cn`, plus the simulator's OU.
fn amd_name(cn: &str) -> Result<Name, SimError> {
    let utf8 = |s: &str| -> Result<Any, SimError> {
        let value = Utf8StringRef::new(s).map_err(SimError::der("encoding a name"))?;
        Any::encode_from(&value).map_err(SimError::der("encoding a name"))
    };
    let country =
        Any::encode_from(&PrintableStringRef::new("US").map_err(SimError::der("encoding a name"))?)
            .map_err(SimError::der("encoding a name"))?;
    let attributes = [
        (ID_OU, utf8("Engineering")?),
        (ID_OU, utf8(SIMULATED_OU)?),
        (ID_C, country),
        (ID_L, utf8("Santa Clara")?),
        (ID_ST, utf8("CA")?),
        (ID_O, utf8("Advanced Micro Devices")?),
        (ID_CN, utf8(cn)?),
    ];
    let rdns = attributes
        .into_iter()
        .map(|(oid, value)| {
            SetOfVec::try_from(vec![AttributeTypeAndValue { oid, value }])
                .map(RelativeDistinguishedName)
                .map_err(SimError::der("encoding a name"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RdnSequence(rdns))
}

/// RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48, parameters present.
fn pss_algorithm() -> Result<AlgorithmIdentifierOwned, SimError> {
    let params = RsaPssParams::new::<Sha384>(PSS_SALT_LEN);
    Ok(AlgorithmIdentifierOwned {
        oid: ID_RSASSA_PSS,
        parameters: Some(
            Any::encode_from(&params).map_err(SimError::der("encoding PSS parameters"))?,
        ),
    })
}

fn pss_sign(key: &RsaPrivateKey, tbs: &[u8]) -> Result<BitString, SimError> {
    let signer = BlindedSigningKey::<Sha384>::new_with_salt_len(key.clone(), PSS_SALT_LEN.into());
    let signature = signer
        .try_sign_with_rng(&mut OsRng, tbs)
        .map_err(SimError::crypto("signing with RSASSA-PSS"))?;
    BitString::from_bytes(&signature.to_bytes()).map_err(SimError::der("encoding a signature"))
}

fn time(at: SystemTime) -> Result<Time, SimError> {
    let dt = DateTime::from_system_time(at).map_err(SimError::der("encoding a time"))?;
    if dt.year() < 2050 {
        Ok(Time::UtcTime(
            UtcTime::from_date_time(dt).map_err(SimError::der("encoding a time"))?,
        ))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn validity(now: SystemTime, lifetime: Duration) -> Result<Validity, SimError> {
    let not_before = now.checked_sub(BACKDATE).unwrap_or(now);
    let not_after = now.checked_add(lifetime).unwrap_or(now);
    Ok(Validity {
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

/// A random positive 16-byte serial number.
fn random_serial() -> Result<SerialNumber, SimError> {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7F) | 0x01;
    SerialNumber::new(&bytes).map_err(SimError::der("encoding a serial number"))
}

fn extension(oid: ObjectIdentifier, critical: bool, value: Vec<u8>) -> Result<Extension, SimError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).map_err(SimError::der("encoding an extension"))?,
    })
}

fn encoded(value: &impl Encode) -> Result<Vec<u8>, SimError> {
    value
        .to_der()
        .map_err(SimError::der("encoding an extension"))
}

/// RFC 7093 method 1: the leftmost 160 bits of SHA-256 of the subjectPublicKey bits.
fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Result<OctetString, SimError> {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    OctetString::new(&digest[..20]).map_err(SimError::der("encoding a key identifier"))
}

fn rsa_spki(key: &RsaPrivateKey) -> Result<SubjectPublicKeyInfoOwned, SimError> {
    let der = key
        .to_public_key()
        .to_public_key_der()
        .map_err(SimError::crypto("encoding an RSA public key"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(SimError::der("decoding an SPKI"))
}

fn sign_certificate(tbs: TbsCertificate, issuer_key: &RsaPrivateKey) -> Result<Vec<u8>, SimError> {
    let tbs_der = tbs
        .to_der()
        .map_err(SimError::der("encoding a certificate"))?;
    let signature = pss_sign(issuer_key, &tbs_der)?;
    Certificate {
        signature_algorithm: tbs.signature.clone(),
        tbs_certificate: tbs,
        signature,
    }
    .to_der()
    .map_err(SimError::der("encoding a certificate"))
}

/// The self-signed simulated ARK of `product`, DER.
pub(crate) fn ark(
    product: Product,
    key: &RsaPrivateKey,
    now: SystemTime,
) -> Result<Vec<u8>, SimError> {
    let name = amd_name(&ark_cn(product))?;
    let spki = rsa_spki(key)?;
    let ski = key_identifier(&spki)?;
    let extensions = vec![
        extension(
            ID_KEY_USAGE,
            true,
            encoded(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
        )?,
        extension(ID_SKI, false, encoded(&SubjectKeyIdentifier(ski))?)?,
        extension(
            ID_BASIC_CONSTRAINTS,
            true,
            encoded(&BasicConstraints {
                ca: true,
                path_len_constraint: None,
            })?,
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: pss_algorithm()?,
        issuer: name.clone(),
        validity: validity(now, CA_LIFETIME)?,
        subject: name,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_certificate(tbs, key)
}

/// The simulated ASK of `product` (RSA key `ask_key`), signed by the ARK key, DER.
pub(crate) fn ask(
    product: Product,
    ask_key: &RsaPrivateKey,
    ark_key: &RsaPrivateKey,
    now: SystemTime,
) -> Result<Vec<u8>, SimError> {
    let spki = rsa_spki(ask_key)?;
    let ski = key_identifier(&spki)?;
    let aki = key_identifier(&rsa_spki(ark_key)?)?;
    let extensions = vec![
        extension(ID_SKI, false, encoded(&SubjectKeyIdentifier(ski))?)?,
        extension(
            ID_AKI,
            false,
            encoded(&AuthorityKeyIdentifier {
                key_identifier: Some(aki),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            })?,
        )?,
        extension(
            ID_BASIC_CONSTRAINTS,
            true,
            encoded(&BasicConstraints {
                ca: true,
                path_len_constraint: Some(0),
            })?,
        )?,
        extension(
            ID_KEY_USAGE,
            true,
            encoded(&KeyUsage(KeyUsages::KeyCertSign.into()))?,
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: random_serial()?,
        signature: pss_algorithm()?,
        issuer: amd_name(&ark_cn(product))?,
        validity: validity(now, CA_LIFETIME)?,
        subject: amd_name(&ask_cn(product))?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_certificate(tbs, ark_key)
}

/// What a VCEK certifies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VcekSubject<'a> {
    pub(crate) product: Product,
    /// The chip's hwID: 64 bytes, or 8 for Turin.
    pub(crate) hw_id: &'a [u8],
    /// The reported TCB the VCEK is valid for.
    pub(crate) tcb: Tcb,
    /// The VCEK public key, SubjectPublicKeyInfo DER.
    pub(crate) spki_der: &'a [u8],
}

/// A simulated VCEK signed by the ASK key, DER.
///
/// Extensions (all non-critical), in AMD's order:
///
/// | product | order |
/// |---------|-------|
/// | Milan, Genoa | `.1` structVersion 0, `.2` productName, `.3.1` bl, `.3.2` tee, `.3.4`-`.3.7` 0, `.3.3` snp, `.3.8` ucode, `.4` hwID (64 bytes) |
/// | Turin | `.1` structVersion 1, `.2` productName, `.3.9` fmc, `.3.1` bl, `.3.2` tee, `.3.3` snp, `.3.5`-`.3.7` 0, `.3.8` ucode, `.4` hwID (8 bytes) |
///
/// SPLs and structVersion are DER INTEGERs, productName an IA5String, and hwID the raw chip id
/// bytes (not wrapped in a further OCTET STRING), as in AMD's certificates.
pub(crate) fn vcek(
    subject: VcekSubject<'_>,
    ask_key: &RsaPrivateKey,
    now: SystemTime,
) -> Result<Vec<u8>, SimError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(subject.spki_der)
        .map_err(SimError::der("decoding the VCEK public key"))?;
    let oid = |suffix: &str| {
        ObjectIdentifier::new(&format!("{AMD_ARC}.{suffix}"))
            .map_err(|e| SimError::der("encoding an AMD OID")(e.into()))
    };
    let int = |suffix: &str, value: u8| extension(oid(suffix)?, false, encoded(&value)?);
    let tcb = subject.tcb;
    let product_name = Ia5String::new(vcek_product_name(subject.product))
        .map_err(SimError::der("encoding productName"))?;
    let mut extensions = Vec::with_capacity(11);
    let turin = subject.product.uses_turin_tcb();
    extensions.push(int("1", u8::from(turin))?);
    extensions.push(extension(oid("2")?, false, encoded(&product_name)?)?);
    if turin {
        extensions.push(int("3.9", tcb.fmc.unwrap_or(0))?);
        extensions.push(int("3.1", tcb.bootloader)?);
        extensions.push(int("3.2", tcb.tee)?);
        extensions.push(int("3.3", tcb.snp)?);
        for spl in ["3.5", "3.6", "3.7"] {
            extensions.push(int(spl, 0)?);
        }
    } else {
        extensions.push(int("3.1", tcb.bootloader)?);
        extensions.push(int("3.2", tcb.tee)?);
        for spl in ["3.4", "3.5", "3.6", "3.7"] {
            extensions.push(int(spl, 0)?);
        }
        extensions.push(int("3.3", tcb.snp)?);
    }
    extensions.push(int("3.8", tcb.microcode)?);
    extensions.push(extension(oid("4")?, false, subject.hw_id.to_vec())?);

    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&[0])
            .map_err(SimError::der("encoding a serial number"))?,
        signature: pss_algorithm()?,
        issuer: amd_name(&ask_cn(subject.product))?,
        validity: validity(now, VCEK_LIFETIME)?,
        subject: amd_name("SEV-VCEK")?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_certificate(tbs, ask_key)
}

/// A CRL of `product`'s ARK revoking `revoked` serial numbers (big-endian bytes), DER.
pub(crate) fn crl(
    product: Product,
    ark_key: &RsaPrivateKey,
    revoked: &[Vec<u8>],
    now: SystemTime,
) -> Result<Vec<u8>, SimError> {
    let this_update = time(now.checked_sub(BACKDATE).unwrap_or(now))?;
    let revoked_certificates = revoked
        .iter()
        .map(|serial| {
            Ok(RevokedCert {
                serial_number: SerialNumber::new(serial)
                    .map_err(SimError::der("encoding a serial number"))?,
                revocation_date: this_update,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, SimError>>()?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: pss_algorithm()?,
        issuer: amd_name(&ark_cn(product))?,
        this_update,
        next_update: Some(time(now.checked_add(CRL_LIFETIME).unwrap_or(now))?),
        revoked_certificates: (!revoked_certificates.is_empty()).then_some(revoked_certificates),
        crl_extensions: None,
    };
    let tbs_der = tbs.to_der().map_err(SimError::der("encoding a CRL"))?;
    let signature = pss_sign(ark_key, &tbs_der)?;
    CertificateList {
        signature_algorithm: tbs.signature.clone(),
        tbs_cert_list: tbs,
        signature,
    }
    .to_der()
    .map_err(SimError::der("encoding a CRL"))
}

/// PEM text of one DER certificate.
pub(crate) fn pem(der: &[u8]) -> Result<String, SimError> {
    x509_cert::der::pem::encode_string("CERTIFICATE", x509_cert::der::pem::LineEnding::LF, der)
        .map_err(|e| SimError::der("encoding PEM")(e.into()))
}

/// SHA-256 of a DER certificate: its fingerprint.
pub(crate) fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Extension OIDs and values of a DER certificate, in order.
    fn extensions(der: &[u8]) -> Vec<(String, Vec<u8>)> {
        let cert = Certificate::from_der(der).unwrap();
        cert.tbs_certificate
            .extensions
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.extn_id.to_string(), e.extn_value.as_bytes().to_vec()))
            .collect()
    }

    fn real(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/snp/reports")
            .join(name);
        std::fs::read(path).unwrap()
    }

    /// Every product's VCEK carries AMD's extensions in AMD's order with AMD's encodings: the
    /// values equal the real VCEK's when given the real chip's hwID, TCB and key.
    #[test]
    fn vceks_match_amds_extensions_for_every_product() {
        // A small issuer key is enough here: only the TBS contents are compared.
        let issuer = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        for (product, file) in [
            (Product::Milan, "oak-milan-oc-release-vcek.der"),
            (Product::Genoa, "oak-genoa-oc-vcek.der"),
            (Product::Turin, "oak-turin-oc-vcek.der"),
        ] {
            let amd_der = real(file);
            let amd = Certificate::from_der(&amd_der).unwrap();
            let amd_ext = extensions(&amd_der);
            let value = |suffix: &str| -> Vec<u8> {
                let oid = format!("{AMD_ARC}.{suffix}");
                amd_ext.iter().find(|(o, _)| *o == oid).unwrap().1.clone()
            };
            let spl = |suffix: &str| *value(suffix).last().unwrap();
            let tcb = Tcb {
                fmc: product.uses_turin_tcb().then(|| spl("3.9")),
                bootloader: spl("3.1"),
                tee: spl("3.2"),
                snp: spl("3.3"),
                microcode: spl("3.8"),
            };
            let spki = amd
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .unwrap();
            let ours = vcek(
                VcekSubject {
                    product,
                    hw_id: &value("4"),
                    tcb,
                    spki_der: &spki,
                },
                &issuer,
                SystemTime::now(),
            )
            .unwrap();
            assert_eq!(extensions(&ours), amd_ext, "{product}");
            let ours = Certificate::from_der(&ours).unwrap();
            assert_eq!(
                ours.tbs_certificate.signature.to_der().unwrap(),
                amd.tbs_certificate.signature.to_der().unwrap(),
                "{product}: same RSASSA-PSS parameters as AMD's VCEK"
            );
            assert_eq!(
                ours.tbs_certificate.serial_number,
                amd.tbs_certificate.serial_number
            );
            let amd_subject = amd.tbs_certificate.subject.to_string();
            let ours_subject = ours.tbs_certificate.subject.to_string();
            assert_eq!(
                ours_subject.replace(&format!("OU={SIMULATED_OU},"), ""),
                amd_subject,
                "{product}: AMD's name plus the simulator's OU"
            );
        }
    }
}
