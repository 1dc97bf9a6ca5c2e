//! The `--tee-enable` launch path: QEMU with `sev-snp-guest` and an OVMF build carrying the
//! kernel-hashes section, so the SNP launch digest covers kernel, initrd and command line.
//!
//! The argument list is pure and unit-tested; it cannot run on hosts without SEV-SNP, and
//! [`check_host`] says exactly what is missing there.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where the host advertises SEV-SNP support (kvm_amd module parameter).
pub const KVM_AMD_SNP_PARAM: &str = "/sys/module/kvm_amd/parameters/sev_snp";
/// The SEV device QEMU opens for SNP launches.
pub const SEV_DEVICE: &str = "/dev/sev";

/// What a real SNP launch needs and this host lacks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnpHostError {
    /// kvm_amd is not loaded or does not report `sev_snp=Y`.
    #[error("no SEV-SNP host support: {param} is missing or not `Y` (kvm_amd with SNP enabled)")]
    NoKvmSnp {
        /// The module parameter that was read.
        param: PathBuf,
    },
    /// The SEV firmware device is absent.
    #[error("no SEV-SNP host support: {device} does not exist")]
    NoSevDevice {
        /// The device path.
        device: PathBuf,
    },
    /// No OVMF build with the kernel-hashes section.
    #[error("no SEV-SNP firmware: {} does not exist (an OVMF build with SEV metadata and the kernel-hashes section, e.g. OVMF.amdsev.fd)", path.display())]
    NoFirmware {
        /// The path looked at.
        path: PathBuf,
    },
}

impl SnpHostError {
    /// What the user can do instead.
    pub fn hint(&self) -> Option<String> {
        if let Self::NoFirmware { .. } = self {
            return Some(format!("set {FIRMWARE_ENV}=/path/to/OVMF.amdsev.fd"));
        }
        Some(
            "run on an AMD EPYC host with SEV-SNP enabled in BIOS and kvm_amd sev_snp=1, \
             or use --tee-simulate on this machine"
                .to_owned(),
        )
    }
}

/// Checks the host for SEV-SNP launch support, reading paths under `root` (use `/`).
///
/// # Errors
/// [`SnpHostError`] naming the first missing piece.
pub fn check_host(root: &Path) -> Result<(), SnpHostError> {
    let param = root.join(KVM_AMD_SNP_PARAM.trim_start_matches('/'));
    let enabled = std::fs::read_to_string(&param)
        .map(|s| matches!(s.trim(), "Y" | "y" | "1"))
        .unwrap_or(false);
    if !enabled {
        return Err(SnpHostError::NoKvmSnp { param });
    }
    let device = root.join(SEV_DEVICE.trim_start_matches('/'));
    if !device.exists() {
        return Err(SnpHostError::NoSevDevice { device });
    }
    Ok(())
}

/// Names the OVMF image (with SEV metadata and the kernel-hashes section) SNP boxes boot.
pub const FIRMWARE_ENV: &str = "A3S_BOX_SNP_FIRMWARE";
/// Where distributions ship that build (Debian's `ovmf` package from trixie on).
pub const DEFAULT_FIRMWARE: &str = "/usr/share/ovmf/OVMF.amdsev.fd";
/// The vCPU model of SNP guests (part of the launch measurement through the VMSA).
pub const VCPU_TYPE: &str = "EPYC-v4";
/// Default SNP guest policy: SMT allowed, reserved bit 17 set, debugging not allowed.
pub const DEFAULT_POLICY: u64 = 0x30000;

/// How an SNP box is launched: its firmware and guest policy.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnpConfig {
    /// OVMF with the kernel-hashes section.
    pub firmware: PathBuf,
    /// SNP guest policy.
    pub policy: u64,
}

impl SnpConfig {
    /// The firmware from `A3S_BOX_SNP_FIRMWARE`, else [`DEFAULT_FIRMWARE`]; it must exist.
    ///
    /// # Errors
    /// [`SnpHostError::NoFirmware`].
    pub fn from_env() -> Result<Self, SnpHostError> {
        let firmware = std::env::var_os(FIRMWARE_ENV)
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_FIRMWARE), PathBuf::from);
        if !firmware.is_file() {
            return Err(SnpHostError::NoFirmware { path: firmware });
        }
        Ok(Self {
            firmware,
            policy: DEFAULT_POLICY,
        })
    }
}

