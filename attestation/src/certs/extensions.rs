//! AMD's VCEK/VLEK extensions (OID arc 1.3.6.1.4.1.3704.1), which bind an endorsement key to
//! a product, a TCB and (for a VCEK) a chip.
//!
//! | OID suffix | name          | DER type     | meaning                                   |
//! |------------|---------------|--------------|-------------------------------------------|
//! | `.1`       | structVersion | INTEGER      | 0 (Milan, Genoa), 1 (Turin)               |
//! | `.2`       | productName   | IA5String    | `Milan-B0`, `Genoa`, `Turin`, ...         |
//! | `.3.1`     | blSPL         | INTEGER      | boot loader security patch level          |
//! | `.3.2`     | teeSPL        | INTEGER      | PSP OS (TEE) SPL                          |
//! | `.3.3`     | snpSPL        | INTEGER      | SNP firmware SPL                          |
//! | `.3.4-.3.7`| spl_4..spl_7  | INTEGER      | reserved SPLs                             |
//! | `.3.8`     | ucodeSPL      | INTEGER      | microcode SPL                             |
//! | `.3.9`     | fmcSPL        | INTEGER      | FMC SPL (Turin only)                      |
//! | `.4`       | hwID          | raw bytes    | chip id: 64 bytes, Turin 8 bytes; some certificates wrap it in a DER OCTET STRING |
//! | `.5`       | CSP_ID        | IA5String    | the cloud provider of a VLEK              |
//!
//! Every value is decoded strictly: a value out of range, a repeated extension or an unknown
//! OID under the arc is an error, never a default.

use x509_parser::certificate::X509Certificate;

use super::der::{self, SmallUint};
use super::signature::dotted;
use super::{ExtensionError, VekKind};
use crate::Product;

/// DER contents of the OID arc 1.3.6.1.4.1.3704.1 (AMD SEV-SNP certificate extensions).
const AMD_ARC: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x9C, 0x78, 0x01];

/// Decoded AMD extensions of a VCEK or VLEK.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VekExtensions {
    /// structVersion (`.1`).
    pub struct_version: u32,
    /// productName (`.2`) as written, e.g. `"Milan-B0"`.
    pub product_name: String,
    /// The generation productName names.
    pub product: Product,
    /// blSPL (`.3.1`).
    pub bl_spl: u8,
    /// teeSPL (`.3.2`).
    pub tee_spl: u8,
    /// snpSPL (`.3.3`).
    pub snp_spl: u8,
    /// Reserved SPLs spl_4..spl_7 (`.3.4`-`.3.7`), where present.
    pub spl_4_7: [Option<u8>; 4],
    /// ucodeSPL (`.3.8`).
    pub ucode_spl: u8,
    /// fmcSPL (`.3.9`); present exactly on Turin.
    pub fmc_spl: Option<u8>,
    /// hwID (`.4`), unwrapped from a DER OCTET STRING if it was wrapped; 64 bytes, 8 on
    /// Turin. Always present on a VCEK.
    pub hw_id: Option<Vec<u8>>,
    /// CSP_ID (`.5`); always present on a VLEK.
    pub csp_id: Option<String>,
}

/// Slots of the known extensions, in table order.
const NAMES: [&str; 13] = [
    "structVersion",
    "productName",
    "blSPL",
    "teeSPL",
    "snpSPL",
    "spl_4",
    "spl_5",
    "spl_6",
    "spl_7",
    "ucodeSPL",
    "fmcSPL",
    "hwID",
    "CSP_ID",
];
const STRUCT_VERSION: usize = 0;
const PRODUCT_NAME: usize = 1;
const BL_SPL: usize = 2;
const TEE_SPL: usize = 3;
const SNP_SPL: usize = 4;
const SPL_4: usize = 5;
const UCODE_SPL: usize = 9;
const FMC_SPL: usize = 10;
const HW_ID: usize = 11;
const CSP_ID: usize = 12;

