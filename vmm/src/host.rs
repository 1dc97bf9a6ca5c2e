//! What the host offers for running MicroVMs: QEMU, KVM and SEV-SNP host support.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::accel::{self, AccelChoice, AccelError, KvmKind};

/// The QEMU system emulator A3S Box drives.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// Where [`QEMU_BINARY`] is on `PATH` (what spawning it runs), if anywhere.
pub fn qemu_path() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(QEMU_BINARY))
            .find(|p| p.is_file())
    })
}

/// CAP_NET_ADMIN's bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process has CAP_NET_ADMIN in its effective set (root has it unless it was
/// dropped, as in a container): bridges, TAP devices, `SO_SNDBUFFORCE`.
pub fn has_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(cap_eff)
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// The `CapEff:` mask of a `/proc/<pid>/status` text.
fn cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Host facts relevant to launching MicroVMs.
#[derive(Clone, Debug, Serialize)]
pub struct HostVirt {
    /// KVM kind.
    pub kvm: KvmKind,
    /// The accelerator that would be used, or why none can be chosen.
    pub accel: Result<AccelChoice, String>,
    /// `qemu-system-x86_64 --version` first line, if QEMU is installed.
    pub qemu_version: Option<String>,
    /// `/dev/sev` exists (the host's SEV firmware device).
    pub sev_host_device: bool,
    /// `kvm_amd` reports SEV-SNP enabled (`/sys/module/kvm_amd/parameters/sev_snp` = Y).
    pub sev_snp_host_enabled: bool,
}

/// Probes the running host.
pub fn probe() -> HostVirt {
    probe_at(
        Path::new("/"),
        std::env::var(accel::ACCEL_ENV).ok().as_deref(),
    )
}

/// Probes a host rooted at `root` with an optional accelerator override.
pub fn probe_at(root: &Path, accel_override: Option<&str>) -> HostVirt {
    let kvm = accel::probe_kvm(root);
    let snp_param = root.join("sys/module/kvm_amd/parameters/sev_snp");
    HostVirt {
        kvm,
        accel: accel::choose(kvm, accel_override).map_err(|e: AccelError| e.to_string()),
        qemu_version: qemu_version(QEMU_BINARY),
        sev_host_device: root.join("dev/sev").exists(),
        sev_snp_host_enabled: std::fs::read_to_string(snp_param)
            .map(|v| matches!(v.trim(), "Y" | "1"))
            .unwrap_or(false),
    }
}

/// The version line of a QEMU binary, or `None` when it cannot be run.
pub fn qemu_version(binary: &str) -> Option<String> {
    let out = Command::new(binary).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    parse_qemu_version(&String::from_utf8_lossy(&out.stdout))
}

fn parse_qemu_version(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let rest = line.strip_prefix("QEMU emulator version ")?;
    Some(rest.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_net_admin_is_read_from_the_effective_set() {
        let with = "Name:\tx\nCapEff:\t000001fffeffffff\n";
        let without = "CapEff:\t000001fffeffefff\n";
        assert!(cap_eff(with).unwrap() & (1 << CAP_NET_ADMIN) != 0);
        assert!(cap_eff(without).unwrap() & (1 << CAP_NET_ADMIN) == 0);
        assert_eq!(cap_eff("nothing"), None);
    }

    #[test]
    fn parses_debian_qemu_version_line() {
        let text = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025 Fabrice Bellard\n";
        assert_eq!(
            parse_qemu_version(text).as_deref(),
            Some("10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)")
        );
        assert_eq!(parse_qemu_version("garbage"), None);
    }

    #[test]
    fn missing_qemu_binary_is_none() {
        assert_eq!(qemu_version("/nonexistent/qemu-system-x86_64"), None);
    }
}
