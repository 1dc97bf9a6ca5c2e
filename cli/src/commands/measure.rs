//! `a3s-box measure`: the SEV-SNP launch digest, flag-compatible with `sev-snp-measure --mode snp`.

use a3s_attestation::measure::{self, CpuSignature, SnpMeasurementFiles, VmmType};
use a3s_runtime::boxes::CreateRequest;
use a3s_runtime::engine::{Engine, PredictedMeasurement};
use a3s_runtime::tee::spec::TeeMode;
use a3s_runtime::tee::TeeSpec;
use anyhow::{bail, Context};
use clap::Args;

use crate::args::{Format, MeasureArgs};
use crate::commands::EngineResult as _;
use crate::output;
use crate::{usage_error, ExitStatus};

/// The `run` flags that reach a box's launch measurement (the measured kernel command line,
/// kernel, initrd and vCPUs). Memory, volumes, ports and the workload are not measured.
#[derive(Debug, Args)]
pub(crate) struct LaunchFlags {
    /// As `run --tee-simulate`: a launch measured for the simulated secure processor.
    #[arg(long, conflicts_with = "tee_enable")]
    pub(crate) tee_simulate: bool,
    /// As `run --tee-enable`: an SEV-SNP launch (OVMF, q35) on this host.
    #[arg(long)]
    pub(crate) tee_enable: bool,
    /// As `run --cpus`.
    #[arg(long, default_value_t = 1)]
    pub(crate) cpus: u32,
    /// As `run --kernel-arg` (repeatable, in the same order).
    #[arg(long = "kernel-arg", value_name = "ARG")]
    pub(crate) kernel_arg: Vec<String>,
    /// As `run --network`: tsi, none or a bridge network (whose addresses are not measured).
    #[arg(long, value_name = "MODE")]
    pub(crate) network: Option<String>,
}

impl LaunchFlags {
    /// What `a3s-box run` with these flags would measure for `image`, computed by the
    /// runtime's own launch code (see `Engine::predict_measurement`).
    pub(crate) fn predict(&self, image: &str) -> anyhow::Result<PredictedMeasurement> {
        let mode = match (self.tee_enable, self.tee_simulate) {
            (true, _) => TeeMode::Snp,
            (false, true) => TeeMode::Simulated,
            (false, false) => {
                return Err(usage_error(anyhow::anyhow!(
                    "a launch measurement needs --tee-simulate (or --tee-enable on an SEV-SNP host), as `run` would be given"
                )))
            }
        };
        let net = crate::commands::network::NetArgs {
            network: self.network.clone().into_iter().collect(),
            publish: Vec::new(),
            publish_all: false,
            ip: None,
            network_alias: Vec::new(),
            dns: Vec::new(),
        }
        .box_net()?;
        let request = CreateRequest {
            image: image.to_owned(),
            vcpus: self.cpus,
            mem_mib: u64::from(a3s_runtime::boxes::DEFAULT_MEM_MIB),
            memory_limit_bytes: None,
            pod_memory_bytes: None,
            kernel_args: self.kernel_arg.clone(),
            net,
            tee: Some(TeeSpec {
                mode,
                kbs_url: None,
                secrets: Vec::new(),
                expected_measurement: None,
                policy: None,
                allow_exec: false,
            }),
            ..CreateRequest::default()
        };
        let home = a3s_runtime::A3sHome::from_env().map_err(|e| usage_error(e.into()))?;
        Engine::open(&home).predict_measurement(&request).engine()
    }
}

/// Parses an integer like Python's `int(s, 0)`, as sev-snp-measure does: decimal or 0x-prefixed.
fn parse_int(flag: &str, s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let parsed = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => t.parse(),
    };
    parsed.with_context(|| format!("{flag} {s:?} is not a number (decimal or 0x-prefixed hex)"))
}

