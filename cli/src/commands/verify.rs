//! `a3s-box attest verify` and `a3s-box attest fetch-certs`.

use std::path::Path;

use a3s_attestation::certs::{CertChain, Certificate, Roots, VekKind};
use a3s_attestation::chain_source::{self, gather_chain};
use a3s_attestation::kds::{CertSource, KdsCache, KdsClient, DEFAULT_BASE_URL};
use a3s_attestation::policy::{AppraisalPolicy, Verdict};
use a3s_attestation::report::trustee::CertType;
use a3s_attestation::verify::{verify, VerifiedReport, VerifyError};
use a3s_attestation::Report;
use a3s_runtime::A3sHome;
use a3s_simulator::Simulator;
use anyhow::Context;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::args::{FetchCertsArgs, Format, VerifyArgs};
use crate::commands::attest::load_report;
use crate::output::{self, ReportView};
use crate::{usage_error, ExitStatus};

/// Environment variable that points the KDS client at another base URL (a mirror, or the
/// simulator's `a3s-box simulator kds serve`).
pub(crate) const KDS_URL_ENV: &str = "A3S_KDS_URL";

fn home() -> anyhow::Result<A3sHome> {
    A3sHome::from_env().map_err(|e| usage_error(e.into()))
}

fn kds_client(home: &A3sHome, offline: bool) -> KdsClient {
    let base = std::env::var(KDS_URL_ENV).ok().filter(|v| !v.is_empty());
    KdsClient::new()
        .with_base_url(base.unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()))
        .with_cache(KdsCache::new(home.kds_cache()))
        .with_offline(offline)
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<Certificate>> {
    let bytes = crate::input::read_limited(path, crate::input::CERT_MAX_BYTES, what)
        .map_err(usage_error)?;
    Certificate::parse_all(&bytes)
        .with_context(|| format!("{what} {} is not a usable AMD certificate", path.display()))
        .map_err(usage_error)
}

fn parse_at(at: Option<&str>) -> anyhow::Result<OffsetDateTime> {
    match at {
        None => Ok(OffsetDateTime::now_utc()),
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .with_context(|| {
                format!("--at {s:?} is not an RFC 3339 time such as 2025-09-01T00:00:00Z")
            })
            .map_err(usage_error),
    }
}

/// The verdict as printed: stable field names, byte fields lower-case hex.
#[derive(Serialize)]
struct VerifyOutput {
    verified: bool,
    simulated: bool,
    failed_check: Option<String>,
    error: Option<String>,
    product: Option<&'static str>,
    signing_key: &'static str,
    measurement: String,
    report_data: String,
    host_data: String,
    chip_id: String,
    vmpl: u32,
    policy: a3s_attestation::report::PolicyView,
    reported_tcb: Option<a3s_attestation::report::Tcb>,
    revocation_checked: bool,
    at: String,
    checks: Vec<a3s_attestation::policy::Check>,
    report: ReportView,
}

/// The chain and trust anchors a report is verified against, and where more can be fetched.
struct Trust {
    roots: Roots,
    chain: CertChain,
    source: Option<KdsClient>,
}

