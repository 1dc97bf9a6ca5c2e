//! The simulated root of trust of one A3S home: per product an ARK and ASK (RSA-4096), per
//! simulated chip a VCEK (ECDSA P-384) and a 32-byte chip secret for derived keys.
//!
//! On disk, under `<home>/simulator/` (`<product>` is `milan`, `genoa` or `turin`):
//!
//! | path | mode | content |
//! |------|------|---------|
//! | `.lock-<product>` | 0644 | lock file taken while the product or a chip is created |
//! | `<product>/root.json` | 0644 | format version, product, default chip |
//! | `<product>/ark.der`, `ask.der` | 0644 | certificates in AMD's profile |
//! | `<product>/ark.key`, `ask.key` | 0600 | RSA private keys, PKCS#8 DER |
//! | `<product>/crl.der` | 0644 | CRL signed by the ARK |
//! | `<product>/chips/<hwid hex>/chip.json` | 0644 | chip id, TCB, firmware version, platform info |
//! | `<product>/chips/<hwid hex>/vcek.der` | 0644 | VCEK certificate for the chip's TCB |
//! | `<product>/chips/<hwid hex>/vcek.key` | 0600 | VCEK private key, PKCS#8 DER |
//! | `<product>/chips/<hwid hex>/secret.bin` | 0600 | 32-byte chip secret (derived keys) |
//!
//! Each `<product>` and each chip directory is created atomically (temporary directory, fsync, rename) under
//! the lock and never changed afterwards, so later runs reuse exactly the same keys.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use a3s_attestation::report::{layout_of, Tcb, TcbVersion};
use a3s_attestation::Product;
use p384::ecdsa::SigningKey as EcdsaKey;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use rsa::RsaPrivateKey;
use serde::{Deserialize, Serialize};
use tracing::info;
use x509_cert::der::Decode;
use zeroize::Zeroizing;

use crate::store::{self, DirLock, PRIVATE, PUBLIC};
use crate::{cert, SimError};

/// Size of the RSA keys of the ARK and ASK, as AMD's.
pub const RSA_BITS: usize = 4096;
/// Format version of the files written under `<home>/simulator/`.
const FORMAT: u32 = 1;

/// A chip id (CHIP_ID in reports, hwID in VCEKs). Turin chips use only the first 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChipId([u8; 64]);

impl ChipId {
    /// The 64-byte CHIP_ID as it appears in reports.
    pub fn new(raw: [u8; 64]) -> Self {
        Self(raw)
    }

    /// The 64 bytes of CHIP_ID.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }

    /// The hwID of `product`'s VCEKs and KDS URLs: all 64 bytes, or the first 8 for Turin.
    pub fn hw_id(&self, product: Product) -> &[u8] {
        &self.0[..product.chip_id_len()]
    }

    /// Lower-case hex of the hwID, as in KDS URLs.
    pub fn kds_hex(&self, product: Product) -> String {
        hex::encode(self.hw_id(product))
    }

    /// Parses the hex hwID of a KDS URL for `product` (128 hex digits, or 16 for Turin).
    ///
    /// # Errors
    /// [`InvalidChipId`] when the text is not hex of the product's hwID length.
    pub fn from_kds_hex(product: Product, text: &str) -> Result<Self, InvalidChipId> {
        let bytes = hex::decode(text).map_err(|_| InvalidChipId(text.to_owned()))?;
        if bytes.len() != product.chip_id_len() {
            return Err(InvalidChipId(text.to_owned()));
        }
        let mut raw = [0u8; 64];
        raw[..bytes.len()].copy_from_slice(&bytes);
        Ok(Self(raw))
    }

    fn random(product: Product) -> Self {
        let mut raw = [0u8; 64];
        let len = product.chip_id_len();
        loop {
            OsRng.fill_bytes(&mut raw[..len]);
            if raw.iter().any(|&b| b != 0) {
                return Self(raw);
            }
        }
    }
}

