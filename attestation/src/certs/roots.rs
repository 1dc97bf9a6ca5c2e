//! Trust anchors: AMD's built-in ARK, ASK and ASVK per product, or caller-supplied ones (the
//! simulator's), tagged so that a verdict can say whether it rests on AMD.

use std::fmt;
use std::sync::OnceLock;

use super::{Certificate, Role, RootsError};
use crate::Product;

/// Whose keys a set of trust anchors holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrustOrigin {
    /// AMD's own roots, built into this crate.
    Amd,
    /// Roots supplied at run time, such as the simulator's; evidence verified against them is
    /// reported as simulated.
    Custom,
}

impl TrustOrigin {
    /// Whether evidence verified against these anchors must be reported as simulated.
    pub fn is_simulated(self) -> bool {
        !matches!(self, Self::Amd)
    }
}

impl fmt::Display for TrustOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Amd => "amd",
            Self::Custom => "custom",
        })
    }
}

/// The pinned ARK of one product and the intermediates it issued.
///
/// Invariant: the ARK is self-signed, and the ASK and ASVK (where present) are signed by it,
/// with AMD's roles and this product's generation. Validity periods are not checked here;
/// chain verification checks them at its own time.
#[derive(Clone, Debug)]
pub struct ProductRoots {
    product: Product,
    ark: Certificate,
    ask: Option<Certificate>,
    asvk: Option<Certificate>,
}

impl ProductRoots {
    /// Checks and bundles the trust anchors of `product`.
    ///
    /// # Errors
    ///
    /// [`RootsError`] if a certificate has the wrong role or generation, or a signature does
    /// not verify.
    pub fn new(
        product: Product,
        ark: Certificate,
        ask: Option<Certificate>,
        asvk: Option<Certificate>,
    ) -> Result<Self, RootsError> {
        let slots = [
            (Role::Ark, Some(&ark)),
            (Role::Ask, ask.as_ref()),
            (Role::Asvk, asvk.as_ref()),
        ];
        for (expected, cert) in slots {
            let Some(cert) = cert else { continue };
            if cert.role() != expected {
                return Err(RootsError::Role {
                    product,
                    expected,
                    actual: cert.role(),
                });
            }
            match cert.product() {
                Some(actual) if actual != product => {
                    return Err(RootsError::Generation {
                        product,
                        role: expected,
                        actual,
                    })
                }
                _ => {}
            }
        }
        let issue = |source| RootsError::Issue { product, source };
        ark.verify_signed(&ark).map_err(issue)?;
        for cert in [&ask, &asvk].into_iter().flatten() {
            ark.verify_signed(cert).map_err(issue)?;
        }
        Ok(Self {
            product,
            ark,
            ask,
            asvk,
        })
    }

    /// The product these anchors are for.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The pinned ARK.
    pub fn ark(&self) -> &Certificate {
        &self.ark
    }

    /// The ASK that issues VCEKs, if known.
    pub fn ask(&self) -> Option<&Certificate> {
        self.ask.as_ref()
    }

    /// The ASVK that issues VLEKs, if known.
    pub fn asvk(&self) -> Option<&Certificate> {
        self.asvk.as_ref()
    }

    /// The intermediate with `role` (ASK or ASVK), if known.
    pub(crate) fn intermediate(&self, role: Role) -> Option<&Certificate> {
        match role {
            Role::Ask => self.ask(),
            Role::Asvk => self.asvk(),
            Role::Ark | Role::Vcek | Role::Vlek => None,
        }
    }
}

/// Trust anchors for every product a verifier accepts, tagged with their origin.
#[derive(Clone, Debug)]
pub struct Roots {
    origin: TrustOrigin,
    products: Vec<ProductRoots>,
}

impl Roots {
    /// AMD's built-in roots for Milan, Genoa and Turin (ARK, ASK and ASVK each), parsed and
    /// checked once per process.
    pub fn amd() -> &'static Self {
        static AMD: OnceLock<Roots> = OnceLock::new();
        AMD.get_or_init(|| {
            // The PEM files are part of this crate and covered by `builtin_roots_load`.
            Self::load_builtin().expect("built-in AMD roots are valid certificates")
        })
    }

    /// Trust anchors supplied at run time (e.g. the simulator's), tagged
    /// [`TrustOrigin::Custom`] so that every verdict based on them says "simulated".
    ///
    /// # Errors
    ///
    /// [`RootsError::DuplicateProduct`] if two sets are for the same product.
    pub fn custom(anchors: impl IntoIterator<Item = ProductRoots>) -> Result<Self, RootsError> {
        Self::from_parts(TrustOrigin::Custom, anchors)
    }

    /// Whose roots these are.
    pub fn origin(&self) -> TrustOrigin {
        self.origin
    }

    /// The anchors for `product`, if any.
    pub fn get(&self, product: Product) -> Option<&ProductRoots> {
        self.products.iter().find(|roots| roots.product == product)
    }

    /// Every anchor set, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &ProductRoots> {
        self.products.iter()
    }

    fn from_parts(
        origin: TrustOrigin,
        anchors: impl IntoIterator<Item = ProductRoots>,
    ) -> Result<Self, RootsError> {
        let mut products: Vec<ProductRoots> = Vec::new();
        for roots in anchors {
            if products.iter().any(|known| known.product == roots.product) {
                return Err(RootsError::DuplicateProduct {
                    product: roots.product,
                });
            }
            products.push(roots);
        }
        Ok(Self { origin, products })
    }

    fn load_builtin() -> Result<Self, RootsError> {
        let anchors = Product::ALL
            .into_iter()
            .map(|product| {
                let [ark, ask, asvk] = builtin_pems(product);
                let load = |role, pem: &str| {
                    Certificate::from_der(&first_pem_block(pem)).map_err(|source| {
                        RootsError::BuiltIn {
                            product,
                            role,
                            source,
                        }
                    })
                };
                ProductRoots::new(
                    product,
                    load(Role::Ark, ark)?,
                    Some(load(Role::Ask, ask)?),
                    Some(load(Role::Asvk, asvk)?),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_parts(TrustOrigin::Amd, anchors)
    }
}

/// The built-in PEM files of `product`: ARK, ASK, ASVK.
fn builtin_pems(product: Product) -> [&'static str; 3] {
    match product {
        Product::Milan => [
            include_str!("roots/milan_ark.pem"),
            include_str!("roots/milan_ask.pem"),
            include_str!("roots/milan_asvk.pem"),
        ],
        Product::Genoa => [
            include_str!("roots/genoa_ark.pem"),
            include_str!("roots/genoa_ask.pem"),
            include_str!("roots/genoa_asvk.pem"),
        ],
        Product::Turin => [
            include_str!("roots/turin_ark.pem"),
            include_str!("roots/turin_ask.pem"),
            include_str!("roots/turin_asvk.pem"),
        ],
    }
}

/// The DER of the single PEM block in a built-in file (empty if the file is broken, which
/// then fails as a certificate parse error).
fn first_pem_block(pem: &str) -> Vec<u8> {
    super::pem::certificate_blocks(pem.as_bytes())
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .unwrap_or_default()
}