/// The machine part of an SNP launch's QEMU arguments (machine, confidential-guest object,
/// private memory, firmware, vCPU model, KVM); devices, kernel and initrd come after it.
pub fn machine_args(c: &SnpConfig, vcpus: u8, mem_mib: u32) -> Vec<OsString> {
    [
        "-machine".to_owned(),
        "q35,confidential-guest-support=sev0,memory-backend=ram1".to_owned(),
        "-cpu".to_owned(),
        VCPU_TYPE.to_owned(),
        "-enable-kvm".to_owned(),
        "-smp".to_owned(),
        vcpus.to_string(),
        "-m".to_owned(),
        format!("{mem_mib}M"),
        "-object".to_owned(),
        format!("memory-backend-memfd,id=ram1,size={mem_mib}M,share=true,prealloc=false"),
        "-object".to_owned(),
        format!(
            "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={:#x},kernel-hashes=on",
            c.policy
        ),
        "-bios".to_owned(),
        c.firmware.display().to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

/// Inputs of an SNP launch.
#[derive(Debug, Clone)]
pub struct SnpLaunch {
    /// OVMF with the kernel-hashes section (e.g. `OVMF.amdsev.fd`).
    pub firmware: PathBuf,
    /// Kernel image (bzImage).
    pub kernel: PathBuf,
    /// Initrd (guest-init, agent, modules, rootfs).
    pub initrd: PathBuf,
    /// Kernel command line (carries rootfs and manifest digests).
    pub cmdline: String,
    /// vCPU count (part of the measurement: one VMSA per vCPU).
    pub vcpus: u8,
    /// Guest memory.
    pub mem_mib: u32,
    /// SNP guest policy (default 0x30000: SMT allowed, reserved bit 17).
    pub policy: u64,
}

/// QEMU arguments for an SNP guest with measured direct boot (`kernel-hashes=on`).
pub fn snp_qemu_args(l: &SnpLaunch) -> Vec<OsString> {
    let config = SnpConfig {
        firmware: l.firmware.clone(),
        policy: l.policy,
    };
    let mut a = machine_args(&config, l.vcpus, l.mem_mib);
    for s in [
        "-kernel".to_owned(),
        l.kernel.display().to_string(),
        "-initrd".to_owned(),
        l.initrd.display().to_string(),
        "-append".to_owned(),
        l.cmdline.clone(),
        "-nodefaults".to_owned(),
        "-nographic".to_owned(),
    ] {
        a.push(OsString::from(s));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> SnpLaunch {
        SnpLaunch {
            firmware: "/usr/share/ovmf/OVMF.amdsev.fd".into(),
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd".into(),
            cmdline: "console=ttyS0 a3s.rootfs=sha256:00".into(),
            vcpus: 2,
            mem_mib: 512,
            policy: 0x30000,
        }
    }

    #[test]
    fn snp_args_enable_kernel_hashes_with_ovmf_and_direct_boot() {
        let args: Vec<String> = snp_qemu_args(&launch())
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let expected = [
            "-machine",
            "q35,confidential-guest-support=sev0,memory-backend=ram1",
            "-cpu",
            "EPYC-v4",
            "-enable-kvm",
            "-smp",
            "2",
            "-m",
            "512M",
            "-object",
            "memory-backend-memfd,id=ram1,size=512M,share=true,prealloc=false",
            "-object",
            "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy=0x30000,kernel-hashes=on",
            "-bios",
            "/usr/share/ovmf/OVMF.amdsev.fd",
            "-kernel",
            "/k/vmlinuz",
            "-initrd",
            "/k/initrd",
            "-append",
            "console=ttyS0 a3s.rootfs=sha256:00",
            "-nodefaults",
            "-nographic",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn firmware_comes_from_the_environment_and_must_exist() {
        // One test touches the variable, so no other test races on it.
        std::env::set_var(FIRMWARE_ENV, "/definitely/not/OVMF.amdsev.fd");
        let err = SnpConfig::from_env().unwrap_err();
        assert!(matches!(err, SnpHostError::NoFirmware { .. }), "{err}");
        assert!(err.hint().unwrap().contains(FIRMWARE_ENV));
        let f = tempfile::NamedTempFile::new().unwrap();
        std::env::set_var(FIRMWARE_ENV, f.path());
        let c = SnpConfig::from_env().unwrap();
        std::env::remove_var(FIRMWARE_ENV);
        assert_eq!(c.firmware, f.path());
        assert_eq!(c.policy, DEFAULT_POLICY);
    }

    #[test]
    fn host_without_kvm_snp_is_refused_naming_the_parameter() {
        let root = tempfile::tempdir().unwrap();
        let err = check_host(root.path()).unwrap_err();
        assert!(matches!(err, SnpHostError::NoKvmSnp { .. }));
        assert!(err.to_string().contains("sev_snp"), "{err}");
    }

    #[test]
    fn host_with_snp_param_but_no_sev_device_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let p = root.path().join(KVM_AMD_SNP_PARAM.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "Y\n").unwrap();
        let err = check_host(root.path()).unwrap_err();
        assert!(matches!(err, SnpHostError::NoSevDevice { .. }), "{err}");
    }

    #[test]
    fn this_machine_has_no_snp_host_support() {
        // The development and CI machines have no SEV-SNP; the check must say so, not pass.
        if Path::new(KVM_AMD_SNP_PARAM).exists() && Path::new(SEV_DEVICE).exists() {
            return;
        }
        assert!(check_host(Path::new("/")).is_err());
    }
}