impl fmt::Debug for ChipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChipId({})", hex::encode(self.0))
    }
}

/// A chip id in a KDS URL was not hex of the right length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a chip id (hex of 64 bytes, or 8 for Turin)")]
pub struct InvalidChipId(pub String);

/// The platform state of a simulated chip: what its reports say about the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChipConfig {
    /// Current = committed = launch = reported TCB; the VCEK is issued for it.
    pub tcb: Tcb,
    /// SNP firmware version (major, minor, build).
    pub firmware: (u8, u8, u8),
    /// PLATFORM_INFO.
    pub platform_info: u64,
    /// Current verified mitigation vector (version 5 reports).
    pub mit_vector: u64,
}

impl ChipConfig {
    /// The configuration of the real chips in `fixtures/snp` (Oak's Milan, Genoa and
    /// Turin reports): their TCB, firmware version and platform info.
    pub fn default_for(product: Product) -> Self {
        let (tcb, firmware) = match product {
            Product::Milan => (tcb(None, 4, 0, 24, 219), (1, 55, 29)),
            Product::Genoa => (tcb(None, 10, 0, 25, 84), (1, 55, 43)),
            _ => (tcb(Some(0), 1, 0, 2, 71), (1, 55, 61)),
        };
        Self {
            tcb,
            firmware,
            // SMT_EN | ECC_EN | ALIAS_CHECK_COMPLETE
            platform_info: 0x25,
            mit_vector: 0,
        }
    }

    /// The TCB as the 64-bit TCB_VERSION of `product`'s layout.
    pub fn tcb_version(&self, product: Product) -> TcbVersion {
        self.tcb.encode(layout_of(product))
    }
}

fn tcb(fmc: Option<u8>, bootloader: u8, tee: u8, snp: u8, microcode: u8) -> Tcb {
    Tcb {
        fmc,
        bootloader,
        tee,
        snp,
        microcode,
    }
}

/// A 32-byte secret, zeroed on drop, never printed.
#[derive(Clone)]
pub(crate) struct Secret(Zeroizing<[u8; 32]>);

impl Secret {
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A VCEK private key (zeroed on drop by `p384`), never printed.
#[derive(Clone)]
pub(crate) struct VcekKey(pub(crate) EcdsaKey);

impl fmt::Debug for VcekKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A simulated chip: its id, platform state, VCEK and chip secret.
#[derive(Debug)]
pub struct Chip {
    product: Product,
    id: ChipId,
    config: ChipConfig,
    vcek_der: Vec<u8>,
    pub(crate) vcek_key: VcekKey,
    pub(crate) secret: Secret,
}

impl Chip {
    /// The chip's product.
    pub fn product(&self) -> Product {
        self.product
    }
    /// The chip id.
    pub fn id(&self) -> &ChipId {
        &self.id
    }
    /// The chip's platform state.
    pub fn config(&self) -> &ChipConfig {
        &self.config
    }
    /// The VCEK certificate (DER) for the chip's TCB.
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }
}

/// The simulated root of trust of one product: ARK, ASK, CRL and chips.
#[derive(Debug)]
pub(crate) struct ProductKeys {
    pub(crate) product: Product,
    pub(crate) dir: PathBuf,
    pub(crate) ark_der: Vec<u8>,
    pub(crate) ask_der: Vec<u8>,
    pub(crate) crl_der: Vec<u8>,
    /// Chips, the default one first.
    pub(crate) chips: Vec<Chip>,
}

#[derive(Serialize, Deserialize)]
struct RootMeta {
    format: u32,
    product: String,
    default_chip: String,
}

#[derive(Serialize, Deserialize)]
struct ChipMeta {
    format: u32,
    chip_id: String,
    #[serde(flatten)]
    config: ChipConfig,
}

