//! Writing to stdout: data only; progress and diagnostics go to stderr.

use std::io::Write;

use serde::Serialize;

/// Writes `value` as pretty JSON and a newline.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Writes one line of text.
pub(crate) fn line(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

/// Writes aligned `key: value` rows.
pub(crate) fn rows(rows: &[(&str, String)]) -> anyhow::Result<()> {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for (k, v) in rows {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// The decoded fields of a report, as printed by `attest show` and `attest verify`.
/// Byte fields are lower-case hex.
#[derive(Debug, Serialize)]
pub(crate) struct ReportView {
    pub(crate) version: u32,
    pub(crate) product: Option<&'static str>,
    pub(crate) tcb_layout: a3s_attestation::report::TcbLayout,
    pub(crate) guest_svn: u32,
    pub(crate) policy: a3s_attestation::report::PolicyView,
    pub(crate) family_id: String,
    pub(crate) image_id: String,
    pub(crate) vmpl: u32,
    pub(crate) signature_algo: u32,
    pub(crate) signing_key: &'static str,
    pub(crate) author_key_en: bool,
    pub(crate) mask_chip_key: bool,
    pub(crate) platform_info: a3s_attestation::report::PlatformInfoView,
    pub(crate) report_data: String,
    pub(crate) measurement: String,
    pub(crate) host_data: String,
    pub(crate) id_key_digest: String,
    pub(crate) author_key_digest: String,
    pub(crate) report_id: String,
    pub(crate) report_id_ma: String,
    pub(crate) chip_id: String,
    pub(crate) cpuid: Option<CpuidView>,
    pub(crate) current_tcb: a3s_attestation::report::Tcb,
    pub(crate) reported_tcb: a3s_attestation::report::Tcb,
    pub(crate) committed_tcb: a3s_attestation::report::Tcb,
    pub(crate) launch_tcb: a3s_attestation::report::Tcb,
    pub(crate) current_firmware: String,
    pub(crate) committed_firmware: String,
    pub(crate) launch_mit_vector: Option<String>,
    pub(crate) current_mit_vector: Option<String>,
    pub(crate) signature_r: String,
    pub(crate) signature_s: String,
}

/// CPUID identification of the chip (report version 3 and later).
#[derive(Debug, Serialize)]
pub(crate) struct CpuidView {
    pub(crate) family: String,
    pub(crate) model: String,
    pub(crate) stepping: String,
}

impl ReportView {
    pub(crate) fn new(
        r: &a3s_attestation::Report,
        product: Option<a3s_attestation::Product>,
        layout: a3s_attestation::report::TcbLayout,
    ) -> Self {
        let fw = |(major, minor, build): (u8, u8, u8)| format!("{major}.{minor}.{build}");
        let key = r.key_info();
        Self {
            version: r.version(),
            product: product.map(a3s_attestation::Product::as_str),
            tcb_layout: layout,
            guest_svn: r.guest_svn(),
            policy: r.policy().decoded(),
            family_id: hex::encode(r.family_id()),
            image_id: hex::encode(r.image_id()),
            vmpl: r.vmpl(),
            signature_algo: r.signature_algo(),
            signing_key: key.signing_key().as_str(),
            author_key_en: key.author_key_en(),
            mask_chip_key: key.mask_chip_key(),
            platform_info: r.platform_info().decoded(),
            report_data: hex::encode(r.report_data()),
            measurement: hex::encode(r.measurement()),
            host_data: hex::encode(r.host_data()),
            id_key_digest: hex::encode(r.id_key_digest()),
            author_key_digest: hex::encode(r.author_key_digest()),
            report_id: hex::encode(r.report_id()),
            report_id_ma: hex::encode(r.report_id_ma()),
            chip_id: hex::encode(r.chip_id()),
            cpuid: r.cpuid().map(|(f, m, s)| CpuidView {
                family: format!("{f:#04x}"),
                model: format!("{m:#04x}"),
                stepping: format!("{s:#04x}"),
            }),
            current_tcb: r.current_tcb().decode(layout),
            reported_tcb: r.reported_tcb().decode(layout),
            committed_tcb: r.committed_tcb().decode(layout),
            launch_tcb: r.launch_tcb().decode(layout),
            current_firmware: fw(r.current_version()),
            committed_firmware: fw(r.committed_version()),
            launch_mit_vector: r.launch_mit_vector().map(|v| format!("{v:#x}")),
            current_mit_vector: r.current_mit_vector().map(|v| format!("{v:#x}")),
            signature_r: hex::encode(r.signature_r()),
            signature_s: hex::encode(r.signature_s()),
        }
    }

    pub(crate) fn text_rows(&self) -> Vec<(&'static str, String)> {
        let p = &self.policy;
        let flags = |pairs: &[(&str, bool)]| {
            let on: Vec<&str> = pairs.iter().filter(|(_, b)| *b).map(|(n, _)| *n).collect();
            if on.is_empty() {
                "none".to_owned()
            } else {
                on.join(" ")
            }
        };
        let pi = &self.platform_info;
        let mut rows = vec![
            ("version", self.version.to_string()),
            (
                "product",
                self.product
                    .unwrap_or("unknown (milan or genoa layout)")
                    .to_owned(),
            ),
            ("guest svn", self.guest_svn.to_string()),
            (
                "policy",
                format!(
                    "{} abi {}.{} [{}]",
                    p.raw,
                    p.abi_major,
                    p.abi_minor,
                    flags(&[
                        ("smt", p.smt_allowed),
                        ("migrate-ma", p.migrate_ma),
                        ("DEBUG", p.debug),
                        ("single-socket", p.single_socket),
                        ("cxl", p.cxl_allow),
                        ("aes-256-xts", p.mem_aes_256_xts),
                        ("rapl-dis", p.rapl_dis),
                        ("ciphertext-hiding", p.ciphertext_hiding),
                        ("page-swap-disable", p.page_swap_disable),
                    ])
                ),
            ),
            ("vmpl", self.vmpl.to_string()),
            ("signing key", self.signing_key.to_owned()),
            ("measurement", self.measurement.clone()),
            ("report data", self.report_data.clone()),
            ("host data", self.host_data.clone()),
            ("family id", self.family_id.clone()),
            ("image id", self.image_id.clone()),
            ("id key digest", self.id_key_digest.clone()),
            ("author key digest", self.author_key_digest.clone()),
            ("report id", self.report_id.clone()),
            ("report id ma", self.report_id_ma.clone()),
            ("chip id", self.chip_id.clone()),
            (
                "platform info",
                format!(
                    "{} [{}]",
                    pi.raw,
                    flags(&[
                        ("smt", pi.smt_enabled),
                        ("tsme", pi.tsme_enabled),
                        ("ecc", pi.ecc_enabled),
                        ("rapl-dis", pi.rapl_disabled),
                        ("ciphertext-hiding", pi.ciphertext_hiding_enabled),
                        ("alias-check-complete", pi.alias_check_complete),
                        ("sev-tio", pi.sev_tio_enabled),
                    ])
                ),
            ),
            ("current tcb", self.current_tcb.to_string()),
            ("reported tcb", self.reported_tcb.to_string()),
            ("committed tcb", self.committed_tcb.to_string()),
            ("launch tcb", self.launch_tcb.to_string()),
            ("current firmware", self.current_firmware.clone()),
            ("committed firmware", self.committed_firmware.clone()),
        ];
        if let Some(c) = &self.cpuid {
            rows.push((
                "cpuid",
                format!(
                    "family {} model {} stepping {}",
                    c.family, c.model, c.stepping
                ),
            ));
        }
        if let Some(v) = &self.launch_mit_vector {
            rows.push(("launch mit vector", v.clone()));
        }
        if let Some(v) = &self.current_mit_vector {
            rows.push(("current mit vector", v.clone()));
        }
        rows
    }
}

/// Sizes in binary units (`images`, `system df`, prune reports).
pub(crate) fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1}GiB", b / 1024.0 / 1024.0 / 1024.0)
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1}MiB", b / 1024.0 / 1024.0)
    } else if b >= 1024.0 {
        format!("{:.1}KiB", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}
