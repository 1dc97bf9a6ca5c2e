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
}

impl SnpHostError {
    /// What the user can do instead.
    pub fn hint(&self) -> Option<String> {
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
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: String| a.push(OsString::from(s));
    push("-machine".into());
    push("q35,confidential-guest-support=sev0,memory-backend=ram1".into());
    push("-cpu".into());
    push("EPYC-v4".into());
    push("-enable-kvm".into());
    push("-smp".into());
    push(l.vcpus.to_string());
    push("-m".into());
    push(format!("{}M", l.mem_mib));
    push("-object".into());
    push(format!(
        "memory-backend-memfd,id=ram1,size={}M,share=true,prealloc=false",
        l.mem_mib
    ));
    push("-object".into());
    push(format!(
        "sev-snp-guest,id=sev0,cbitpos=51,reduced-phys-bits=1,policy={:#x},kernel-hashes=on",
        l.policy
    ));
    push("-bios".into());
    push(l.firmware.display().to_string());
    push("-kernel".into());
    push(l.kernel.display().to_string());
    push("-initrd".into());
    push(l.initrd.display().to_string());
    push("-append".into());
    push(l.cmdline.clone());
    push("-nodefaults".into());
    push("-nographic".into());
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
