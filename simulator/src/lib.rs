//! Simulated AMD secure processor (see `DESIGN.md`, "Simulator trust separation").
//!
//! A [`Simulator`] owns a simulated root of trust per A3S home, never AMD's: per product an ARK
//! and ASK (RSA-4096, RSASSA-PSS certificates in AMD's profile, marked
//! `OU=A3S Box SEV-SNP simulator (not AMD)`) and per simulated chip a VCEK (ECDSA P-384) for the
//! chip's TCB. With them it
//!
//! - signs attestation reports with the real SNP layout ([`sign`]),
//! - derives keys with MSG_KEY_REQ semantics ([`mod@derive`]),
//! - serves the chain, VCEKs and CRL at AMD's KDS paths ([`kds`]).
//!
//! The verifier trusts this hierarchy only when told to, through custom trust anchors built
//! from [`Simulator::ark_der`] and [`Simulator::ask_der`]. Storage layout and crash safety are
//! described in [`keys`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attester;
mod cert;
pub mod derive;
mod error;
pub mod kds;
pub mod keys;
pub mod sign;
mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use a3s_attestation::{Product, Report};

pub use a3s_attestation::key_request::{
    GuestFieldSelect, KeyRequest, KeyRequestError, KeySelect, RootKey,
};
pub use attester::SimAttester;
pub use cert::SIMULATED_OU;
pub use derive::{DeriveError, DerivedKey};
pub use error::SimError;
pub use keys::{Chip, ChipConfig, ChipId, InvalidChipId};
pub use sign::{GuestContext, ReportRequest, ReportVersion, SignError};

use keys::ProductKeys;

/// The simulated secure processor of one A3S home.
///
/// It holds the root of trust of every product provisioned in the home; the product it was
/// opened with is the default one, whose first chip signs [`Simulator::report`]s.
#[derive(Debug)]
pub struct Simulator {
    sim_dir: PathBuf,
    product: Product,
    products: BTreeMap<Product, ProductKeys>,
}

/// A SHA-256 fingerprint of a DER certificate; displays as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// What a simulator holds, for display (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInfo {
    /// The default product.
    pub product: Product,
    /// Every provisioned product.
    pub products: Vec<ProductInfo>,
}

/// One product's simulated root of trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    /// The product.
    pub product: Product,
    /// SHA-256 of the ARK certificate (DER): identifies this home's simulated root.
    pub ark_fingerprint: Fingerprint,
    /// SHA-256 of the ASK certificate (DER).
    pub ask_fingerprint: Fingerprint,
    /// The chips, the default one first.
    pub chips: Vec<ChipInfo>,
}

/// One simulated chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipInfo {
    /// The chip id.
    pub id: ChipId,
    /// Its platform state (TCB, firmware version).
    pub config: ChipConfig,
}

impl Simulator {
    /// Opens the simulator of A3S home `home` (files under `<home>/simulator/`), creating the
    /// root of trust of `product` with one chip if the home has none yet. Products created
    /// earlier in the home are loaded too. `product` becomes the default product.
    ///
    /// Creation generates two RSA-4096 keys (a few seconds); it happens once per home and
    /// product, atomically and under a lock, so concurrent processes end up with the same keys.
    ///
    /// # Errors
    /// [`SimError`] when the files cannot be created or read, or are corrupt.
    pub fn open_or_create(home: &Path, product: Product) -> Result<Self, SimError> {
        let sim_dir = store::sim_dir(home);
        let mut products = BTreeMap::new();
        products.insert(product, ProductKeys::open_or_create(&sim_dir, product)?);
        for other in Product::ALL {
            if other != product {
                if let Some(keys) = ProductKeys::open_existing(&sim_dir, other)? {
                    products.insert(other, keys);
                }
            }
        }
        Ok(Self {
            sim_dir,
            product,
            products,
        })
    }

    /// Opens this home's simulator without creating anything: `None` when no product has been
    /// provisioned here (verifiers use this, so verifying never generates keys).
    ///
    /// # Errors
    /// [`SimError`] when stored keys exist but cannot be read.
    pub fn open_existing(home: &Path) -> Result<Option<Self>, SimError> {
        let sim_dir = store::sim_dir(home);
        let mut products = BTreeMap::new();
        for product in Product::ALL {
            if let Some(keys) = ProductKeys::open_existing(&sim_dir, product)? {
                products.insert(product, keys);
            }
        }
        let Some(&product) = products.keys().next() else {
            return Ok(None);
        };
        Ok(Some(Self {
            sim_dir,
            product,
            products,
        }))
    }

    /// This home's simulated roots as trust anchors for the verifier (tagged custom, so every
    /// report verified with them is reported as simulated).
    ///
    /// # Errors
    /// [`SimError::Corrupt`] when a stored root does not parse as an AMD-profile certificate.
    pub fn roots(&self) -> Result<a3s_attestation::certs::Roots, SimError> {
        use a3s_attestation::certs::{Certificate, ProductRoots, Roots};
        let corrupt = |why: String| SimError::Corrupt {
            path: self.sim_dir.clone(),
            why,
        };
        let mut anchors = Vec::new();
        for (&product, keys) in &self.products {
            let ark = Certificate::from_der(&keys.ark_der)
                .map_err(|e| corrupt(format!("{product} ARK: {e}")))?;
            let ask = Certificate::from_der(&keys.ask_der)
                .map_err(|e| corrupt(format!("{product} ASK: {e}")))?;
            anchors.push(
                ProductRoots::new(product, ark, Some(ask), None)
                    .map_err(|e| corrupt(format!("{product} roots: {e}")))?,
            );
        }
        Roots::custom(anchors).map_err(|e| corrupt(format!("roots: {e}")))
    }

