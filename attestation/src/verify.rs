//! Verifying a report: certificate chain to the trusted roots, VEK extensions against the
//! report, and the report signature. A [`VerifiedReport`] can only be built here.
//!
//! The checks, in order, and why:
//! 1. the report names a signing key (VCEK or VLEK) and the chain's VEK is of that kind:
//!    a VLEK-signed report must not be accepted on a VCEK's authority or the other way round;
//! 2. the generation the report tells (CPUID, chip id shape) agrees with the VEK's product, so
//!    the TCB is decoded in the right layout;
//! 3. ARK → ASK/ASVK → VEK with RSA-PSS SHA-384 and validity "as of" the given time, the ARK
//!    pinned to the trust anchors (AMD's built-in roots, or a simulator's);
//! 4. revocation, when a CRL signed by that ARK is given;
//! 5. the VEK extensions: hwID equals the report's chip id (8 bytes on Turin, rest zero) and
//!    every SPL (boot loader, TEE, SNP, microcode and Turin's FMC) equals REPORTED_TCB, because
//!    a VCEK is only valid for the TCB it was derived for;
//! 6. ECDSA P-384 over bytes `0x000..0x2A0` as received, r and s little-endian.

use time::OffsetDateTime;

use crate::certs::{
    verify_chain, verify_chain_with_crl, CertChain, ChainError, ReportSignatureError, Roots,
    VekKind, VerifiedCrl, VerifiedVek,
};
use crate::report::{GenerationHint, KeyInfo, SigningKey, Tcb, TcbLayout};
use crate::{Product, Report};

/// A report whose signature chains to trusted roots. Only the verifier constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    report: Report,
    product: Product,
    signing_key: SigningKey,
    simulated: bool,
}

impl VerifiedReport {
    pub(crate) fn new(report: Report, product: Product, simulated: bool) -> Self {
        let signing_key = report.key_info().signing_key();
        Self {
            report,
            product,
            signing_key,
            simulated,
        }
    }

    /// The verified report.
    pub fn report(&self) -> &Report {
        &self.report
    }
    /// The generation of the chip that signed it (from the VEK's product name).
    pub fn product(&self) -> Product {
        self.product
    }
    /// The TCB layout of the signing chip.
    pub fn tcb_layout(&self) -> TcbLayout {
        self.report.tcb_layout_for(self.product)
    }
    /// REPORTED_TCB decoded for the signing chip's layout.
    pub fn reported_tcb(&self) -> Tcb {
        self.report.reported_tcb().decode(self.tcb_layout())
    }
    /// Which key signed the report (VCEK or VLEK).
    pub fn signing_key(&self) -> SigningKey {
        self.signing_key
    }
    /// Key information of the report.
    pub fn key_info(&self) -> KeyInfo {
        self.report.key_info()
    }
    /// The report chains to a simulator's roots, not AMD's.
    pub fn simulated(&self) -> bool {
        self.simulated
    }
}

/// Why a report did not verify. Each variant is one step of the recipe in the module docs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The report says it is not signed.
    #[error("report is not signed (key info signing key = none)")]
    Unsigned,
    /// The report and the certificate disagree on VCEK versus VLEK.
    #[error("report is signed by a {report} but the certificate is a {cert}")]
    KeyKind {
        /// What the report's key info says.
        report: &'static str,
        /// What the certificate is.
        cert: &'static str,
    },
    /// The report's generation and the VEK's product disagree.
    #[error("report comes from {report} but the certificate is for {cert}")]
    Generation {
        /// Generation per the report.
        report: String,
        /// Product per the certificate.
        cert: Product,
    },
    /// The certificate chain does not verify.
    #[error("certificate chain")]
    Chain(#[from] ChainError),
    /// The VCEK's hwID is not the report's chip id.
    #[error("chip id in report ({report}) does not match the VCEK hwID ({cert})")]
    ChipId {
        /// Chip id from the report (hex).
        report: String,
        /// hwID from the certificate (hex).
        cert: String,
    },
    /// A VEK SPL differs from the reported TCB.
    #[error(
        "{component} SPL in the certificate is {cert}, the report's REPORTED_TCB says {report}"
    )]
    Tcb {
        /// Which component.
        component: &'static str,
        /// Value in the certificate.
        cert: u8,
        /// Value in the report.
        report: u8,
    },
    /// The report signature does not verify with the VEK.
    #[error("report signature")]
    Signature(#[from] ReportSignatureError),
}

