//! The launch measurement of a box: SEV-SNP's launch digest over exactly the firmware, kernel,
//! initrd, command line and vCPUs the monitor boots.
//!
//! A simulated microvm launch measures the stand-in firmware around the machine's real BIOS
//! (docs/simulated-measurement.md), so `a3s-box measure --microvm-firmware ... --kernel ...
//! --initrd ... --append ...` and `sev-snp-measure` reproduce the value; any change of kernel,
//! initrd (guest agent, image rootfs), command line (image digest, `--kernel-arg`) or vCPU
//! count changes it.

use std::path::Path;
use std::time::Instant;

use a3s_attestation::measure::{self, CpuSignature, SevHashes, SnpMeasurementArgs};

use a3s_vmm::proto::TeeMode;
use a3s_vmm::VmConfig;

use super::digest_cache::DigestCache;
use super::TeeError;

/// The vCPU type a simulated launch is measured with.
pub const SIMULATED_VCPU_TYPE: &str = "EPYC-Milan";

/// What a launch measures.
#[derive(Clone, Copy, Debug)]
pub struct LaunchInputs<'a> {
    /// Firmware the VM starts from (qboot for microvm).
    pub firmware: &'a Path,
    /// The kernel passed to QEMU.
    pub kernel: &'a Path,
    /// The initrd passed to QEMU.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// vCPUs.
    pub vcpus: u32,
}

/// A measurement and how long it took.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// The launch digest.
    pub digest: [u8; 48],
    /// Milliseconds spent reading and hashing.
    pub elapsed_ms: u64,
}

/// What the VM of `config` measures in `mode`: the one place the runtime picks the firmware
/// and the recipe, used by the launch itself and by `a3s-box measure --image`.
///
/// # Errors
/// [`TeeError::NoSnp`] for an SNP mode without an SNP launch plan; those of
/// [`measure_snp`] and [`measure_simulated`].
pub fn measure_config(mode: TeeMode, config: &VmConfig) -> Result<Measured, TeeError> {
    let inputs = launch_inputs(mode, config)?;
    match mode {
        TeeMode::Snp => measure_snp(&inputs),
        _ => measure_simulated(&inputs),
    }
}