impl ProductKeys {
    /// Loads `product`'s root of trust from `sim_dir`, creating it first (under the lock,
    /// atomically) when it does not exist.
    pub(crate) fn open_or_create(sim_dir: &Path, product: Product) -> Result<Self, SimError> {
        let dir = sim_dir.join(product.as_str());
        if !dir.exists() {
            let _lock = lock(sim_dir, product)?;
            if !dir.exists() {
                store::create_dir_atomically(sim_dir, product.as_str(), |tmp| {
                    generate_root(tmp, product)
                })?;
            }
        }
        Self::load(&dir, product)
    }

    /// Loads `product`'s root of trust if the home has one.
    pub(crate) fn open_existing(
        sim_dir: &Path,
        product: Product,
    ) -> Result<Option<Self>, SimError> {
        let dir = sim_dir.join(product.as_str());
        if dir.exists() {
            Self::load(&dir, product).map(Some)
        } else {
            Ok(None)
        }
    }

    fn load(dir: &Path, product: Product) -> Result<Self, SimError> {
        let meta_path = dir.join("root.json");
        let meta: RootMeta = serde_json::from_slice(&store::read(&meta_path)?)
            .map_err(|e| SimError::corrupt(&meta_path, e.to_string()))?;
        if meta.format != FORMAT || meta.product != product.as_str() {
            return Err(SimError::corrupt(
                &meta_path,
                format!(
                    "format {} of product {:?}, expected format {FORMAT} of {:?}",
                    meta.format,
                    meta.product,
                    product.as_str()
                ),
            ));
        }
        let chips_dir = dir.join("chips");
        let mut names = Vec::new();
        for entry in
            std::fs::read_dir(&chips_dir).map_err(|e| SimError::io("listing", &chips_dir, e))?
        {
            let entry = entry.map_err(|e| SimError::io("listing", &chips_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                names.push(name);
            }
        }
        // The default chip first, then the others in a stable order.
        names.sort_by_key(|name| (*name != meta.default_chip, name.clone()));
        let chips = names
            .iter()
            .map(|name| load_chip(&chips_dir.join(name), product))
            .collect::<Result<Vec<_>, _>>()?;
        if chips.first().map(|c| c.id.kds_hex(product)) != Some(meta.default_chip.clone()) {
            return Err(SimError::corrupt(&chips_dir, "the default chip is missing"));
        }
        Ok(Self {
            product,
            dir: dir.to_owned(),
            ark_der: store::read(&dir.join("ark.der"))?,
            ask_der: store::read(&dir.join("ask.der"))?,
            crl_der: store::read(&dir.join("crl.der"))?,
            chips,
        })
    }

    /// A CRL signed by the stored ARK key listing `revoked` serial numbers, DER.
    pub(crate) fn revocation_list(&self, revoked: &[Vec<u8>]) -> Result<Vec<u8>, SimError> {
        let ark_key_path = self.dir.join("ark.key");
        let ark_key_der = Zeroizing::new(store::read(&ark_key_path)?);
        let ark_key = RsaPrivateKey::from_pkcs8_der(&ark_key_der)
            .map_err(|e| SimError::corrupt(&ark_key_path, e.to_string()))?;
        cert::crl(self.product, &ark_key, revoked, SystemTime::now())
    }

    /// Creates another chip with `config`, its VCEK signed by the stored ASK key.
    pub(crate) fn add_chip(
        &mut self,
        sim_dir: &Path,
        config: ChipConfig,
    ) -> Result<&Chip, SimError> {
        let _lock = lock(sim_dir, self.product)?;
        let ask_key_path = self.dir.join("ask.key");
        let ask_key_der = Zeroizing::new(store::read(&ask_key_path)?);
        let ask_key = RsaPrivateKey::from_pkcs8_der(&ask_key_der)
            .map_err(|e| SimError::corrupt(&ask_key_path, e.to_string()))?;
        let chips_dir = self.dir.join("chips");
        let id = ChipId::random(self.product);
        let name = id.kds_hex(self.product);
        let product = self.product;
        store::create_dir_atomically(&chips_dir, &name, |tmp| {
            write_chip(tmp, product, id, config, &ask_key)
        })?;
        let chip = load_chip(&chips_dir.join(&name), product)?;
        self.chips.push(chip);
        Ok(self.chips.last().expect("a chip was just pushed"))
    }
}

/// Takes `product`'s lock, then removes what a crashed creator of `product` left behind.
fn lock(sim_dir: &Path, product: Product) -> Result<DirLock, SimError> {
    let lock = DirLock::acquire(&sim_dir.join(format!(".lock-{}", product.as_str())))?;
    let tmp = store::TMP_PREFIX;
    store::remove_temporaries(sim_dir, &format!("{tmp}{}-", product.as_str()))?;
    store::remove_temporaries(&sim_dir.join(product.as_str()).join("chips"), tmp)?;
    Ok(lock)
}

/// Writes a complete root of trust for `product` into the (temporary) directory `dir`.
fn generate_root(dir: &Path, product: Product) -> Result<(), SimError> {
    let started = Instant::now();
    // The two RSA-4096 keys are independent: generate them in parallel.
    let (ark_key, ask_key) = std::thread::scope(|s| {
        let ark = s.spawn(|| RsaPrivateKey::new(&mut OsRng, RSA_BITS));
        let ask = RsaPrivateKey::new(&mut OsRng, RSA_BITS);
        (ark.join(), ask)
    });
    let ark_key = ark_key
        .map_err(|_| SimError::Crypto {
            what: "generating the ARK key",
            source: "key generation thread panicked".into(),
        })?
        .map_err(SimError::crypto("generating the ARK key"))?;
    let ask_key = ask_key.map_err(SimError::crypto("generating the ASK key"))?;
    let keygen = started.elapsed();
    let now = SystemTime::now();
    let ark_der = cert::ark(product, &ark_key, now)?;
    let ask_der = cert::ask(product, &ask_key, &ark_key, now)?;
    let crl_der = cert::crl(product, &ark_key, &[], now)?;
    for (name, key) in [("ark.key", &ark_key), ("ask.key", &ask_key)] {
        let der = key
            .to_pkcs8_der()
            .map_err(SimError::crypto("encoding an RSA private key"))?;
        store::write_new(&dir.join(name), der.as_bytes(), PRIVATE)?;
    }
    store::write_new(&dir.join("ark.der"), &ark_der, PUBLIC)?;
    store::write_new(&dir.join("ask.der"), &ask_der, PUBLIC)?;
    store::write_new(&dir.join("crl.der"), &crl_der, PUBLIC)?;

    let id = ChipId::random(product);
    let chips_dir = dir.join("chips");
    store::create_dir_all(&chips_dir)?;
    let chip_dir = chips_dir.join(id.kds_hex(product));
    store::create_dir_all(&chip_dir)?;
    write_chip(
        &chip_dir,
        product,
        id,
        ChipConfig::default_for(product),
        &ask_key,
    )?;
    store::sync_dir(&chip_dir)?;
    store::sync_dir(&chips_dir)?;

    let meta = RootMeta {
        format: FORMAT,
        product: product.as_str().to_owned(),
        default_chip: id.kds_hex(product),
    };
    let meta = serde_json::to_vec_pretty(&meta).map_err(SimError::crypto("encoding root.json"))?;
    store::write_new(&dir.join("root.json"), &meta, PUBLIC)?;
    info!(
        product = %product,
        rsa_keygen_ms = keygen.as_millis(),
        total_ms = started.elapsed().as_millis(),
        "generated a simulated SEV-SNP root of trust"
    );
    Ok(())
}

/// Writes a chip (VCEK key and certificate, secret, metadata) into directory `dir`.
fn write_chip(
    dir: &Path,
    product: Product,
    id: ChipId,
    config: ChipConfig,
    ask_key: &RsaPrivateKey,
) -> Result<(), SimError> {
    let vcek_key = EcdsaKey::random(&mut OsRng);
    let spki = vcek_key
        .verifying_key()
        .to_public_key_der()
        .map_err(SimError::crypto("encoding the VCEK public key"))?;
    let vcek_der = cert::vcek(
        cert::VcekSubject {
            product,
            hw_id: id.hw_id(product),
            tcb: normalised(config.tcb, product),
            spki_der: spki.as_bytes(),
        },
        ask_key,
        SystemTime::now(),
    )?;
    let key_der = vcek_key
        .to_pkcs8_der()
        .map_err(SimError::crypto("encoding the VCEK private key"))?;
    let mut secret = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(secret.as_mut());
    let meta = ChipMeta {
        format: FORMAT,
        chip_id: hex::encode(id.as_bytes()),
        config: ChipConfig {
            tcb: normalised(config.tcb, product),
            ..config
        },
    };
    let meta = serde_json::to_vec_pretty(&meta).map_err(SimError::crypto("encoding chip.json"))?;
    store::write_new(&dir.join("vcek.key"), key_der.as_bytes(), PRIVATE)?;
    store::write_new(&dir.join("secret.bin"), secret.as_ref(), PRIVATE)?;
    store::write_new(&dir.join("vcek.der"), &vcek_der, PUBLIC)?;
    store::write_new(&dir.join("chip.json"), &meta, PUBLIC)
}

/// The TCB as `product`'s layout can carry it: Turin always has an FMC level, Milan and Genoa
/// never.
fn normalised(tcb: Tcb, product: Product) -> Tcb {
    tcb.encode(layout_of(product)).decode(layout_of(product))
}

fn load_chip(dir: &Path, product: Product) -> Result<Chip, SimError> {
    let meta_path = dir.join("chip.json");
    let meta: ChipMeta = serde_json::from_slice(&store::read(&meta_path)?)
        .map_err(|e| SimError::corrupt(&meta_path, e.to_string()))?;
    let raw: [u8; 64] = hex::decode(&meta.chip_id)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| SimError::corrupt(&meta_path, "chip_id is not 64 bytes of hex"))?;
    if meta.format != FORMAT {
        return Err(SimError::corrupt(
            &meta_path,
            format!("unknown format {}", meta.format),
        ));
    }
    let key_path = dir.join("vcek.key");
    let key_der = Zeroizing::new(store::read(&key_path)?);
    let vcek_key = EcdsaKey::from_pkcs8_der(&key_der)
        .map_err(|e| SimError::corrupt(&key_path, e.to_string()))?;
    let secret_path = dir.join("secret.bin");
    let secret_bytes = Zeroizing::new(store::read(&secret_path)?);
    let secret: [u8; 32] = secret_bytes
        .as_slice()
        .try_into()
        .map_err(|_| SimError::corrupt(&secret_path, "not 32 bytes"))?;
    let vcek_path = dir.join("vcek.der");
    let vcek_der = store::read(&vcek_path)?;
    let cert = x509_cert::Certificate::from_der(&vcek_der)
        .map_err(|e| SimError::corrupt(&vcek_path, e.to_string()))?;
    let spki = vcek_key
        .verifying_key()
        .to_public_key_der()
        .map_err(SimError::crypto("encoding the VCEK public key"))?;
    let cert_spki = x509_cert::der::Encode::to_der(&cert.tbs_certificate.subject_public_key_info)
        .map_err(|e| SimError::corrupt(&vcek_path, e.to_string()))?;
    if cert_spki != spki.as_bytes() {
        return Err(SimError::corrupt(
            &vcek_path,
            "certifies another key than vcek.key",
        ));
    }
    Ok(Chip {
        product,
        id: ChipId(raw),
        config: meta.config,
        vcek_der,
        vcek_key: VcekKey(vcek_key),
        secret: Secret(Zeroizing::new(secret)),
    })
}
