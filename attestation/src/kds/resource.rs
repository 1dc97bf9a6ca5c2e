//! What the KDS serves, where it serves it, and where the cache keeps it.
//!
//! Everything here is pure: URLs and cache paths are computed from values, with no I/O.

use std::path::PathBuf;

use crate::kds::KdsError;
use crate::Product;

/// AMD's production KDS.
pub const DEFAULT_BASE_URL: &str = "https://kdsintf.amd.com";

pub use crate::certs::VekKind;

/// Security patch levels of a TCB, as a VCEK is requested for them.
///
/// `fmc` exists only on Turin and later; it must be `Some` exactly when the product uses the
/// Turin TCB layout ([`Product::uses_turin_tcb`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcbSpls {
    /// Boot loader SPL (`blSPL`).
    pub bl: u8,
    /// PSP OS (TEE) SPL (`teeSPL`).
    pub tee: u8,
    /// SNP firmware SPL (`snpSPL`).
    pub snp: u8,
    /// Microcode SPL (`ucodeSPL`).
    pub ucode: u8,
    /// Firmware Mask ROM Code SPL (`fmcSPL`), Turin and later only.
    pub fmc: Option<u8>,
}

/// Everything that names one VCEK at the KDS: the chip and the TCB it was derived for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VcekId {
    /// Generation of the chip.
    pub product: Product,
    /// CHIP_ID from the report. Milan and Genoa use all 64 bytes; Turin only the first 8.
    pub chip_id: [u8; 64],
    /// The TCB the VCEK must certify (normally the report's REPORTED_TCB).
    pub tcb: TcbSpls,
}

impl VcekId {
    /// The hwID as the KDS wants it in the URL: lower-case hex of the bytes the product uses.
    ///
    /// # Errors
    ///
    /// [`KdsError::MaskedChipId`] when those bytes are all zero (the guest policy set
    /// MASK_CHIP_ID, so the report does not say which chip signed it).
    pub fn hwid_hex(&self) -> Result<String, KdsError> {
        let hwid = self
            .chip_id
            .get(..self.product.chip_id_len())
            .unwrap_or(&self.chip_id);
        if hwid.iter().all(|&b| b == 0) {
            return Err(KdsError::MaskedChipId {
                product: self.product,
            });
        }
        Ok(hex::encode(hwid))
    }

    /// The SPL query string, in the order AMD documents it, without the leading `?`.
    ///
    /// Milan/Genoa: `blSPL=NN&teeSPL=NN&snpSPL=NN&ucodeSPL=NN`; Turin puts `fmcSPL=NN&` first.
    /// Values are decimal, zero-padded to two digits.
    ///
    /// # Errors
    ///
    /// [`KdsError::FmcSplMismatch`] when `tcb.fmc` is present on Milan/Genoa or absent on Turin.
    pub fn spl_query(&self) -> Result<String, KdsError> {
        let t = &self.tcb;
        let rest = format!(
            "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            t.bl, t.tee, t.snp, t.ucode
        );
        match (self.product.uses_turin_tcb(), t.fmc) {
            (true, Some(fmc)) => Ok(format!("fmcSPL={fmc:02}&{rest}")),
            (false, None) => Ok(rest),
            (_, fmc) => Err(KdsError::FmcSplMismatch {
                product: self.product,
                present: fmc.is_some(),
            }),
        }
    }

    /// File name of this VCEK in the cache, e.g. `bl03_tee00_snp08_ucode115.der`
    /// (Turin: `bl01_tee00_snp02_ucode71_fmc00.der`).
    ///
    /// # Errors
    ///
    /// As [`VcekId::spl_query`].
    pub fn cache_file_name(&self) -> Result<String, KdsError> {
        // Validates the fmc/product combination with the same rule as the URL.
        self.spl_query()?;
        let t = &self.tcb;
        let mut name = format!(
            "bl{:02}_tee{:02}_snp{:02}_ucode{:02}",
            t.bl, t.tee, t.snp, t.ucode
        );
        if let Some(fmc) = t.fmc {
            name.push_str(&format!("_fmc{fmc:02}"));
        }
        name.push_str(".der");
        Ok(name)
    }
}

/// One document the KDS serves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KdsResource {
    /// `{kind}/v1/{product}/cert_chain`: PEM, ASK (or ASVK for VLEK) then ARK.
    CertChain {
        /// Generation.
        product: Product,
        /// VCEK or VLEK tree.
        kind: VekKind,
    },
    /// `{kind}/v1/{product}/crl`: DER certificate revocation list signed by the ARK.
    Crl {
        /// Generation.
        product: Product,
        /// VCEK or VLEK tree.
        kind: VekKind,
    },
    /// `vcek/v1/{product}/{hwid}?{spls}`: DER VCEK of one chip at one TCB.
    Vcek(VcekId),
}

