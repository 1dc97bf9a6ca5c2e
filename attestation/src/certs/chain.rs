//! ARK → ASK/ASVK → VCEK/VLEK chain verification, returning a [`VerifiedVek`] proof.

use time::OffsetDateTime;

use super::signature::REPORT_SIGNATURE_COMPONENT_LEN;
use super::{
    Certificate, ChainError, ReportSignatureError, Role, Roots, TrustOrigin, VekExtensions,
    VekKind, VerifiedCrl,
};
use crate::Product;

/// Certificates supplied with a piece of evidence, sorted by role.
///
/// Invariant: each slot holds a certificate of its role; the VEK slot a VCEK or VLEK.
#[derive(Clone, Debug)]
pub struct CertChain {
    ark: Option<Certificate>,
    ask: Option<Certificate>,
    asvk: Option<Certificate>,
    vek: Certificate,
}

impl CertChain {
    /// Sorts certificates in any order (e.g. an extended report's certificate table or a
    /// trustee `cert_chain`) into their roles.
    ///
    /// # Errors
    ///
    /// [`ChainError::DuplicateRole`] if a role appears twice, [`ChainError::MissingVek`] if
    /// there is no VCEK or VLEK.
    pub fn from_certificates(
        certs: impl IntoIterator<Item = Certificate>,
    ) -> Result<Self, ChainError> {
        let (mut ark, mut ask, mut asvk, mut vek) = (None, None, None, None);
        for cert in certs {
            let role = cert.role();
            let slot = match role {
                Role::Ark => &mut ark,
                Role::Ask => &mut ask,
                Role::Asvk => &mut asvk,
                Role::Vcek | Role::Vlek => &mut vek,
            };
            if slot.replace(cert).is_some() {
                return Err(ChainError::DuplicateRole { role });
            }
        }
        Ok(Self {
            ark,
            ask,
            asvk,
            vek: vek.ok_or(ChainError::MissingVek)?,
        })
    }

    /// A chain of just the VEK; the ASK or ASVK then comes from the trust anchors.
    ///
    /// # Errors
    ///
    /// [`ChainError::MissingVek`] if `vek` is not a VCEK or VLEK.
    pub fn from_vek(vek: Certificate) -> Result<Self, ChainError> {
        Self::from_certificates([vek])
    }

    /// The supplied ARK, if any.
    pub fn ark(&self) -> Option<&Certificate> {
        self.ark.as_ref()
    }

    /// The supplied ASK, if any.
    pub fn ask(&self) -> Option<&Certificate> {
        self.ask.as_ref()
    }

    /// The supplied ASVK, if any.
    pub fn asvk(&self) -> Option<&Certificate> {
        self.asvk.as_ref()
    }

    /// The VCEK or VLEK.
    pub fn vek(&self) -> &Certificate {
        &self.vek
    }

    fn intermediate(&self, role: Role) -> Option<&Certificate> {
        match role {
            Role::Ask => self.ask(),
            Role::Asvk => self.asvk(),
            Role::Ark | Role::Vcek | Role::Vlek => None,
        }
    }
}

/// Proof that a VCEK or VLEK chains to pinned trust anchors at a given time.
///
/// Only [`verify_chain`] and [`verify_chain_with_crl`] build it, so holding one means every
/// check has run (rustls `HandshakeSignatureValid` style). It is cheap to clone and to keep:
/// verify many reports with one cached `VerifiedVek`.
#[derive(Clone, Debug)]
pub struct VerifiedVek {
    vek: Certificate,
    extensions: VekExtensions,
    kind: VekKind,
    product: Product,
    origin: TrustOrigin,
}

impl VerifiedVek {
    /// The verified VCEK or VLEK.
    pub fn certificate(&self) -> &Certificate {
        &self.vek
    }

    /// Its AMD extensions (TCB, chip id, product name, CSP).
    pub fn extensions(&self) -> &VekExtensions {
        &self.extensions
    }

    /// Whether it is a VCEK or a VLEK.
    pub fn kind(&self) -> VekKind {
        self.kind
    }

    /// The product whose roots it chains to.
    pub fn product(&self) -> Product {
        self.product
    }

    /// Whose roots it chains to.
    pub fn origin(&self) -> TrustOrigin {
        self.origin
    }

    /// Whether it chains to non-AMD (simulator) roots; verdicts must say `"simulated": true`.
    pub fn is_simulated(&self) -> bool {
        self.origin.is_simulated()
    }

