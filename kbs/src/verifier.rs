//! Verifying SNP evidence for the broker with the attestation crate.
//!
//! In order, and why:
//! 1. the evidence parses as trustee SNP evidence JSON (report re-encoded byte-exact);
//! 2. REPORT_DATA equals the runtime-data binding (cheap, and it is what ties the evidence to
//!    this session's nonce and TEE key — evidence for another nonce or key stops here);
//! 3. the chain: supplied certificates, else the VCEK from the KDS client (with its cache);
//!    a VEK issued by a simulated ASK is verified against the simulator's roots, and only
//!    when the broker runs with `--allow-simulated`; everything else against AMD's roots;
//! 4. the attestation crate's `verify` (chain, VEK extensions vs TCB and chip id, signature);
//!    a VEK whose chain verified is kept per chip, reported TCB and key kind (until its chain's
//!    earliest expiry, at most [`VEK_CACHE_SECS`]), so the next report of that chip and TCB
//!    needs no chain lookup nor chain verification, only its own signature and extensions;
//! 5. the base appraisal: VMPL 0, no debug, no migration agent, simulated only if allowed.
//!
//! What remains (reference measurements, TCB minimums) is the Rego attestation policy's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use a3s_attestation::certs::{verify_chain, VerifiedVek};
use a3s_attestation::certs::{CertChain, Certificate, Roots};
use a3s_attestation::chain_source::gather_chain;
use a3s_attestation::kds::CertSource;
use a3s_attestation::policy::{AppraisalPolicy, Verdict};
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::verify::{verify, verify_with_vek, VerifiedReport};
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Longest time a verified VEK is reused without verifying its chain again.
pub const VEK_CACHE_SECS: i64 = 3600;

/// How the broker verifies evidence.
#[derive(Clone)]
pub struct EvidenceVerifier {
    amd: Roots,
    simulated: Option<Roots>,
    source: Option<Arc<dyn CertSource + Send + Sync>>,
    simulated_crls: Option<Arc<dyn CertSource + Send + Sync>>,
    veks: Arc<VekCache>,
}

/// Which VEK signs a report: the chip, its reported TCB and VCEK or VLEK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct VekKey {
    chip_id: [u8; 64],
    reported_tcb: u64,
    key_info: u32,
}

/// VEKs whose chain verified, with when to verify it again.
#[derive(Debug, Default)]
struct VekCache {
    map: Mutex<HashMap<VekKey, (VerifiedVek, OffsetDateTime)>>,
    disabled: bool,
}

/// At most this many VEKs are kept (a new one beyond it empties the cache).
const VEK_CACHE_CAPACITY: usize = 4096;

impl VekCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<VekKey, (VerifiedVek, OffsetDateTime)>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &VekKey, at: OffsetDateTime) -> Option<VerifiedVek> {
        let mut map = self.lock();
        match map.get(key) {
            Some((vek, until)) if at < *until => Some(vek.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: VekKey, vek: VerifiedVek, until: OffsetDateTime) {
        if self.disabled {
            return;
        }
        let mut map = self.lock();
        if map.len() >= VEK_CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, (vek, until));
    }
}

impl std::fmt::Debug for EvidenceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceVerifier")
            .field("allow_simulated", &self.simulated.is_some())
            .field("cert_source", &self.source.is_some())
            .field("cached_veks", &self.veks.lock().len())
            .finish()
    }
}

/// Evidence that verified, with its claims.
#[derive(Debug, Clone)]
pub struct VerifiedEvidence {
    /// The verified report.
    pub report: VerifiedReport,
    /// The base appraisal (every check passed).
    pub verdict: Verdict,
    /// Trustee's SNP claims (policy input under `snp`).
    pub claims: Value,
}