pub(crate) fn run(args: &VerifyArgs) -> anyhow::Result<ExitStatus> {
    let loaded = load_report(&args.report)?;
    let report = &loaded.report;
    let mut policy = match &args.policy {
        Some(p) => {
            let text = crate::input::read_text_limited(p, crate::input::TEXT_MAX_BYTES, "policy")?;
            AppraisalPolicy::parse(&text, &p.display().to_string())
                .map_err(|e| usage_error(e.into()))?
        }
        None => AppraisalPolicy::default(),
    };
    policy.allow_simulated |= args.allow_simulated;
    let allow_simulated = policy.allow_simulated;
    let at = parse_at(args.at.as_deref())?;
    let home = home()?;

    let mut supplied = Vec::new();
    for (kind, der) in &loaded.certs {
        if matches!(
            kind,
            CertType::Vcek | CertType::Vlek | CertType::Ask | CertType::Ark
        ) {
            supplied.push(
                Certificate::from_der(der)
                    .context("a certificate in the evidence is not usable")
                    .map_err(usage_error)?,
            );
        }
    }
    if let Some(p) = &args.vcek {
        supplied.extend(read_certs(p, "VCEK")?);
    }
    if let Some(p) = &args.cert_chain {
        supplied.extend(read_certs(p, "certificate chain")?);
    }

    let trust = match simulated_trust(report, &supplied, &home)? {
        Some(t) => t,
        None => {
            let client = kds_client(&home, args.offline);
            let chain = gather_chain(report, supplied, Some(&client))
                .context("finding the report's certificates")
                .map_err(usage_error)?;
            Trust {
                roots: Roots::amd().clone(),
                chain,
                source: Some(client),
            }
        }
    };
    let mut revocation_checked = false;
    let crl = trust.source.as_ref().and_then(|src| {
        let product = trust.chain.vek().product()?;
        let kind = trust.chain.vek().vek_kind()?;
        match chain_source::fetch_crl(src, &trust.roots, product, kind, at) {
            Ok(crl) => {
                revocation_checked = true;
                Some(crl)
            }
            Err(e) => {
                eprintln!("warning: revocation not checked: {}", error_chain(&e));
                None
            }
        }
    });

    let result = verify(report, &trust.chain, &trust.roots, at, crl.as_ref());
    let output = build_output(report, &result, &policy, revocation_checked, at);
    record_verdict(&home, &output)?;
    match args.format.format {
        Format::Json => output::json(&output)?,
        Format::Text => print_text(&output)?,
    }
    if !output.verified {
        let check = output.failed_check.as_deref().unwrap_or("unknown");
        let why = output.error.clone().unwrap_or_default();
        eprintln!("error: verification failed at check {check}: {why}");
        if matches!(check, "certificate_chain" | "simulated") && !allow_simulated {
            eprintln!(
                "hint: if this is evidence from the A3S Box simulator, pass --allow-simulated"
            );
        }
        return Ok(ExitStatus::Failure);
    }
    Ok(ExitStatus::Success)
}

/// Has the engine record the verdict in the audit log before it is reported.
fn record_verdict(home: &A3sHome, output: &VerifyOutput) -> anyhow::Result<()> {
    let verdict = a3s_runtime::engine::EvidenceVerdict {
        verified: output.verified,
        simulated: output.simulated,
        failed_check: output.failed_check.clone(),
        measurement: output.measurement.clone(),
        chip_id: output.chip_id.clone(),
    };
    a3s_runtime::engine::Engine::open(home)
        .record_evidence_verdict(&verdict)
        .map_err(super::engine_error)
}

