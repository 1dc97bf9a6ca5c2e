//! The SEV-SNP guest interfaces of Linux: configfs-tsm and `/dev/sev-guest`.

use std::path::Path;

use serde::Serialize;

/// The SNP guest device (present inside an SEV-SNP guest with the `sev-guest` driver).
pub const SEV_GUEST_DEVICE: &str = "dev/sev-guest";
/// The configfs-tsm report directory (Linux 6.7 and later, configfs mounted).
pub const TSM_REPORT_DIR: &str = "sys/kernel/config/tsm/report";

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