impl KdsResource {
    /// Path below the base URL, without leading slash or query.
    ///
    /// # Errors
    ///
    /// For a VCEK, as [`VcekId::hwid_hex`].
    pub fn url_path(&self) -> Result<String, KdsError> {
        Ok(match self {
            Self::CertChain { product, kind } => {
                format!("{}/v1/{product}/cert_chain", kind.as_str())
            }
            Self::Crl { product, kind } => format!("{}/v1/{product}/crl", kind.as_str()),
            Self::Vcek(id) => format!("vcek/v1/{}/{}", id.product, id.hwid_hex()?),
        })
    }

    /// The full URL at the KDS whose base is `base` (e.g. [`DEFAULT_BASE_URL`]).
    ///
    /// A trailing `/` on `base` is ignored.
    ///
    /// # Errors
    ///
    /// For a VCEK: a masked chip id or an FMC SPL that does not fit the product.
    pub fn url(&self, base: &str) -> Result<String, KdsError> {
        Ok(match self {
            Self::CertChain { product, kind } => cert_chain_url(base, *product, *kind),
            Self::Crl { product, kind } => crl_url(base, *product, *kind),
            Self::Vcek(id) => format!(
                "{}/{}?{}",
                base.trim_end_matches('/'),
                self.url_path()?,
                id.spl_query()?
            ),
        })
    }

    /// Where this document lives below a cache root; the layout mirrors the URL path.
    ///
    /// # Errors
    ///
    /// As [`KdsResource::url`].
    pub fn cache_path(&self) -> Result<PathBuf, KdsError> {
        let mut path = PathBuf::from(self.url_path()?);
        match self {
            Self::CertChain { .. } => path.set_extension("pem"),
            Self::Crl { .. } => path.set_extension("der"),
            Self::Vcek(id) => {
                path.push(id.cache_file_name()?);
                true
            }
        };
        Ok(path)
    }
}

/// URL of the ASK/ASVK + ARK chain: `{base}/{vcek|vlek}/v1/{product}/cert_chain`.
pub fn cert_chain_url(base: &str, product: Product, kind: VekKind) -> String {
    let base = base.trim_end_matches('/');
    format!("{base}/{}/v1/{product}/cert_chain", kind.as_str())
}

/// URL of the CRL: `{base}/{vcek|vlek}/v1/{product}/crl`.
pub fn crl_url(base: &str, product: Product, kind: VekKind) -> String {
    let base = base.trim_end_matches('/');
    format!("{base}/{}/v1/{product}/crl", kind.as_str())
}