fn vcpu_signature(args: &MeasureArgs) -> anyhow::Result<Option<CpuSignature>> {
    if let Some(family) = args.vcpu_family {
        let (Some(model), Some(stepping)) = (args.vcpu_model, args.vcpu_stepping) else {
            bail!("--vcpu-family requires --vcpu-model and --vcpu-stepping");
        };
        return Ok(Some(CpuSignature::from_fms(family, model, stepping)));
    }
    if let Some(sig) = &args.vcpu_sig {
        let raw = u32::try_from(parse_int("--vcpu-sig", sig)?)
            .context("--vcpu-sig must fit in 32 bits")?;
        return Ok(Some(CpuSignature::from_raw(raw)));
    }
    Ok(args
        .vcpu_type
        .as_deref()
        .map(CpuSignature::from_type_name)
        .transpose()?)
}

fn inputs(
    args: &MeasureArgs,
    vcpus: u32,
    ovmf: &std::path::Path,
) -> anyhow::Result<SnpMeasurementFiles> {
    let mut files = SnpMeasurementFiles::new(ovmf, vcpus);
    files.vmm_type = args.vmm_type.parse::<VmmType>()?;
    files.vcpu_sig = vcpu_signature(args)?;
    files.kernel.clone_from(&args.kernel);
    files.initrd.clone_from(&args.initrd);
    files.append.clone_from(&args.append);
    files.guest_features = parse_int("--guest-features", &args.guest_features)?;
    files.ovmf_hash = args
        .snp_ovmf_hash
        .as_deref()
        .map(measure::parse_ovmf_hash)
        .transpose()
        .context("--snp-ovmf-hash")?;
    Ok(files)
}

pub(crate) fn run(args: &MeasureArgs) -> anyhow::Result<ExitStatus> {
    if let Some(image) = &args.image {
        let predicted = args.launch.predict(image)?;
        match args.format {
            Format::Json => output::json(&predicted)?,
            Format::Text => output::line(&predicted.measurement)?,
        }
        return Ok(ExitStatus::Success);
    }
    let Some(vcpus) = args.vcpus else {
        bail!("pass --vcpus N (or --image IMAGE to predict a box's measurement)");
    };
    let digest = match (&args.ovmf, &args.microvm_firmware) {
        (Some(ovmf), _) => {
            let files = inputs(args, vcpus, ovmf).map_err(usage_error)?;
            measure::launch_digest_from_files(&files).map_err(|e| usage_error(e.into()))?
        }
        (None, Some(firmware)) => microvm_digest(args, vcpus, firmware)?,
        (None, None) => bail!("pass --ovmf FILE or --microvm-firmware FILE"),
    };
    let text = match args.output_format.as_str() {
        "base64" => base64(&digest),
        _ => hex::encode(digest),
    };
    output::line(&text)?;
    Ok(ExitStatus::Success)
}

/// The digest of a simulated microvm launch: the stand-in image around `firmware`, measured
/// with the same recipe and inputs as an OVMF launch.
fn microvm_digest(
    args: &MeasureArgs,
    vcpus: u32,
    firmware: &std::path::Path,
) -> anyhow::Result<[u8; 48]> {
    let read = |what: &'static str, p: &std::path::Path| {
        measure::read_input(p, what).map_err(|e| usage_error(e.into()))
    };
    let image = measure::standin_firmware(&read("microvm firmware", firmware)?);
    if let Some(out) = &args.write_standin {
        std::fs::write(out, &image).with_context(|| format!("writing {}", out.display()))?;
    }
    let kernel = args
        .kernel
        .as_deref()
        .map(|p| read("kernel", p))
        .transpose()?;
    let initrd = args
        .initrd
        .as_deref()
        .map(|p| read("initrd", p))
        .transpose()?;
    let mut m = measure::SnpMeasurementArgs::new(&image, vcpus);
    m.vmm_type = args
        .vmm_type
        .parse::<VmmType>()
        .map_err(|e| usage_error(e.into()))?;
    m.vcpu_sig = vcpu_signature(args).map_err(usage_error)?;
    m.kernel = kernel.as_deref();
    m.initrd = initrd.as_deref();
    m.append = args.append.as_deref();
    m.guest_features = parse_int("--guest-features", &args.guest_features).map_err(usage_error)?;
    measure::launch_digest(&m).map_err(|e| usage_error(e.into()))
}

/// Standard base64 with padding (what sev-snp-measure prints for `--output-format base64`).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