    /// The VCEK of the simulated chip whose id a report carries, with its product.
    pub fn find_vcek(&self, chip_id: &[u8; 64]) -> Option<(Product, &[u8])> {
        let id = ChipId::new(*chip_id);
        self.products
            .keys()
            .find_map(|&p| self.vcek_der(p, &id).ok().map(|der| (p, der)))
    }

    /// Provisions `product` in this home too (creating its root of trust if needed).
    ///
    /// # Errors
    /// As [`Simulator::open_or_create`].
    pub fn ensure_product(&mut self, product: Product) -> Result<(), SimError> {
        if !self.products.contains_key(&product) {
            let keys = ProductKeys::open_or_create(&self.sim_dir, product)?;
            self.products.insert(product, keys);
        }
        Ok(())
    }

    /// Adds a chip with `config` to `product`, with a fresh chip id, VCEK and chip secret.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`], or file and key errors.
    pub fn add_chip(&mut self, product: Product, config: ChipConfig) -> Result<ChipId, SimError> {
        let keys = self
            .products
            .get_mut(&product)
            .ok_or(SimError::ProductNotProvisioned(product))?;
        Ok(*keys.add_chip(&self.sim_dir, config)?.id())
    }

    /// The default product.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The simulator's directory (`<home>/simulator`).
    pub fn dir(&self) -> &Path {
        &self.sim_dir
    }

    /// Fingerprints, chips and TCBs of every provisioned product.
    pub fn info(&self) -> SimInfo {
        SimInfo {
            product: self.product,
            products: self
                .products
                .values()
                .map(|keys| ProductInfo {
                    product: keys.product,
                    ark_fingerprint: Fingerprint(cert::fingerprint(&keys.ark_der)),
                    ask_fingerprint: Fingerprint(cert::fingerprint(&keys.ask_der)),
                    chips: keys
                        .chips
                        .iter()
                        .map(|c| ChipInfo {
                            id: *c.id(),
                            config: *c.config(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn keys(&self, product: Product) -> Result<&ProductKeys, SimError> {
        self.products
            .get(&product)
            .ok_or(SimError::ProductNotProvisioned(product))
    }

    /// The default chip: the first chip of the default product.
    pub fn default_chip(&self) -> &Chip {
        self.products
            .get(&self.product)
            .and_then(|keys| keys.chips.first())
            .expect("open_or_create loads the default product, which always has a chip")
    }

    /// The chip of `product` with id `id`.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`] or [`SimError::UnknownChip`].
    pub fn chip(&self, product: Product, id: &ChipId) -> Result<&Chip, SimError> {
        self.keys(product)?
            .chips
            .iter()
            .find(|c| c.id() == id)
            .ok_or_else(|| SimError::UnknownChip {
                product,
                chip: id.kds_hex(product),
            })
    }

    /// A report for `request`, signed by the default chip's VCEK.
    ///
    /// # Errors
    /// [`SignError`] when the request breaks a firmware rule (VMPL).
    pub fn report(&self, request: &ReportRequest) -> Result<Report, SignError> {
        sign::sign_report(self.default_chip(), request)
    }

    /// A key derived on the default chip for `guest`, as MSG_KEY_REQ `request` asks.
    ///
    /// # Errors
    /// [`DeriveError`] when the request breaks a firmware rule (VMPL, SVN, TCB, VLEK).
    pub fn derive_key(
        &self,
        guest: &GuestContext,
        request: &KeyRequest,
    ) -> Result<DerivedKey, DeriveError> {
        derive::derive_key(self.default_chip(), guest, request)
    }

    /// The simulated ARK certificate of `product`, DER.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`].
    pub fn ark_der(&self, product: Product) -> Result<&[u8], SimError> {
        Ok(&self.keys(product)?.ark_der)
    }

    /// The simulated ASK certificate of `product`, DER.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`].
    pub fn ask_der(&self, product: Product) -> Result<&[u8], SimError> {
        Ok(&self.keys(product)?.ask_der)
    }

    /// The simulated CRL of `product` (issued by the ARK, no revoked certificate), DER.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`].
    pub fn crl_der(&self, product: Product) -> Result<&[u8], SimError> {
        Ok(&self.keys(product)?.crl_der)
    }

    /// A CRL of `product`'s simulated ARK revoking the certificates with these serial numbers
    /// (big-endian bytes), DER: what a revocation of a simulated chip looks like.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`], or the ARK key cannot be read.
    pub fn revocation_list(
        &self,
        product: Product,
        revoked: &[Vec<u8>],
    ) -> Result<Vec<u8>, SimError> {
        self.keys(product)?.revocation_list(revoked)
    }

    /// The chain as KDS serves it at `/vcek/v1/<product>/cert_chain`: ASK then ARK, PEM.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`], or a PEM encoding error.
    pub fn cert_chain_pem(&self, product: Product) -> Result<String, SimError> {
        let keys = self.keys(product)?;
        Ok(cert::pem(&keys.ask_der)? + &cert::pem(&keys.ark_der)?)
    }

    /// The VCEK certificate of the chip of `product` with id `chip`, DER.
    ///
    /// # Errors
    /// [`SimError::ProductNotProvisioned`] or [`SimError::UnknownChip`].
    pub fn vcek_der(&self, product: Product, chip: &ChipId) -> Result<&[u8], SimError> {
        Ok(self.chip(product, chip)?.vcek_der())
    }
}
