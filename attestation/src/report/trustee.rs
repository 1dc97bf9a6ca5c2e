//! SNP evidence as the Confidential Containers (trustee) KBS exchanges it: the `sev` crate's
//! serde form of the report plus an optional certificate table.
//!
//! ```json
//! {"attestation_report": {"version": 3, "guest_svn": 0, "policy": 196608, "family_id": [..16], ...,
//!   "current_tcb": {"fmc": null, "bootloader": 10, "tee": 0, "snp": 23, "microcode": 25}, ...,
//!   "signature": {"r": [..72], "s": [..72]}},
//!  "cert_chain": null | [{"cert_type": "VCEK", "data": [..]}]}
//! ```
//!
//! Byte arrays are JSON arrays of numbers and reserved bytes are not carried, so the report is
//! re-encoded with zero reserved bytes (the firmware writes zeros there) before its signature is
//! checked; a report that had non-zero reserved bytes would fail verification, never pass.

use serde::{Deserialize, Serialize};

use super::{layout_of, Report, ReportError, ReportFields, Tcb, TcbLayout};
use crate::Product;

/// Why trustee-format evidence could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The JSON does not have the expected shape.
    #[error("evidence is not trustee SNP evidence JSON")]
    Json(#[from] serde_json::Error),
    /// A byte-array field has the wrong length.
    #[error("field {field} has {actual} bytes, expected {expected}")]
    FieldLength {
        /// JSON field name.
        field: &'static str,
        /// Length found.
        actual: usize,
        /// Length required.
        expected: usize,
    },
    /// A TCB carries an FMC level but the report is from a generation without one.
    #[error("TCB has an fmc level but the report is not from a Turin (or later) chip")]
    FmcOnLegacy,
    /// The re-encoded report breaks a report rule.
    #[error("report in evidence is invalid")]
    Report(#[from] ReportError),
}

/// SNP evidence: a report and the certificates that came with it.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The report, re-encoded to its 1184-byte form.
    pub report: Report,
    /// Certificates supplied with the report, as (type, DER bytes).
    pub cert_chain: Vec<(CertType, Vec<u8>)>,
}

/// The type of a certificate table entry (trustee names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertType {
    /// AMD root key.
    #[serde(rename = "ARK")]
    Ark,
    /// AMD SEV signing key.
    #[serde(rename = "ASK")]
    Ask,
    /// Versioned chip endorsement key.
    #[serde(rename = "VCEK")]
    Vcek,
    /// Versioned loaded endorsement key.
    #[serde(rename = "VLEK")]
    Vlek,
    /// Certificate revocation list.
    #[serde(rename = "CRL")]
    Crl,
    /// An empty entry.
    Empty,
    /// Any other GUID.
    #[serde(rename = "OTHER")]
    Other(String),
}

