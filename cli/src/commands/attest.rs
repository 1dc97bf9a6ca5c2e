//! `a3s-box attest ...`: show, verify and fetch certificates for SEV-SNP reports.

use std::path::Path;

use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::report::{GenerationHint, TcbLayout};
use a3s_attestation::{Product, Report};
use anyhow::Context;

use crate::args::{Format, ShowArgs};
use crate::output::{self, ReportView};
use crate::{usage_error, ExitStatus};

/// A report read from a file, with any certificates that travelled with it.
pub(crate) struct LoadedReport {
    pub(crate) report: Report,
    pub(crate) certs: Vec<(CertType, Vec<u8>)>,
}

/// Reads a report given as raw bytes, hex text or trustee evidence JSON. Errors are usage errors.
pub(crate) fn load_report(path: &Path) -> anyhow::Result<LoadedReport> {
    let bytes = crate::input::read_limited(path, crate::input::REPORT_MAX_BYTES, "report")?;
    let looks_like_json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if looks_like_json {
        Evidence::from_trustee_json(&bytes)
            .map(|e| LoadedReport {
                report: e.report,
                certs: e.cert_chain,
            })
            .map_err(anyhow::Error::from)
    } else {
        Report::from_bytes_or_hex(&bytes)
            .map(|report| LoadedReport {
                report,
                certs: Vec::new(),
            })
            .map_err(anyhow::Error::from)
    };
    parsed
        .with_context(|| format!("{} is not a usable SEV-SNP report", path.display()))
        .map_err(usage_error)
}

/// The product and TCB layout the report itself implies (legacy when it cannot tell).
pub(crate) fn implied_layout(report: &Report) -> (Option<Product>, TcbLayout) {
    match report.generation_hint() {
        GenerationHint::Known(p) => (Some(p), report.tcb_layout_for(p)),
        GenerationHint::MilanOrGenoa | GenerationHint::Unknown => (None, TcbLayout::Legacy),
    }
}

pub(crate) fn show(args: &ShowArgs) -> anyhow::Result<ExitStatus> {
    let loaded = load_report(&args.report)?;
    let (product, layout) = implied_layout(&loaded.report);
    let view = ReportView::new(&loaded.report, product, layout);
    match args.format.format {
        Format::Json => output::json(&view)?,
        Format::Text => output::rows(&view.text_rows())?,
    }
    Ok(ExitStatus::Success)
}