/// Why evidence was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Not trustee SNP evidence JSON.
    #[error("evidence: {0}")]
    Parse(String),
    /// REPORT_DATA is not the runtime-data binding.
    #[error("REPORT_DATA does not bind the runtime data")]
    Binding,
    /// HOST_DATA is not the digest of the init-data the client sent.
    #[error("HOST_DATA ({actual}) is not the init-data digest ({expected})")]
    InitData {
        /// Digest of the init-data, hex.
        expected: String,
        /// HOST_DATA, hex.
        actual: String,
    },
    /// A supplied certificate is unusable.
    #[error("certificate in the evidence: {0}")]
    Certificate(String),
    /// No chain could be assembled.
    #[error("finding the report's certificates: {0}")]
    Gather(String),
    /// Revocation could not be checked (no CRL from the KDS nor its cache).
    #[error("checking revocation: {0}")]
    Revocation(String),
    /// Verification failed at `check`.
    #[error("verification failed at check {check}: {detail}")]
    Verify {
        /// The failed check.
        check: &'static str,
        /// Why.
        detail: String,
    },
    /// The base appraisal refused the report.
    #[error("appraisal refused the report at check {check}: {detail}")]
    Appraisal {
        /// The failed check.
        check: &'static str,
        /// What was compared.
        detail: String,
    },
}

