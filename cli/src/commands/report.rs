//! `a3s-box attest report`: a report from this guest's SEV-SNP hardware or from the simulator.

use std::path::Path;

use a3s_attestation::hw::{Attester, HardwareAttester};
use a3s_attestation::report::trustee::{CertType, Evidence};
use a3s_attestation::Product;
use a3s_runtime::A3sHome;
use a3s_simulator::{GuestContext, ReportRequest, Simulator};
use anyhow::Context;

use crate::args::{ProductArg, ReportArgs};
use crate::{usage_error, ExitStatus};

/// Decodes hex of at most `N` bytes into a zero-padded array.
pub(crate) fn hex_padded<const N: usize>(flag: &str, text: &str) -> anyhow::Result<[u8; N]> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let bytes = hex::decode(t).with_context(|| format!("{flag} is not hex"))?;
    if bytes.len() > N {
        anyhow::bail!("{flag} has {} bytes, at most {N} allowed", bytes.len());
    }
    let mut out = [0u8; N];
    out[..bytes.len()].copy_from_slice(&bytes);
    Ok(out)
}

fn pem(label: &str, der: &[u8]) -> String {
    use std::fmt::Write;
    let b64 = crate::commands::measure_base64(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        let _ = writeln!(s, "{}", String::from_utf8_lossy(line));
    }
    let _ = writeln!(s, "-----END {label}-----");
    s
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn run(args: &ReportArgs) -> anyhow::Result<ExitStatus> {
    let report_data: [u8; 64] =
        hex_padded("--report-data", &args.report_data).map_err(usage_error)?;
    if args.vmpl > 3 {
        return Err(usage_error(anyhow::anyhow!(
            "--vmpl {} is out of range (0-3)",
            args.vmpl
        )));
    }
    let evidence = if args.simulate {
        simulated(args, report_data)?
    } else {
        if args.measurement.is_some()
            || args.host_data.is_some()
            || args.guest_policy.is_some()
            || args.product.is_some()
        {
            return Err(usage_error(anyhow::anyhow!(
                "--measurement, --host-data, --guest-policy and --product describe a simulated guest; \
                 the hardware fixes them at launch (add --simulate to use the simulator)"
            )));
        }
        let attester = HardwareAttester::open().map_err(|e| {
            usage_error(anyhow::Error::new(e).context("use --simulate on hosts without SEV-SNP"))
        })?;
        attester.report(&report_data, args.vmpl)?
    };
    write(&args.out, evidence.report.as_bytes())?;
    if let Some(path) = &args.cert_chain_out {
        let mut text = String::new();
        for (kind, der) in &evidence.cert_chain {
            if matches!(
                kind,
                CertType::Vcek | CertType::Vlek | CertType::Ask | CertType::Ark
            ) {
                text.push_str(&pem("CERTIFICATE", der));
            }
        }
        if text.is_empty() {
            anyhow::bail!("the host supplied no certificates; fetch them with `a3s-box attest fetch-certs --report {}`", args.out.display());
        }
        write(path, text.as_bytes())?;
    }
    eprintln!(
        "wrote {} report ({} bytes) to {}",
        if args.simulate {
            "SIMULATED"
        } else {
            "hardware"
        },
        evidence.report.as_bytes().len(),
        args.out.display()
    );
    Ok(ExitStatus::Success)
}

fn simulated(args: &ReportArgs, report_data: [u8; 64]) -> anyhow::Result<Evidence> {
    let measurement: [u8; 48] = match &args.measurement {
        Some(m) => hex_padded("--measurement", m).map_err(usage_error)?,
        None => [0u8; 48],
    };
    let policy_text = args.guest_policy.as_deref().unwrap_or("0x30000");
    let policy = u64::from_str_radix(policy_text.trim().trim_start_matches("0x"), 16)
        .with_context(|| format!("--guest-policy {policy_text:?} is not hex"))
        .map_err(usage_error)?;
    let mut guest = GuestContext::launch(measurement)
        .with_policy(policy)
        .map_err(|e| usage_error(e.into()))?;
    if let Some(h) = &args.host_data {
        guest.host_data = hex_padded("--host-data", h).map_err(usage_error)?;
    }
    let home = A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
    let product: Product = args.product.unwrap_or(ProductArg::Milan).into();
    let sim = Simulator::open_or_create(home.root(), product).context("opening the simulator")?;
    let mut request = ReportRequest::new(guest, report_data);
    request.vmpl = args.vmpl;
    let report = sim.report(&request)?;
    let chip = sim.default_chip();
    let cert_chain = vec![
        (CertType::Vcek, chip.vcek_der().to_vec()),
        (CertType::Ask, sim.ask_der(product)?.to_vec()),
        (CertType::Ark, sim.ark_der(product)?.to_vec()),
    ];
    Ok(Evidence { report, cert_chain })
}
