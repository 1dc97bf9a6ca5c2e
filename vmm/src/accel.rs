//! Choosing the accelerator: KVM when the host has real hardware virtualisation, TCG otherwise.
//!
//! `/dev/kvm` alone is not enough: under PVM (`/sys/module/kvm_pvm`) opening it succeeds but
//! stock guest kernels crash early ("KVM internal error ... emulation failure"), and the failure
//! only shows once the guest runs. So KVM is used only when `kvm_intel` or `kvm_amd` is loaded
//! and `kvm_pvm` is not.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Environment variable that forces an accelerator (`kvm` or `tcg`).
pub const ACCEL_ENV: &str = "A3S_BOX_ACCEL";

/// What kind of KVM the host offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KvmKind {
    /// No `/dev/kvm`.
    Absent,
    /// `/dev/kvm` is backed by PVM, on which stock guest kernels crash.
    Pvm,
    /// Hardware virtualisation through `kvm_intel`.
    Intel,
    /// Hardware virtualisation through `kvm_amd`.
    Amd,
    /// `/dev/kvm` exists but no known backend module is loaded.
    Unknown,
}

/// The accelerator QEMU runs guests with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware-assisted, `-accel kvm -cpu host`.
    Kvm,
    /// Software emulation, `-accel tcg -cpu max`.
    Tcg,
}

impl Accel {
    /// The QEMU accelerator name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        }
    }
}

/// The chosen accelerator and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// One line saying why it was chosen.
    pub reason: String,
}

/// The accelerator override could not be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccelError {
    /// `A3S_BOX_ACCEL` holds an unknown value.
    #[error("{ACCEL_ENV}={0:?} is not an accelerator: use kvm or tcg")]
    UnknownOverride(String),
    /// KVM was forced but the host has no `/dev/kvm`.
    #[error("{ACCEL_ENV}=kvm but this host has no /dev/kvm")]
    KvmUnavailable,
}

/// Reads the KVM kind from a root directory (`/` on a real host; a test tree otherwise).
pub fn probe_kvm(root: &Path) -> KvmKind {
    if !root.join("dev/kvm").exists() {
        return KvmKind::Absent;
    }
    let module = |name: &str| root.join("sys/module").join(name).exists();
    if module("kvm_pvm") {
        KvmKind::Pvm
    } else if module("kvm_amd") {
        KvmKind::Amd
    } else if module("kvm_intel") {
        KvmKind::Intel
    } else {
        KvmKind::Unknown
    }
}

/// Chooses the accelerator for `kvm`, honouring an `A3S_BOX_ACCEL` value when given.
///
/// # Errors
/// [`AccelError`] when the override is unknown or asks for KVM on a host without it.
pub fn choose(kvm: KvmKind, override_value: Option<&str>) -> Result<AccelChoice, AccelError> {
    match override_value.map(str::trim).filter(|v| !v.is_empty()) {
        Some("tcg") => Ok(AccelChoice {
            accel: Accel::Tcg,
            reason: format!("{ACCEL_ENV}=tcg"),
        }),
        Some("kvm") if kvm == KvmKind::Absent => Err(AccelError::KvmUnavailable),
        Some("kvm") => Ok(AccelChoice {
            accel: Accel::Kvm,
            reason: format!("{ACCEL_ENV}=kvm"),
        }),
        Some(other) => Err(AccelError::UnknownOverride(other.to_owned())),
        None => Ok(match kvm {
            KvmKind::Intel | KvmKind::Amd => AccelChoice {
                accel: Accel::Kvm,
                reason: "hardware virtualisation available".into(),
            },
            KvmKind::Pvm => AccelChoice {
                accel: Accel::Tcg,
                reason: "/dev/kvm is PVM (kvm_pvm), where stock guest kernels crash".into(),
            },
            KvmKind::Unknown => AccelChoice {
                accel: Accel::Tcg,
                reason: "/dev/kvm has no kvm_intel/kvm_amd backend".into(),
            },
            KvmKind::Absent => AccelChoice {
                accel: Accel::Tcg,
                reason: "no /dev/kvm".into(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for e in entries {
            let p = dir.path().join(e);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        dir
    }

    #[test]
    fn pvm_host_uses_tcg() {
        let t = tree(&["dev/kvm", "sys/module/kvm/x", "sys/module/kvm_pvm/x"]);
        assert_eq!(probe_kvm(t.path()), KvmKind::Pvm);
        assert_eq!(choose(KvmKind::Pvm, None).unwrap().accel, Accel::Tcg);
    }

    #[test]
    fn hardware_host_uses_kvm() {
        let t = tree(&["dev/kvm", "sys/module/kvm_amd/x"]);
        assert_eq!(probe_kvm(t.path()), KvmKind::Amd);
        assert_eq!(choose(KvmKind::Amd, None).unwrap().accel, Accel::Kvm);
        let t = tree(&["sys/module/kvm_intel/x"]);
        assert_eq!(probe_kvm(t.path()), KvmKind::Absent);
    }

    #[test]
    fn override_is_honoured_and_checked() {
        assert_eq!(choose(KvmKind::Amd, Some("tcg")).unwrap().accel, Accel::Tcg);
        assert_eq!(choose(KvmKind::Pvm, Some("kvm")).unwrap().accel, Accel::Kvm);
        assert_eq!(
            choose(KvmKind::Absent, Some("kvm")),
            Err(AccelError::KvmUnavailable)
        );
        assert!(matches!(
            choose(KvmKind::Amd, Some("hvf")),
            Err(AccelError::UnknownOverride(_))
        ));
    }
}