    /// Verifies an attestation report signature by this key: ECDSA P-384 with SHA-384 over
    /// `signed_bytes` exactly as received (report bytes 0x000..0x2A0), with R and S as the
    /// report stores them (72 bytes little-endian each, at 0x2A0 and 0x2E8).
    ///
    /// # Errors
    ///
    /// [`ReportSignatureError::HighBytes`] if bytes 48..72 of R or S are non-zero,
    /// [`ReportSignatureError::Invalid`] if the signature does not verify.
    pub fn verify_report_signature(
        &self,
        signed_bytes: &[u8],
        r_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
        s_le: &[u8; REPORT_SIGNATURE_COMPONENT_LEN],
    ) -> Result<(), ReportSignatureError> {
        self.vek
            .verify_report_signature_unchecked(signed_bytes, r_le, s_le)
    }
}

/// Verifies `chain` up to the pinned roots of `product` as of `at`.
///
/// The recipe (trustee's, `deps/verifier/src/snp/mod.rs`, made strict):
/// 1. `roots` must have anchors for `product`;
/// 2. a supplied ARK must be the pinned one (same bytes, or same key and subject with a valid
///    self-signature); the pinned ARK must be valid at `at`;
/// 3. the VEK's productName must name `product`;
/// 4. the VEK's issuer (ASK for a VCEK, ASVK for a VLEK) is the supplied one, else the
///    anchor's; unless it is byte-equal to the pre-verified anchor, the ARK must have issued
///    it; it must be valid at `at`;
/// 5. that intermediate must have issued the VEK, which must be valid at `at`.
///
/// # Errors
///
/// [`ChainError`] naming the first failing step.
pub fn verify_chain(
    roots: &Roots,
    product: Product,
    chain: &CertChain,
    at: OffsetDateTime,
) -> Result<VerifiedVek, ChainError> {
    verify(roots, product, chain, at, None)
}

/// [`verify_chain`], then checks the intermediate and the VEK against `crl`, which must have
/// been issued by the pinned ARK of `product`.
///
/// # Errors
///
/// As [`verify_chain`], plus [`ChainError::CrlIssuer`] and [`ChainError::Revoked`].
pub fn verify_chain_with_crl(
    roots: &Roots,
    product: Product,
    chain: &CertChain,
    at: OffsetDateTime,
    crl: &VerifiedCrl,
) -> Result<VerifiedVek, ChainError> {
    verify(roots, product, chain, at, Some(crl))
}

fn verify(
    roots: &Roots,
    product: Product,
    chain: &CertChain,
    at: OffsetDateTime,
    crl: Option<&VerifiedCrl>,
) -> Result<VerifiedVek, ChainError> {
    let origin = roots.origin();
    let anchors = roots
        .get(product)
        .ok_or(ChainError::UnknownProduct { product, origin })?;
    let link = |issuer, child| {
        move |source| ChainError::Link {
            product,
            issuer,
            child,
            source,
        }
    };

    // ARK: pinned; a supplied one must be the same key.
    let ark = anchors.ark();
    if let Some(supplied) = chain.ark() {
        if supplied != ark {
            let same_key = supplied.spki_der() == ark.spki_der()
                && supplied.subject_der() == ark.subject_der();
            if !same_key || supplied.verify_signed(supplied).is_err() {
                return Err(ChainError::ArkMismatch { product, origin });
            }
        }
    }
    ark.check_validity(at).map_err(link(Role::Ark, Role::Ark))?;

    // VEK identity.
    let vek = chain.vek();
    let (kind, extensions) = vek
        .vek_kind()
        .zip(vek.vek_extensions())
        .ok_or(ChainError::MissingVek)?;
    if extensions.product != product {
        return Err(ChainError::ProductName {
            product,
            role: vek.role(),
            product_name: extensions.product_name.clone(),
        });
    }

    // ASK or ASVK.
    let role = kind.issuer_role();
    let pinned = anchors.intermediate(role);
    let intermediate = chain
        .intermediate(role)
        .or(pinned)
        .ok_or(ChainError::MissingIntermediate { role, product })?;
    if let Some(actual) = intermediate.product().filter(|&actual| actual != product) {
        return Err(ChainError::Generation {
            product,
            role,
            actual,
        });
    }
    let check = if pinned == Some(intermediate) {
        // Signature checked when the anchors were built.
        intermediate.check_validity(at)
    } else {
        ark.verify_issued(intermediate, at)
    };
    check.map_err(link(Role::Ark, role))?;

    // VEK.
    intermediate
        .verify_issued(vek, at)
        .map_err(link(role, vek.role()))?;

    if let Some(crl) = crl {
        if !crl.issued_by(ark) {
            return Err(ChainError::CrlIssuer { product });
        }
        for cert in [intermediate, vek] {
            if crl.is_revoked(cert.serial()) {
                return Err(ChainError::Revoked {
                    role: cert.role(),
                    serial: hex::encode(cert.serial()),
                });
            }
        }
    }

    Ok(VerifiedVek {
        vek: vek.clone(),
        extensions: extensions.clone(),
        kind,
        product,
        origin,
    })
}