/// URL of one VCEK: `{base}/vcek/v1/{product}/{hwid}?{spls}`.
///
/// # Errors
///
/// [`KdsError::MaskedChipId`] for an all-zero chip id; [`KdsError::FmcSplMismatch`] when the
/// FMC SPL does not fit the product.
pub fn vcek_url(base: &str, id: &VcekId) -> Result<String, KdsError> {
    KdsResource::Vcek(id.clone()).url(base)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// CHIP_ID of `trustee-test-report.bin` (Milan, TCB bl3 tee0 snp8 ucode115).
    const MILAN_CHIP: &str = "c38427a30d4c7af9d96f7a15b97269825a64cb76a2352ffd5d18115d89ad473f\
                              8e8c0bcd9a5d9286612bad4aadfb4426205a3b9e4fea82301135a170e477524e";

    fn milan_id() -> VcekId {
        let mut chip_id = [0u8; 64];
        hex::decode_to_slice(MILAN_CHIP, &mut chip_id).unwrap();
        VcekId {
            product: Product::Milan,
            chip_id,
            tcb: TcbSpls {
                bl: 3,
                tee: 0,
                snp: 8,
                ucode: 115,
                fmc: None,
            },
        }
    }

    fn oak_turin_id() -> VcekId {
        let mut chip_id = [0u8; 64];
        hex::decode_to_slice("3b42092f69c656d3", &mut chip_id[..8]).unwrap();
        VcekId {
            product: Product::Turin,
            chip_id,
            tcb: TcbSpls {
                bl: 1,
                tee: 0,
                snp: 2,
                ucode: 71,
                fmc: Some(0),
            },
        }
    }

    #[test]
    fn builds_cert_chain_and_crl_urls() {
        let base = DEFAULT_BASE_URL;
        assert_eq!(
            cert_chain_url(base, Product::Milan, VekKind::Vcek),
            "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"
        );
        assert_eq!(
            cert_chain_url(base, Product::Turin, VekKind::Vlek),
            "https://kdsintf.amd.com/vlek/v1/Turin/cert_chain"
        );
        assert_eq!(
            crl_url(base, Product::Genoa, VekKind::Vcek),
            "https://kdsintf.amd.com/vcek/v1/Genoa/crl"
        );
        assert_eq!(
            crl_url("http://127.0.0.1:8080/", Product::Genoa, VekKind::Vlek),
            "http://127.0.0.1:8080/vlek/v1/Genoa/crl"
        );
    }

    #[test]
    fn builds_milan_vcek_url_with_full_hwid() {
        let url = vcek_url(DEFAULT_BASE_URL, &milan_id()).unwrap();
        assert_eq!(
            url,
            format!(
                "https://kdsintf.amd.com/vcek/v1/Milan/{MILAN_CHIP}\
                 ?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115"
            )
        );
    }

    #[test]
    fn builds_turin_vcek_url_with_eight_byte_hwid_and_fmc_first() {
        assert_eq!(
            vcek_url(DEFAULT_BASE_URL, &oak_turin_id()).unwrap(),
            "https://kdsintf.amd.com/vcek/v1/Turin/3b42092f69c656d3\
             ?fmcSPL=00&blSPL=01&teeSPL=00&snpSPL=02&ucodeSPL=71"
        );
    }

    #[test]
    fn hex_is_lower_case() {
        let mut id = oak_turin_id();
        id.chip_id[..8].copy_from_slice(&[0xAB, 0xCD, 0xEF, 0, 0, 0, 0, 0x0F]);
        assert_eq!(id.hwid_hex().unwrap(), "abcdef000000000f");
    }

    #[test]
    fn rejects_masked_chip_id() {
        let mut id = milan_id();
        id.chip_id = [0; 64];
        let err = vcek_url(DEFAULT_BASE_URL, &id).unwrap_err();
        assert!(matches!(err, KdsError::MaskedChipId { .. }));
        assert!(err.to_string().contains("masked chip id"));
        assert!(err.hint().unwrap().contains("--vcek"));

        // Turin's hwID is the first 8 bytes only.
        let mut id = oak_turin_id();
        id.chip_id = [0; 64];
        id.chip_id[8] = 1;
        assert!(matches!(id.hwid_hex(), Err(KdsError::MaskedChipId { .. })));
    }

    #[test]
    fn rejects_fmc_spl_that_does_not_fit_the_product() {
        let mut id = milan_id();
        id.tcb.fmc = Some(1);
        assert!(matches!(
            vcek_url(DEFAULT_BASE_URL, &id),
            Err(KdsError::FmcSplMismatch { present: true, .. })
        ));
        let mut id = oak_turin_id();
        id.tcb.fmc = None;
        assert!(matches!(
            vcek_url(DEFAULT_BASE_URL, &id),
            Err(KdsError::FmcSplMismatch { present: false, .. })
        ));
    }

    #[test]
    fn pads_spls_to_two_digits_and_prints_larger_values_in_full() {
        let mut id = milan_id();
        id.tcb = TcbSpls {
            bl: 0,
            tee: 9,
            snp: 10,
            ucode: 255,
            fmc: None,
        };
        assert_eq!(
            id.spl_query().unwrap(),
            "blSPL=00&teeSPL=09&snpSPL=10&ucodeSPL=255"
        );
    }

    #[test]
    fn cache_paths_mirror_url_paths() {
        let chain = KdsResource::CertChain {
            product: Product::Milan,
            kind: VekKind::Vcek,
        };
        assert_eq!(
            chain.cache_path().unwrap(),
            Path::new("vcek/v1/Milan/cert_chain.pem")
        );
        let crl = KdsResource::Crl {
            product: Product::Genoa,
            kind: VekKind::Vlek,
        };
        assert_eq!(
            crl.cache_path().unwrap(),
            Path::new("vlek/v1/Genoa/crl.der")
        );
        assert_eq!(
            KdsResource::Vcek(milan_id()).cache_path().unwrap(),
            Path::new("vcek/v1/Milan")
                .join(MILAN_CHIP)
                .join("bl03_tee00_snp08_ucode115.der")
        );
        assert_eq!(
            KdsResource::Vcek(oak_turin_id()).cache_path().unwrap(),
            Path::new("vcek/v1/Turin/3b42092f69c656d3/bl01_tee00_snp02_ucode71_fmc00.der")
        );
    }
}