#[derive(Serialize, Deserialize)]
struct CertEntry {
    cert_type: CertType,
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct JsonEvidence {
    attestation_report: JsonReport,
    cert_chain: Option<Vec<CertEntry>>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct JsonVersion {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Serialize, Deserialize)]
struct JsonSignature {
    r: Vec<u8>,
    s: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct JsonReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: Tcb,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: Tcb,
    #[serde(default)]
    cpuid_fam_id: Option<u8>,
    #[serde(default)]
    cpuid_mod_id: Option<u8>,
    #[serde(default)]
    cpuid_step: Option<u8>,
    chip_id: Vec<u8>,
    committed_tcb: Tcb,
    current: JsonVersion,
    committed: JsonVersion,
    launch_tcb: Tcb,
    #[serde(default)]
    launch_mit_vector: Option<u64>,
    #[serde(default)]
    current_mit_vector: Option<u64>,
    signature: JsonSignature,
}

fn array<const N: usize>(field: &'static str, v: &[u8]) -> Result<[u8; N], EvidenceError> {
    v.try_into().map_err(|_| EvidenceError::FieldLength {
        field,
        actual: v.len(),
        expected: N,
    })
}

impl Evidence {
    /// Reads trustee SNP evidence JSON (`primary_evidence` of a `tee: "snp"` attestation).
    ///
    /// # Errors
    /// [`EvidenceError`] for malformed JSON, wrong field lengths or an invalid report.
    pub fn from_trustee_json(json: &[u8]) -> Result<Self, EvidenceError> {
        let e: JsonEvidence = serde_json::from_slice(json)?;
        let r = e.attestation_report;
        let cpuid = match (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) {
            (Some(f), Some(m), Some(s)) => Some((f, m, s)),
            _ => None,
        };
        // The CPUID decides the layout when present; without it (v2) an FMC level means Turin.
        let has_fmc = [
            &r.current_tcb,
            &r.reported_tcb,
            &r.committed_tcb,
            &r.launch_tcb,
        ]
        .iter()
        .any(|t| t.fmc.is_some());
        let layout = match cpuid.and_then(|(f, m, _)| Product::from_cpuid(f, m)) {
            Some(p) => layout_of(p),
            None if has_fmc => TcbLayout::Turin,
            None => TcbLayout::Legacy,
        };
        if layout == TcbLayout::Legacy && has_fmc {
            return Err(EvidenceError::FmcOnLegacy);
        }
        let fields = ReportFields {
            version: r.version,
            guest_svn: r.guest_svn,
            policy: r.policy,
            family_id: array("family_id", &r.family_id)?,
            image_id: array("image_id", &r.image_id)?,
            vmpl: r.vmpl,
            sig_algo: r.sig_algo,
            current_tcb: r.current_tcb.encode(layout),
            platform_info: r.plat_info,
            key_info: r.key_info,
            report_data: array("report_data", &r.report_data)?,
            measurement: array("measurement", &r.measurement)?,
            host_data: array("host_data", &r.host_data)?,
            id_key_digest: array("id_key_digest", &r.id_key_digest)?,
            author_key_digest: array("author_key_digest", &r.author_key_digest)?,
            report_id: array("report_id", &r.report_id)?,
            report_id_ma: array("report_id_ma", &r.report_id_ma)?,
            reported_tcb: r.reported_tcb.encode(layout),
            cpuid,
            chip_id: array("chip_id", &r.chip_id)?,
            committed_tcb: r.committed_tcb.encode(layout),
            current_version: (r.current.major, r.current.minor, r.current.build),
            committed_version: (r.committed.major, r.committed.minor, r.committed.build),
            launch_tcb: r.launch_tcb.encode(layout),
            launch_mit_vector: r.launch_mit_vector,
            current_mit_vector: r.current_mit_vector,
            signature_r: array("signature.r", &r.signature.r)?,
            signature_s: array("signature.s", &r.signature.s)?,
        };
        let report = fields.encode()?;
        let cert_chain = e
            .cert_chain
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.cert_type, c.data))
            .collect();
        Ok(Self { report, cert_chain })
    }

    /// Writes this evidence in trustee's JSON form.
    ///
    /// # Errors
    /// [`EvidenceError::Report`] when the report's generation (and so its TCB layout) is unknown.
    pub fn to_trustee_json(&self) -> Result<serde_json::Value, EvidenceError> {
        let f = self.report.fields();
        let layout = self.report.tcb_layout()?;
        let (fam, model, step) = match f.cpuid {
            Some((a, b, c)) => (Some(a), Some(b), Some(c)),
            None => (None, None, None),
        };
        let version = |(major, minor, build): (u8, u8, u8)| JsonVersion {
            major,
            minor,
            build,
        };
        let report = JsonReport {
            version: f.version,
            guest_svn: f.guest_svn,
            policy: f.policy,
            family_id: f.family_id.to_vec(),
            image_id: f.image_id.to_vec(),
            vmpl: f.vmpl,
            sig_algo: f.sig_algo,
            current_tcb: f.current_tcb.decode(layout),
            plat_info: f.platform_info,
            key_info: f.key_info,
            report_data: f.report_data.to_vec(),
            measurement: f.measurement.to_vec(),
            host_data: f.host_data.to_vec(),
            id_key_digest: f.id_key_digest.to_vec(),
            author_key_digest: f.author_key_digest.to_vec(),
            report_id: f.report_id.to_vec(),
            report_id_ma: f.report_id_ma.to_vec(),
            reported_tcb: f.reported_tcb.decode(layout),
            cpuid_fam_id: fam,
            cpuid_mod_id: model,
            cpuid_step: step,
            chip_id: f.chip_id.to_vec(),
            committed_tcb: f.committed_tcb.decode(layout),
            current: version(f.current_version),
            committed: version(f.committed_version),
            launch_tcb: f.launch_tcb.decode(layout),
            launch_mit_vector: f.launch_mit_vector,
            current_mit_vector: f.current_mit_vector,
            signature: JsonSignature {
                r: f.signature_r.to_vec(),
                s: f.signature_s.to_vec(),
            },
        };
        let chain = (!self.cert_chain.is_empty()).then(|| {
            self.cert_chain
                .iter()
                .map(|(t, d)| CertEntry {
                    cert_type: t.clone(),
                    data: d.clone(),
                })
                .collect()
        });
        Ok(serde_json::to_value(JsonEvidence {
            attestation_report: report,
            cert_chain: chain,
        })?)
    }
}