/// When this home's simulator issued the report's chip (or the supplied VEK), the simulator's
/// roots and chain; otherwise `None` and AMD's roots apply. Such evidence then verifies as
/// `simulated: true`, and the policy's `simulated` check refuses it unless allowed, so the
/// user learns what the evidence is instead of a KDS lookup failure.
fn simulated_trust(
    report: &Report,
    supplied: &[Certificate],
    home: &A3sHome,
) -> anyhow::Result<Option<Trust>> {
    let Some(sim) =
        Simulator::open_existing(home.root()).context("opening this home's simulator")?
    else {
        return Ok(None);
    };
    let roots = sim.roots()?;
    let supplied_vek = supplied.iter().find(|c| c.vek_kind().is_some());
    let chain = match (supplied_vek, sim.find_vcek(&report.chip_id())) {
        // A supplied VEK counts as simulated when its issuer is this simulator's ASK.
        (Some(vek), _) => {
            let ours = vek
                .product()
                .and_then(|p| roots.get(p))
                .and_then(|r| r.ask())
                .is_some_and(|ask| ask.subject_der() == vek.issuer_der());
            if !ours {
                return Ok(None);
            }
            CertChain::from_certificates(supplied.to_vec()).map_err(|e| usage_error(e.into()))?
        }
        (None, Some((_, der))) => CertChain::from_vek(Certificate::from_der(der)?)?,
        (None, None) => return Ok(None),
    };
    Ok(Some(Trust {
        roots,
        chain,
        source: None,
    }))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn build_output(
    report: &Report,
    result: &Result<VerifiedReport, VerifyError>,
    policy: &AppraisalPolicy,
    revocation_checked: bool,
    at: OffsetDateTime,
) -> VerifyOutput {
    let (product, layout) = match result {
        Ok(v) => (Some(v.product()), v.tcb_layout()),
        Err(_) => crate::commands::attest::implied_layout(report),
    };
    let verdict: Option<Verdict> = result.as_ref().ok().map(|v| policy.appraise(v));
    let (failed_check, error) = match (result, &verdict) {
        (Err(e), _) => (Some(e.check_name().to_owned()), Some(error_chain(e))),
        (Ok(_), Some(v)) => match v.first_failure() {
            Some(c) => (Some(c.name.to_owned()), Some(c.detail.clone())),
            None => (None, None),
        },
        (Ok(_), None) => (None, None),
    };
    VerifyOutput {
        verified: failed_check.is_none(),
        simulated: result.as_ref().is_ok_and(VerifiedReport::simulated),
        failed_check,
        error,
        product: product.map(a3s_attestation::Product::as_str),
        signing_key: report.key_info().signing_key().as_str(),
        measurement: hex::encode(report.measurement()),
        report_data: hex::encode(report.report_data()),
        host_data: hex::encode(report.host_data()),
        chip_id: hex::encode(report.chip_id()),
        vmpl: report.vmpl(),
        policy: report.policy().decoded(),
        reported_tcb: result.as_ref().ok().map(VerifiedReport::reported_tcb),
        revocation_checked,
        at: at.format(&Rfc3339).unwrap_or_default(),
        checks: verdict.map(|v| v.checks).unwrap_or_default(),
        report: ReportView::new(report, product, layout),
    }
}

fn print_text(o: &VerifyOutput) -> anyhow::Result<()> {
    let mut rows = vec![
        ("verified", o.verified.to_string()),
        ("simulated", o.simulated.to_string()),
        ("product", o.product.unwrap_or("unknown").to_owned()),
        ("signing key", o.signing_key.to_owned()),
        ("measurement", o.measurement.clone()),
        ("report data", o.report_data.clone()),
        ("host data", o.host_data.clone()),
        ("vmpl", o.vmpl.to_string()),
        ("revocation checked", o.revocation_checked.to_string()),
        ("as of", o.at.clone()),
    ];
    if let Some(t) = &o.reported_tcb {
        rows.push(("reported tcb", t.to_string()));
    }
    if let Some(c) = &o.failed_check {
        rows.push(("failed check", c.clone()));
    }
    output::rows(&rows)?;
    for c in &o.checks {
        output::line(&format!(
            "  [{}] {:<20} {}",
            if c.passed { "pass" } else { "FAIL" },
            c.name,
            c.detail
        ))?;
    }
    Ok(())
}

pub(crate) fn fetch_certs(args: &FetchCertsArgs) -> anyhow::Result<ExitStatus> {
    let loaded = load_report(&args.report)?;
    let home = home()?;
    let client = kds_client(&home, false);
    let chain =
        gather_chain(&loaded.report, Vec::new(), Some(&client)).context("fetching the VCEK")?;
    let vek = chain.vek();
    let product = vek.product().context("fetched VCEK names no product")?;
    let kind = vek.vek_kind().unwrap_or(VekKind::Vcek);
    let chain_pem = client
        .cert_chain(product, kind)
        .context("fetching the ASK/ARK chain")?;
    let crl = match client.crl(product, kind) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("warning: CRL not fetched: {e:#}");
            None
        }
    };
    eprintln!(
        "cached {product} VCEK, certificate chain{} under {}",
        if crl.is_some() { " and CRL" } else { "" },
        home.kds_cache().display()
    );
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))
        };
        write("vcek.der", vek.der())?;
        write("cert_chain.pem", &chain_pem)?;
        if let Some(crl) = &crl {
            write("crl.der", crl)?;
        }
        output::line(&dir.display().to_string())?;
    }
    Ok(ExitStatus::Success)
}
