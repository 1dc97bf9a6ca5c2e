//! A tiny CLI over `a3s_attestation::measure` with the flags of `sev-snp-measure`
//! (modes `snp` and `snp:ovmf-hash`), used by `bench/measure.sh` and the cross-check tests.
//!
//! ```text
//! cargo run --release -p a3s-attestation --example measure -- \
//!     --mode snp --vcpus 4 --vcpu-type EPYC-v4 --ovmf OVMF.fd \
//!     --kernel vmlinuz --initrd initrd.img --append "console=ttyS0"
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use a3s_attestation::measure::{
    self, CpuSignature, MeasureError, SnpMeasurementFiles, VmmType, DEFAULT_GUEST_FEATURES,
};
use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

/// Calculate the AMD SEV-SNP guest launch measurement (sev-snp-measure compatible).
#[derive(Debug, Parser)]
#[command(name = "measure")]
struct Args {
    /// Guest mode: `snp` (launch digest) or `snp:ovmf-hash` (OVMF hash only).
    #[arg(long, default_value = "snp")]
    mode: String,
    /// Number of guest vCPUs.
    #[arg(long, value_name = "N")]
    vcpus: Option<u32>,
    /// Type of guest vCPU (QEMU model name, e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa).
    #[arg(long, value_name = "CPUTYPE")]
    vcpu_type: Option<String>,
    /// Guest vCPU signature value (CPUID 1 EAX; decimal, 0x.., 0o.. or 0b..).
    #[arg(long, value_name = "VALUE", value_parser = parse_auto_base_u32)]
    vcpu_sig: Option<u32>,
    /// Guest vCPU family.
    #[arg(long, value_name = "FAMILY")]
    vcpu_family: Option<u32>,
    /// Guest vCPU model.
    #[arg(long, value_name = "MODEL")]
    vcpu_model: Option<u32>,
    /// Guest vCPU stepping.
    #[arg(long, value_name = "STEPPING")]
    vcpu_stepping: Option<u32>,
    /// Type of guest VMM (QEMU, ec2, gce).
    #[arg(long, value_name = "VMMTYPE", default_value = "QEMU")]
    vmm_type: String,
    /// OVMF file to calculate the hash from.
    #[arg(long, value_name = "PATH")]
    ovmf: PathBuf,
    /// Kernel file to calculate the hash from.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// Initrd file to calculate the hash from (use with --kernel).
    #[arg(long, value_name = "PATH")]
    initrd: Option<PathBuf>,
    /// Kernel command line to calculate the hash from (use with --kernel).
    #[arg(long, value_name = "CMDLINE", allow_hyphen_values = true)]
    append: Option<String>,
    /// Guest features (VMSA SEV_FEATURES), default 0x1.
    #[arg(long, value_name = "VALUE", value_parser = parse_auto_base_u64)]
    guest_features: Option<u64>,
    /// Measurement output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Hex)]
    output_format: OutputFormat,
    /// Precalculated hash of the OVMF binary (hex string).
    #[arg(long, value_name = "HASH")]
    snp_ovmf_hash: Option<String>,
}

/// Output encodings of the measurement.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            for hint in err
                .chain()
                .filter_map(|e| e.downcast_ref::<MeasureError>())
                .filter_map(MeasureError::hint)
            {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<String> {
    let digest = match args.mode.as_str() {
        "snp:ovmf-hash" => measure::ovmf_hash_from_file(&args.ovmf)?,
        "snp" => {
            let Some(vcpus) = args.vcpus else {
                bail!("missing --vcpus N in guest mode 'snp'");
            };
            let vmm_type: VmmType = args.vmm_type.parse()?;
            let mut files = SnpMeasurementFiles::new(&args.ovmf, vcpus);
            files.vmm_type = vmm_type;
            files.vcpu_sig = vcpu_signature(&args)?;
            files.kernel = args.kernel;
            files.initrd = args.initrd;
            files.append = args.append;
            files.guest_features = args.guest_features.unwrap_or(DEFAULT_GUEST_FEATURES);
            files.ovmf_hash = args
                .snp_ovmf_hash
                .as_deref()
                .map(measure::parse_ovmf_hash)
                .transpose()
                .context("--snp-ovmf-hash")?;
            measure::launch_digest_from_files(&files)?
        }
        other => bail!("unsupported mode {other:?}: this tool supports 'snp' and 'snp:ovmf-hash'"),
    };
    Ok(match args.output_format {
        OutputFormat::Hex => hex::encode(digest),
        OutputFormat::Base64 => base64(&digest),
    })
}

/// The vCPU signature from --vcpu-family/-model/-stepping, --vcpu-sig or --vcpu-type, in that
/// order of precedence (as sev-snp-measure).
fn vcpu_signature(args: &Args) -> anyhow::Result<Option<CpuSignature>> {
    if let Some(family) = args.vcpu_family {
        let (Some(model), Some(stepping)) = (args.vcpu_model, args.vcpu_stepping) else {
            bail!("--vcpu-family requires --vcpu-model and --vcpu-stepping");
        };
        return Ok(Some(CpuSignature::from_fms(family, model, stepping)));
    }
    if let Some(sig) = args.vcpu_sig {
        return Ok(Some(CpuSignature::from_raw(sig)));
    }
    args.vcpu_type
        .as_deref()
        .map(CpuSignature::from_type_name)
        .transpose()
        .map_err(Into::into)
}

/// Parses an integer like Python's `int(s, 0)`: decimal, or 0x/0o/0b prefixed.
fn parse_auto_base_u64(s: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let lower = t.to_ascii_lowercase();
    let parsed = if let Some(h) = lower.strip_prefix("0x") {
        u64::from_str_radix(h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        u64::from_str_radix(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        u64::from_str_radix(b, 2)
    } else {
        lower.parse()
    };
    parsed.map_err(|e| format!("invalid integer {s:?}: {e}"))
}

fn parse_auto_base_u32(s: &str) -> Result<u32, String> {
    let v = parse_auto_base_u64(s)?;
    u32::try_from(v).map_err(|_| format!("{s:?} does not fit in 32 bits"))
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