impl VerifyError {
    /// The name of the failed check, as printed in verdicts.
    pub fn check_name(&self) -> &'static str {
        match self {
            Self::Unsigned | Self::KeyKind { .. } => "signing_key",
            Self::Generation { .. } => "generation",
            Self::Chain(ChainError::Revoked { .. }) => "revocation",
            Self::Chain(_) => "certificate_chain",
            Self::ChipId { .. } => "chip_id",
            Self::Tcb { .. } => "reported_tcb",
            Self::Signature(_) => "signature",
        }
    }
}

/// Verifies `report` against `chain` and `roots` as of `at`, checking revocation with `crl`
/// when given.
///
/// # Errors
/// [`VerifyError`] naming the first check that failed.
pub fn verify(
    report: &Report,
    chain: &CertChain,
    roots: &Roots,
    at: OffsetDateTime,
    crl: Option<&VerifiedCrl>,
) -> Result<VerifiedReport, VerifyError> {
    let vek_product = check_key_and_generation(report, chain)?;
    let vek = match crl {
        Some(crl) => verify_chain_with_crl(roots, vek_product, chain, at, crl)?,
        None => verify_chain(roots, vek_product, chain, at)?,
    };
    verify_with_vek(report, &vek)
}

/// Verifies `report` with an already verified VEK (e.g. one cached for a fleet of reports).
///
/// # Errors
/// [`VerifyError`] naming the first check that failed.
pub fn verify_with_vek(report: &Report, vek: &VerifiedVek) -> Result<VerifiedReport, VerifyError> {
    check_key_kind(report, vek.kind())?;
    check_extensions(report, vek)?;
    vek.verify_report_signature(
        report.signed_bytes(),
        &report.signature_r(),
        &report.signature_s(),
    )?;
    Ok(VerifiedReport::new(
        report.clone(),
        vek.product(),
        vek.is_simulated(),
    ))
}

fn check_key_kind(report: &Report, cert: VekKind) -> Result<(), VerifyError> {
    let want = match report.key_info().signing_key() {
        SigningKey::None => return Err(VerifyError::Unsigned),
        SigningKey::Vcek => VekKind::Vcek,
        SigningKey::Vlek => VekKind::Vlek,
    };
    if want != cert {
        return Err(VerifyError::KeyKind {
            report: report.key_info().signing_key().as_str(),
            cert: cert.as_str(),
        });
    }
    Ok(())
}

/// Checks steps 1 and 2 and returns the product whose roots the chain must reach.
fn check_key_and_generation(report: &Report, chain: &CertChain) -> Result<Product, VerifyError> {
    let vek = chain.vek();
    let kind = vek
        .vek_kind()
        .ok_or(VerifyError::Chain(ChainError::MissingVek))?;
    check_key_kind(report, kind)?;
    let cert = vek
        .product()
        .ok_or(VerifyError::Chain(ChainError::MissingVek))?;
    let agrees = match report.generation_hint() {
        GenerationHint::Known(p) => p == cert,
        GenerationHint::MilanOrGenoa => matches!(cert, Product::Milan | Product::Genoa),
        GenerationHint::Unknown => true,
    };
    if !agrees {
        let said = match report.generation_hint() {
            GenerationHint::Known(p) => p.as_str().to_owned(),
            _ => "milan or genoa".to_owned(),
        };
        return Err(VerifyError::Generation { report: said, cert });
    }
    Ok(cert)
}

fn check_extensions(report: &Report, vek: &VerifiedVek) -> Result<(), VerifyError> {
    let ext = vek.extensions();
    let product = vek.product();
    if let Some(hw_id) = &ext.hw_id {
        let chip = report.chip_id();
        let masked = report.key_info().mask_chip_key() && chip == [0u8; 64];
        // A masked chip id carries nothing to compare; the VCEK signature still binds the chip.
        if !masked {
            let n = product.chip_id_len();
            let matches =
                hw_id.len() == n && chip[..n] == hw_id[..] && chip[n..].iter().all(|&b| b == 0);
            if !matches {
                return Err(VerifyError::ChipId {
                    report: hex::encode(chip),
                    cert: hex::encode(hw_id),
                });
            }
        }
    }
    let tcb = report.reported_tcb().decode(report.tcb_layout_for(product));
    let mut pairs = vec![
        ("bootloader", ext.bl_spl, tcb.bootloader),
        ("tee", ext.tee_spl, tcb.tee),
        ("snp", ext.snp_spl, tcb.snp),
        ("microcode", ext.ucode_spl, tcb.microcode),
    ];
    if let (Some(cert), Some(rep)) = (ext.fmc_spl, tcb.fmc) {
        pairs.push(("fmc", cert, rep));
    }
    for (component, cert, report) in pairs {
        if cert != report {
            return Err(VerifyError::Tcb {
                component,
                cert,
                report,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
