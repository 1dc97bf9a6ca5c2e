//! Finding the certificates a report needs: those supplied by the caller (files, or the
//! certificate table that came with the evidence), else the VCEK from a [`CertSource`] (AMD's
//! KDS, its cache, or the simulator's KDS), plus the CRL when one can be had.

use time::OffsetDateTime;

use crate::certs::{
    CertChain, Certificate, ChainError, Crl, CrlError, Roots, VekKind, VerifiedCrl,
};
use crate::kds::{CertSource, KdsError, TcbSpls, VcekId};
use crate::report::{GenerationHint, SigningKey};
use crate::{Product, Report};

/// The certificates for a report could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatherError {
    /// The supplied certificates do not form a chain.
    #[error("supplied certificates")]
    Supplied(#[from] ChainError),
    /// No VEK was supplied and the report is VLEK-signed (KDS does not serve VLEKs by chip).
    #[error("report is VLEK-signed and no VLEK was supplied: pass it with --vcek FILE")]
    VlekNotFetchable,
    /// No VEK was supplied and the generation cannot be told.
    #[error(
        "cannot tell this report's generation to fetch its VCEK: pass the VCEK with --vcek FILE"
    )]
    UnknownGeneration,
    /// No VEK was supplied and there is nowhere to fetch it from.
    #[error(
        "no VCEK given and no certificate source: pass --vcek FILE or allow fetching from KDS"
    )]
    NoSource,
    /// Fetching from the source failed.
    #[error("fetching the VCEK")]
    Kds(#[from] KdsError),
    /// The fetched VCEK is not a certificate.
    #[error("the fetched VCEK is not a valid certificate")]
    Fetched(#[source] crate::certs::CertError),
}

impl GatherError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Kds(e) => e.hint(),
            _ => None,
        }
    }
}

/// The VCEK identity (chip and TCB) a report names at `product`'s KDS.
pub fn vcek_id(report: &Report, product: Product) -> VcekId {
    let tcb = report.reported_tcb().decode(report.tcb_layout_for(product));
    VcekId {
        product,
        chip_id: report.chip_id(),
        tcb: TcbSpls {
            bl: tcb.bootloader,
            tee: tcb.tee,
            snp: tcb.snp,
            ucode: tcb.microcode,
            fmc: tcb.fmc,
        },
    }
}

/// The generations a report may come from, most likely first.
pub fn candidate_products(report: &Report) -> Vec<Product> {
    match report.generation_hint() {
        GenerationHint::Known(p) => vec![p],
        GenerationHint::MilanOrGenoa => vec![Product::Milan, Product::Genoa],
        GenerationHint::Unknown => Vec::new(),
    }
}

/// Builds the chain for `report` from `supplied` certificates, fetching the VCEK from
/// `source` when none was supplied.
///
/// # Errors
/// [`GatherError`] when no usable chain can be assembled.
pub fn gather_chain(
    report: &Report,
    supplied: Vec<Certificate>,
    source: Option<&dyn CertSource>,
) -> Result<CertChain, GatherError> {
    if supplied.iter().any(|c| c.vek_kind().is_some()) {
        return Ok(CertChain::from_certificates(supplied)?);
    }
    if report.key_info().signing_key() == SigningKey::Vlek {
        return Err(GatherError::VlekNotFetchable);
    }
    let source = source.ok_or(GatherError::NoSource)?;
    let candidates = candidate_products(report);
    if candidates.is_empty() {
        return Err(GatherError::UnknownGeneration);
    }
    let mut last = None;
    for product in candidates {
        match source.vcek(&vcek_id(report, product)) {
            Ok(der) => {
                let vek = Certificate::from_der(&der).map_err(GatherError::Fetched)?;
                let mut certs = supplied;
                certs.push(vek);
                return Ok(CertChain::from_certificates(certs)?);
            }
            // Milan and Genoa share a layout: a 404 at one means try the other.
            Err(e @ KdsError::NotFound { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or(GatherError::UnknownGeneration, GatherError::from))
}

/// Why no CRL was used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CrlUnavailable {
    /// The source could not provide one (offline and not cached, network error).
    #[error("no CRL available")]
    Fetch(#[from] KdsError),
    /// The CRL did not parse or verify against the ARK.
    #[error("the CRL is invalid")]
    Invalid(#[from] CrlError),
    /// The trust anchors have no ARK for the product.
    #[error("no ARK for {0}")]
    NoRoot(Product),
}

/// Fetches and verifies `product`'s CRL for `kind` against the ARK in `roots`.
///
/// # Errors
/// [`CrlUnavailable`] saying why revocation cannot be checked.
pub fn fetch_crl(
    source: &dyn CertSource,
    roots: &Roots,
    product: Product,
    kind: VekKind,
    at: OffsetDateTime,
) -> Result<VerifiedCrl, CrlUnavailable> {
    let der = source.crl(product, kind)?;
    let ark = roots
        .get(product)
        .ok_or(CrlUnavailable::NoRoot(product))?
        .ark();
    Ok(Crl::from_der(&der)?.verify(ark, at)?)
}
