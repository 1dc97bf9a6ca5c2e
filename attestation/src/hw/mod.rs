//! Hardware SEV-SNP attestation from inside a guest: configfs-tsm (preferred) or the
//! `/dev/sev-guest` ioctls.

pub mod certtable;
mod ioctl;
mod tsm;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::key_request::KeyRequest;
use crate::report::trustee::Evidence;
use crate::report::{Report, ReportError};

/// The SNP guest device (present inside an SEV-SNP guest with the `sev-guest` driver).
pub const SEV_GUEST_DEVICE: &str = "dev/sev-guest";
/// The configfs-tsm report directory (Linux 6.7 and later, configfs mounted).
pub const TSM_REPORT_DIR: &str = "sys/kernel/config/tsm/report";

/// Something that produces SEV-SNP evidence and derived keys: the hardware, or the simulator.
pub trait Attester {
    /// A report carrying `report_data`, requested at `vmpl`, with any certificates supplied.
    ///
    /// # Errors
    /// When the TEE refuses or cannot be reached.
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError>;

    /// A key derived by the secure processor (MSG_KEY_REQ).
    ///
    /// # Errors
    /// When the TEE refuses the request (e.g. a VMPL below the guest's).
    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError>;
}

/// Errors talking to the SEV-SNP guest interfaces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HwError {
    /// Neither configfs-tsm nor `/dev/sev-guest` exists.
    #[error("no SEV-SNP guest interface: neither /{TSM_REPORT_DIR} nor /{SEV_GUEST_DEVICE} exists (this is not an SEV-SNP guest)")]
    NoInterface,
    /// The device could not be opened.
    #[error("opening {path}")]
    Open {
        /// Device path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("{op} failed (firmware error {fw_error:#x}, VMM error {vmm_error:#x})")]
    Ioctl {
        /// Which request.
        op: &'static str,
        /// OS error.
        #[source]
        source: std::io::Error,
        /// Firmware error code.
        fw_error: u64,
        /// VMM error code.
        vmm_error: u64,
    },
    /// The firmware answered with a non-zero status.
    #[error("{op} returned firmware status {status:#x}")]
    FirmwareStatus {
        /// Which message.
        op: &'static str,
        /// Status code.
        status: u32,
    },
    /// The response was shorter than its header says.
    #[error("firmware response is truncated")]
    ShortResponse,
    /// configfs-tsm I/O failed.
    #[error("configfs-tsm {path}")]
    Tsm {
        /// File involved.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The configfs-tsm provider is not SEV-SNP.
    #[error("configfs-tsm provider is {0:?}, not sev_guest")]
    WrongProvider(String),
    /// Another process wrote the report inputs while we read.
    #[error("configfs-tsm report changed while it was read (concurrent writer); retry")]
    TsmRace,
    /// configfs-tsm cannot derive keys.
    #[error("derived keys need /{SEV_GUEST_DEVICE}; configfs-tsm has no key interface")]
    NoKeyInterface,
    /// The certificate table is malformed.
    #[error(transparent)]
    CertTable(#[from] certtable::CertTableError),
    /// The returned report is not valid.
    #[error("the TEE returned an invalid report")]
    Report(#[from] ReportError),
    /// A simulator-backed attester failed.
    #[error("simulator: {0}")]
    Simulator(String),
}

/// Which SEV-SNP guest interfaces this machine offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GuestInterfaces {
    /// `/dev/sev-guest` exists.
    pub sev_guest_device: bool,
    /// `/sys/kernel/config/tsm/report` exists.
    pub configfs_tsm: bool,
}

impl GuestInterfaces {
    /// Probes a machine rooted at `root` (`/` for this one).
    pub fn probe(root: &Path) -> Self {
        Self {
            sev_guest_device: root.join(SEV_GUEST_DEVICE).exists(),
            configfs_tsm: root.join(TSM_REPORT_DIR).is_dir(),
        }
    }

    /// Whether any interface can produce hardware reports.
    pub fn any(self) -> bool {
        self.sev_guest_device || self.configfs_tsm
    }
}

/// The hardware attester of this guest.
#[derive(Debug)]
pub struct HardwareAttester {
    root: PathBuf,
    interfaces: GuestInterfaces,
}

impl HardwareAttester {
    /// Finds the guest interfaces on this machine.
    ///
    /// # Errors
    /// [`HwError::NoInterface`] outside an SEV-SNP guest.
    pub fn open() -> Result<Self, HwError> {
        Self::open_at(Path::new("/"))
    }

    /// Finds the guest interfaces under `root`.
    ///
    /// # Errors
    /// [`HwError::NoInterface`] when neither interface exists.
    pub fn open_at(root: &Path) -> Result<Self, HwError> {
        let interfaces = GuestInterfaces::probe(root);
        if !interfaces.any() {
            return Err(HwError::NoInterface);
        }
        Ok(Self {
            root: root.to_owned(),
            interfaces,
        })
    }
}

impl Attester for HardwareAttester {
    fn report(&self, report_data: &[u8; 64], vmpl: u32) -> Result<Evidence, HwError> {
        let (raw, cert_chain): (Vec<u8>, certtable::Certs) = if self.interfaces.configfs_tsm {
            tsm::report(&self.root.join(TSM_REPORT_DIR), report_data, vmpl)?
        } else {
            let dev = ioctl::SevGuest::open(&self.root.join(SEV_GUEST_DEVICE))?;
            (dev.report(report_data, vmpl)?, Vec::new())
        };
        Ok(Evidence {
            report: Report::from_bytes(&raw)?,
            cert_chain,
        })
    }

    fn derived_key(&self, request: &KeyRequest) -> Result<[u8; 32], HwError> {
        if !self.interfaces.sev_guest_device {
            return Err(HwError::NoKeyInterface);
        }
        let dev = ioctl::SevGuest::open(&self.root.join(SEV_GUEST_DEVICE))?;
        dev.derived_key(&request.to_v1_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_interface_outside_a_guest() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            HardwareAttester::open_at(dir.path()),
            Err(HwError::NoInterface)
        ));
    }

    #[test]
    #[cfg_attr(
        not(sev_guest),
        ignore = "needs an SEV-SNP guest (/dev/sev-guest or configfs-tsm)"
    )]
    fn hardware_report_parses() {
        let a = HardwareAttester::open().unwrap();
        let e = a.report(&[7u8; 64], 0).unwrap();
        assert_eq!(e.report.report_data(), [7u8; 64]);
    }
}