/// [`measure_config`] with the kernel and initrd digests taken from (or added to) `cache`
/// when they are unchanged since they were last hashed (see [`DigestCache`]); the same value.
///
/// # Errors
/// Those of [`measure_config`].
pub fn measure_config_cached(
    mode: TeeMode,
    config: &VmConfig,
    cache: &DigestCache,
) -> Result<Measured, TeeError> {
    let started = Instant::now();
    let inputs = launch_inputs(mode, config)?;
    let read = |what: &str, p: &Path| {
        fs_err::read(p).map_err(|e| TeeError::Measure(format!("reading the {what}: {e}")))
    };
    let (firmware, vcpu_type) = match mode {
        TeeMode::Snp => (
            read("OVMF firmware", inputs.firmware)?,
            a3s_vmm::snp::VCPU_TYPE,
        ),
        _ => (
            measure::standin_firmware(&read("firmware", inputs.firmware)?),
            SIMULATED_VCPU_TYPE,
        ),
    };
    let (kernel, k) = cache.sha256(inputs.kernel, "kernel", measure::MAX_KERNEL_BYTES)?;
    let (initrd, i) = cache.sha256(inputs.initrd, "initrd", measure::MAX_INITRD_BYTES)?;
    let mut args = SnpMeasurementArgs::new(&firmware, inputs.vcpus);
    args.vcpu_sig = Some(
        CpuSignature::from_type_name(vcpu_type).map_err(|e| TeeError::Measure(e.to_string()))?,
    );
    args.sev_hashes = Some(SevHashes::from_digests(
        kernel,
        initrd,
        Some(inputs.cmdline),
    ));
    let digest = measure::launch_digest(&args).map_err(|e| TeeError::Measure(e.to_string()))?;
    tracing::debug!(kernel = ?k, initrd = ?i, "measured artefacts");
    Ok(Measured {
        digest,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// The vCPU type a launch in `mode` is measured with.
pub fn vcpu_type(mode: TeeMode) -> &'static str {
    match mode {
        TeeMode::Snp => a3s_vmm::snp::VCPU_TYPE,
        _ => SIMULATED_VCPU_TYPE,
    }
}

/// The files and values [`measure_config`] measures.
///
/// # Errors
/// [`TeeError::NoSnp`] for an SNP mode without an SNP launch plan.
pub fn launch_inputs(mode: TeeMode, config: &VmConfig) -> Result<LaunchInputs<'_>, TeeError> {
    let firmware = match mode {
        TeeMode::Snp => {
            &config
                .snp
                .as_ref()
                .ok_or_else(|| TeeError::NoSnp("the box's plan has no SNP launch".into()))?
                .firmware
        }
        _ => config.machine.firmware(),
    };
    Ok(LaunchInputs {
        firmware,
        kernel: &config.kernel,
        initrd: &config.initrd,
        cmdline: &config.cmdline,
        vcpus: u32::from(config.vcpus),
    })
}

/// Measures an SEV-SNP launch of `inputs`, whose firmware is OVMF with the kernel-hashes
/// section (what the AMD secure processor will report; `sev-snp-measure --mode snp
/// --vcpu-type EPYC-v4` agrees).
///
/// # Errors
/// [`TeeError::Measure`] when a file cannot be read or OVMF lacks what the launch needs.
pub fn measure_snp(inputs: &LaunchInputs<'_>) -> Result<Measured, TeeError> {
    let started = Instant::now();
    let read = |what: &str, p: &Path| {
        fs_err::read(p).map_err(|e| TeeError::Measure(format!("reading the {what}: {e}")))
    };
    let ovmf = read("OVMF firmware", inputs.firmware)?;
    digest(
        &ovmf,
        a3s_vmm::snp::VCPU_TYPE,
        inputs,
        started,
        &read("kernel", inputs.kernel)?,
        &read("initrd", inputs.initrd)?,
    )
}

fn digest(
    firmware: &[u8],
    vcpu_type: &str,
    inputs: &LaunchInputs<'_>,
    started: Instant,
    kernel: &[u8],
    initrd: &[u8],
) -> Result<Measured, TeeError> {
    let mut args = SnpMeasurementArgs::new(firmware, inputs.vcpus);
    args.vcpu_sig = Some(
        CpuSignature::from_type_name(vcpu_type).map_err(|e| TeeError::Measure(e.to_string()))?,
    );
    args.kernel = Some(kernel);
    args.initrd = Some(initrd);
    args.append = Some(inputs.cmdline);
    let digest = measure::launch_digest(&args).map_err(|e| TeeError::Measure(e.to_string()))?;
    Ok(Measured {
        digest,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

/// Measures a simulated launch of `inputs`.
///
/// # Errors
/// [`TeeError::Measure`] when a file cannot be read or the inputs are inconsistent.
pub fn measure_simulated(inputs: &LaunchInputs<'_>) -> Result<Measured, TeeError> {
    let started = Instant::now();
    let read = |what: &str, p: &Path| {
        fs_err::read(p).map_err(|e| TeeError::Measure(format!("reading the {what}: {e}")))
    };
    let firmware = measure::standin_firmware(&read("firmware", inputs.firmware)?);
    let kernel = read("kernel", inputs.kernel)?;
    let initrd = read("initrd", inputs.initrd)?;
    digest(
        &firmware,
        SIMULATED_VCPU_TYPE,
        inputs,
        started,
        &kernel,
        &initrd,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn every_input_changes_the_measurement() {
        let dir = tempfile::tempdir().unwrap();
        let fw = write(dir.path(), "fw", &[0x90; 8192]);
        let k = write(dir.path(), "k", b"kernel bytes");
        let i = write(dir.path(), "i", b"initrd bytes");
        let i2 = write(dir.path(), "i2", b"initrd bytez");
        let base = LaunchInputs {
            firmware: &fw,
            kernel: &k,
            initrd: &i,
            cmdline: "console=ttyS0 a3s.image=sha256:00",
            vcpus: 1,
        };
        let m = |x: &LaunchInputs<'_>| measure_simulated(x).unwrap().digest;
        let d = m(&base);
        assert_eq!(d, m(&base), "deterministic");
        assert_ne!(
            d,
            m(&LaunchInputs {
                initrd: &i2,
                ..base
            })
        );
        assert_ne!(
            d,
            m(&LaunchInputs {
                cmdline: "console=ttyS0 a3s.image=sha256:00 x=1",
                ..base
            })
        );
        assert_ne!(d, m(&LaunchInputs { vcpus: 2, ..base }));
        assert_ne!(d, m(&LaunchInputs { kernel: &i, ..base }));
    }

    #[test]
    fn cached_digests_measure_the_same_as_reading_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let k = write(dir.path(), "k", &[0x4b; 3 << 20]);
        let i = write(dir.path(), "i", b"initrd bytes");
        let config = VmConfig {
            accel: a3s_vmm::accel::Accel::Tcg,
            machine: a3s_vmm::Machine::Microvm,
            mem_mib: 256,
            vcpus: 2,
            kernel: k.clone(),
            initrd: i.clone(),
            cmdline: "console=ttyS0 a3s.image=sha256:00".into(),
            channel_socket: dir.path().join("c"),
            qmp_socket: None,
            console_log: dir.path().join("l"),
            qemu_log: dir.path().join("q"),
            boot_cpu_budget_secs: 1,
            boot_timeout_secs: 1,
            boot_attempts: 1,
            net: None,
            disks: vec![],
            shares: vec![],
            snp: None,
            balloon: true,
            tcg_tb_mib: None,
            huge_pages: false,
            mergeable: false,
            incoming: false,
        };
        // Both measure the machine's real firmware (qboot) through the stand-in.
        let from_files = measure_config(TeeMode::Simulated, &config).unwrap().digest;
        let cache = DigestCache::open(dir.path()).unwrap();
        for _ in 0..2 {
            let cached = measure_config_cached(TeeMode::Simulated, &config, &cache).unwrap();
            assert_eq!(cached.digest, from_files);
        }
    }

    #[test]
    fn an_snp_launch_needs_real_ovmf() {
        let dir = tempfile::tempdir().unwrap();
        let not_ovmf = write(dir.path(), "fw", &[0x90; 8192]);
        let k = write(dir.path(), "k", b"kernel");
        let e = measure_snp(&LaunchInputs {
            firmware: &not_ovmf,
            kernel: &k,
            initrd: &k,
            cmdline: "",
            vcpus: 1,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("measuring the launch"), "{e}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fw = write(dir.path(), "fw", &[0; 4096]);
        let missing = dir.path().join("nope");
        let e = measure_simulated(&LaunchInputs {
            firmware: &fw,
            kernel: &missing,
            initrd: &missing,
            cmdline: "",
            vcpus: 1,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("reading the kernel"), "{e}");
    }
}