fn chain_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl EvidenceVerifier {
    /// A verifier rooted in AMD's built-in roots, fetching missing VCEKs from `source`.
    pub fn new(source: Option<Arc<dyn CertSource + Send + Sync>>) -> Self {
        Self {
            amd: Roots::amd().clone(),
            simulated: None,
            source,
            simulated_crls: None,
            veks: Arc::default(),
        }
    }

    /// Also accepts evidence rooted in `roots` (a simulator's), always marked simulated.
    pub fn allow_simulated(mut self, roots: Roots) -> Self {
        self.simulated = Some(roots);
        self.veks = Arc::new(VekCache {
            map: Mutex::default(),
            disabled: self.veks.disabled,
        });
        self
    }

    /// Checks simulated chains against the CRLs `source` serves (signed by the simulated
    /// ARK), as AMD chains are checked against AMD's.
    pub fn with_simulated_crls(mut self, source: Arc<dyn CertSource + Send + Sync>) -> Self {
        self.simulated_crls = Some(source);
        self.veks = Arc::new(VekCache {
            map: Mutex::default(),
            disabled: self.veks.disabled,
        });
        self
    }

    /// Verifies every chain again instead of reusing verified VEKs (for measuring what the
    /// cache saves).
    pub fn without_vek_cache(mut self) -> Self {
        self.veks = Arc::new(VekCache {
            map: Mutex::default(),
            disabled: true,
        });
        self
    }

    /// How many verified VEKs are cached.
    pub fn cached_veks(&self) -> usize {
        self.veks.lock().len()
    }

    /// Whether simulated evidence is accepted.
    pub fn allows_simulated(&self) -> bool {
        self.simulated.is_some()
    }

    /// Verifies `primary_evidence` against `expected_report_data` as of `at`.
    ///
    /// # Errors
    /// [`EvidenceError`] naming the failed step.
    pub fn verify(
        &self,
        primary_evidence: &Value,
        expected_report_data: &[u8; 64],
        at: OffsetDateTime,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        self.verify_with_init_data(primary_evidence, expected_report_data, None, at)
    }

    /// As [`EvidenceVerifier::verify`], also requiring HOST_DATA to equal `host_data` (the
    /// init-data digest) when given.
    ///
    /// # Errors
    /// [`EvidenceError`] naming the failed step.
    pub fn verify_with_init_data(
        &self,
        primary_evidence: &Value,
        expected_report_data: &[u8; 64],
        host_data: Option<&[u8; 32]>,
        at: OffsetDateTime,
    ) -> Result<VerifiedEvidence, EvidenceError> {
        let bytes = serde_json::to_vec(primary_evidence)
            .map_err(|e| EvidenceError::Parse(e.to_string()))?;
        let evidence = Evidence::from_trustee_json(&bytes)
            .map_err(|e| EvidenceError::Parse(chain_text(&e)))?;
        let report = &evidence.report;
        if &report.report_data() != expected_report_data {
            return Err(EvidenceError::Binding);
        }
        if let Some(want) = host_data {
            if &report.host_data() != want {
                return Err(EvidenceError::InitData {
                    expected: hex::encode(want),
                    actual: hex::encode(report.host_data()),
                });
            }
        }
        let key = VekKey {
            chip_id: report.chip_id(),
            reported_tcb: report.reported_tcb().0,
            key_info: report.key_info().raw(),
        };
        let verified = match self.veks.get(&key, at) {
            Some(vek) => verify_with_vek(report, &vek).map_err(|e| EvidenceError::Verify {
                check: e.check_name(),
                detail: chain_text(&e),
            })?,
            None => self.verify_chain_and_report(&evidence, key, at)?,
        };
        let base = AppraisalPolicy {
            allow_simulated: self.simulated.is_some(),
            ..AppraisalPolicy::default()
        };
        let verdict = base.appraise(&verified);
        if let Some(failed) = verdict.first_failure() {
            return Err(EvidenceError::Appraisal {
                check: failed.name,
                detail: failed.detail.clone(),
            });
        }
        let claims = claims(&verified);
        Ok(VerifiedEvidence {
            report: verified,
            verdict,
            claims,
        })
    }

    /// The full verification of a report whose VEK is not cached: gather and verify the
    /// chain, verify the report, then keep the VEK until the chain's earliest expiry.
    fn verify_chain_and_report(
        &self,
        evidence: &Evidence,
        key: VekKey,
        at: OffsetDateTime,
    ) -> Result<VerifiedReport, EvidenceError> {
        let report = &evidence.report;
        let mut supplied = Vec::new();
        for (kind, der) in &evidence.cert_chain {
            if matches!(
                kind,
                CertType::Vcek | CertType::Vlek | CertType::Ask | CertType::Ark
            ) {
                supplied.push(
                    Certificate::from_der(der)
                        .map_err(|e| EvidenceError::Certificate(chain_text(&e)))?,
                );
            }
        }
        let (roots, chain, crls) = match self.simulated_chain(&supplied)? {
            Some((roots, chain)) => (roots, chain, self.simulated_crls.as_deref()),
            None => {
                let source = self.source.as_deref().map(|s| s as &dyn CertSource);
                let chain = gather_chain(report, supplied, source)
                    .map_err(|e| EvidenceError::Gather(chain_text(&e)))?;
                (&self.amd, chain, self.source.as_deref())
            }
        };
        let failed = |e: a3s_attestation::verify::VerifyError| EvidenceError::Verify {
            check: e.check_name(),
            detail: chain_text(&e),
        };
        // Revocation: with a certificate source (the KDS client and its cache, which keeps
        // working offline), the product's CRL must be had and must not list the chain.
        let crl = match crls {
            Some(source) => {
                let vek = chain.vek();
                let (Some(product), Some(kind)) = (vek.product(), vek.vek_kind()) else {
                    return Err(EvidenceError::Certificate(
                        "the VEK names no product or key kind".into(),
                    ));
                };
                Some(
                    a3s_attestation::chain_source::fetch_crl(source, roots, product, kind, at)
                        .map_err(|e| EvidenceError::Revocation(chain_text(&e)))?,
                )
            }
            None => None,
        };
        let verified = verify(report, &chain, roots, at, crl.as_ref()).map_err(failed)?;
        // The chain verified just now; keep its VEK for the next report of this chip and TCB.
        if let Ok(vek) = verify_chain(roots, verified.product(), &chain, at) {
            let mut until = at + time::Duration::seconds(VEK_CACHE_SECS);
            for cert in [Some(chain.vek()), chain.ask(), chain.ark(), chain.asvk()]
                .into_iter()
                .flatten()
            {
                until = until.min(cert.not_after());
            }
            self.veks.put(key, vek, until);
        }
        Ok(verified)
    }

    /// The simulator's roots and the supplied chain when the supplied VEK was issued by a
    /// simulated ASK this broker trusts.
    fn simulated_chain(
        &self,
        supplied: &[Certificate],
    ) -> Result<Option<(&Roots, CertChain)>, EvidenceError> {
        let Some(roots) = &self.simulated else {
            return Ok(None);
        };
        let Some(vek) = supplied.iter().find(|c| c.vek_kind().is_some()) else {
            return Ok(None);
        };
        let ours = vek
            .product()
            .and_then(|p| roots.get(p))
            .and_then(|r| r.ask())
            .is_some_and(|ask| ask.subject_der() == vek.issuer_der());
        if !ours {
            return Ok(None);
        }
        let chain = CertChain::from_certificates(supplied.to_vec())
            .map_err(|e| EvidenceError::Certificate(chain_text(&e)))?;
        Ok(Some((roots, chain)))
    }
}