impl VekExtensions {
    /// Decodes the AMD extensions of `cert`, which has role `kind`.
    pub(crate) fn decode(
        cert: &X509Certificate<'_>,
        kind: VekKind,
    ) -> Result<Self, ExtensionError> {
        let mut values: [Option<&[u8]>; NAMES.len()] = [None; NAMES.len()];
        for ext in cert.extensions() {
            let oid = ext.oid.as_bytes();
            let Some(suffix) = oid.strip_prefix(AMD_ARC) else {
                continue;
            };
            let slot = slot(suffix).ok_or_else(|| ExtensionError::Unknown { oid: dotted(oid) })?;
            let entry = values
                .get_mut(slot)
                .ok_or_else(|| ExtensionError::Unknown { oid: dotted(oid) })?;
            if entry.replace(ext.value).is_some() {
                return Err(ExtensionError::Duplicate { oid: dotted(oid) });
            }
        }
        let get = |slot: usize| values.get(slot).copied().flatten();
        let required = |slot: usize| get(slot).ok_or(ExtensionError::Missing { name: name(slot) });

        let struct_version = integer(required(STRUCT_VERSION)?, STRUCT_VERSION, u32::MAX)?;
        let product_name = ia5_string(required(PRODUCT_NAME)?, PRODUCT_NAME)?;
        let product =
            product_name
                .parse::<Product>()
                .map_err(|_| ExtensionError::UnknownProduct {
                    name: product_name.clone(),
                })?;
        let spl = |slot: usize| -> Result<Option<u8>, ExtensionError> {
            get(slot).map(|value| spl_value(value, slot)).transpose()
        };
        let required_spl = |slot: usize| spl_value(required(slot)?, slot);

        let hw_id = get(HW_ID).map(|value| hw_id(value, product)).transpose()?;
        let fmc_spl = spl(FMC_SPL)?;
        if fmc_spl.is_some() != product.uses_turin_tcb() {
            return Err(ExtensionError::FmcSpl {
                product,
                present: fmc_spl.is_some(),
            });
        }
        let csp_id = get(CSP_ID)
            .map(|value| ia5_string(value, CSP_ID))
            .transpose()?;
        match kind {
            VekKind::Vcek if hw_id.is_none() => {
                return Err(ExtensionError::Missing { name: name(HW_ID) })
            }
            VekKind::Vlek if csp_id.is_none() => {
                return Err(ExtensionError::Missing { name: name(CSP_ID) })
            }
            VekKind::Vcek | VekKind::Vlek => {}
        }

        Ok(Self {
            struct_version,
            product_name,
            product,
            bl_spl: required_spl(BL_SPL)?,
            tee_spl: required_spl(TEE_SPL)?,
            snp_spl: required_spl(SNP_SPL)?,
            spl_4_7: [
                spl(SPL_4)?,
                spl(SPL_4 + 1)?,
                spl(SPL_4 + 2)?,
                spl(SPL_4 + 3)?,
            ],
            ucode_spl: required_spl(UCODE_SPL)?,
            fmc_spl,
            hw_id,
            csp_id,
        })
    }
}

/// The slot of an OID suffix below the AMD arc.
fn slot(suffix: &[u8]) -> Option<usize> {
    match suffix {
        [0x01] => Some(STRUCT_VERSION),
        [0x02] => Some(PRODUCT_NAME),
        [0x03, n @ 0x01..=0x09] => Some(BL_SPL + usize::from(*n) - 1),
        [0x04] => Some(HW_ID),
        [0x05] => Some(CSP_ID),
        _ => None,
    }
}

/// The extension name of a slot.
fn name(slot: usize) -> &'static str {
    NAMES.get(slot).copied().unwrap_or("unknown")
}

/// Decodes a DER INTEGER extension value in `0..=max`.
fn integer(value: &[u8], slot: usize, max: u32) -> Result<u32, ExtensionError> {
    let name = name(slot);
    let contents = der::read_single(value, der::TAG_INTEGER)
        .map_err(|reason| ExtensionError::Malformed { name, reason })?;
    match der::uint_contents(contents)
        .map_err(|reason| ExtensionError::Malformed { name, reason })?
    {
        SmallUint::Fits(n) if n <= max => Ok(n),
        SmallUint::Fits(_) => Err(ExtensionError::OutOfRange {
            name,
            value: hex::encode(contents),
            max,
        }),
        SmallUint::OutOfRange(value) => Err(ExtensionError::OutOfRange { name, value, max }),
    }
}

/// Decodes an SPL: a DER INTEGER in `0..=255`.
fn spl_value(value: &[u8], slot: usize) -> Result<u8, ExtensionError> {
    let n = integer(value, slot, u32::from(u8::MAX))?;
    u8::try_from(n).map_err(|_| ExtensionError::OutOfRange {
        name: name(slot),
        value: n.to_string(),
        max: u32::from(u8::MAX),
    })
}

/// Decodes a DER IA5String extension value.
fn ia5_string(value: &[u8], slot: usize) -> Result<String, ExtensionError> {
    let name = name(slot);
    let contents = der::read_single(value, der::TAG_IA5_STRING)
        .map_err(|reason| ExtensionError::Malformed { name, reason })?;
    if !contents.is_ascii() {
        return Err(ExtensionError::Malformed {
            name,
            reason: "non-ascii byte in ia5string",
        });
    }
    String::from_utf8(contents.to_vec()).map_err(|_| ExtensionError::Malformed {
        name,
        reason: "non-ascii byte in ia5string",
    })
}

/// Decodes hwID: the raw chip id, or the chip id inside a DER OCTET STRING.
///
/// The two forms cannot be confused: a wrapped id is two bytes longer than the raw one, so a
/// raw id that happens to start with 0x04 is never unwrapped.
fn hw_id(value: &[u8], product: Product) -> Result<Vec<u8>, ExtensionError> {
    let expected = product.chip_id_len();
    if value.len() == expected {
        return Ok(value.to_vec());
    }
    match der::read_single(value, der::TAG_OCTET_STRING) {
        Ok(inner) if inner.len() == expected => Ok(inner.to_vec()),
        _ => Err(ExtensionError::HwIdLength {
            product,
            expected,
            actual: value.len(),
        }),
    }
}