/// The HOST_DATA an init-data document binds: its digest with the document's `algorithm`
/// (`sha256`, `sha384`, `sha512`) over the exact body bytes, truncated to 32 bytes.
///
/// # Errors
/// A message when the format or algorithm is unknown or the body does not parse.
pub fn init_data_host_data(format: &str, body: &str) -> Result<[u8; 32], String> {
    use sha2::Digest as _;
    let algorithm = match format {
        "toml" => toml::from_str::<toml::Value>(body)
            .map_err(|e| format!("init-data is not TOML: {e}"))?
            .get("algorithm")
            .and_then(|v| v.as_str().map(str::to_owned)),
        "json" => serde_json::from_str::<Value>(body)
            .map_err(|e| format!("init-data is not JSON: {e}"))?
            .get("algorithm")
            .and_then(|v| v.as_str().map(str::to_owned)),
        other => {
            return Err(format!(
                "init-data format {other:?} (supported: toml, json)"
            ))
        }
    };
    let digest: Vec<u8> = match algorithm.as_deref() {
        Some("sha256") => sha2::Sha256::digest(body.as_bytes()).to_vec(),
        Some("sha384") => sha2::Sha384::digest(body.as_bytes()).to_vec(),
        Some("sha512") => sha2::Sha512::digest(body.as_bytes()).to_vec(),
        other => {
            return Err(format!(
                "init-data algorithm {other:?} (supported: sha256, sha384, sha512)"
            ))
        }
    };
    let mut out = [0u8; 32];
    out.copy_from_slice(&digest[..32]);
    Ok(out)
}

/// Trustee's SNP claims for a verified report (names as trustee's verifier emits them), plus
/// `simulated`, `product`, `vmpl`, `guest_svn`, `reported_tcb_fmc` and `host_data`.
pub fn claims(v: &VerifiedReport) -> Value {
    let r = v.report();
    let p = r.policy();
    let pi = r.platform_info();
    let tcb = v.reported_tcb();
    json!({
        "policy_abi_major": p.abi_major(),
        "policy_abi_minor": p.abi_minor(),
        "policy_smt_allowed": p.smt_allowed(),
        "policy_migrate_ma": p.migrate_ma(),
        "policy_debug_allowed": p.debug(),
        "policy_single_socket": p.single_socket(),
        "reported_tcb_bootloader": tcb.bootloader,
        "reported_tcb_tee": tcb.tee,
        "reported_tcb_snp": tcb.snp,
        "reported_tcb_microcode": tcb.microcode,
        "reported_tcb_fmc": tcb.fmc.unwrap_or(0),
        "platform_tsme_enabled": pi.tsme_enabled(),
        "platform_smt_enabled": pi.smt_enabled(),
        "measurement": hex::encode(r.measurement()),
        "report_data": hex::encode(r.report_data()),
        "init_data": hex::encode(r.host_data()),
        "host_data": hex::encode(r.host_data()),
        "chip_id": hex::encode(r.chip_id()),
        "vmpl": r.vmpl(),
        "guest_svn": r.guest_svn(),
        "product": v.product().as_str(),
        "simulated": v.simulated(),
    })
}
