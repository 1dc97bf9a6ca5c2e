//! Giving idle guest memory back to the host: a virtio-balloon device with free page reporting.
//!
//! The guest kernel touches nearly all of its RAM while booting, and without this device QEMU
//! keeps every touched page resident for the VM's life. With `free-page-reporting=on` the
//! guest's `virtio_balloon` driver (`CONFIG_PAGE_REPORTING=y` in the cloud kernel) reports
//! free blocks of 32 KiB and more ([`REPORTING_ORDER_ARG`]) a few seconds after they are freed, and QEMU discards them
//! (`MADV_DONTNEED`, or a hole punched in shared memory), so an idle box's resident memory
//! falls toward what the guest really uses. The balloon is never inflated: no memory is taken
//! from a guest that needs it.
//!
//! SEV-SNP guests get no balloon: their memory is private to the guest, and reporting it would
//! need the guest to convert pages back to shared first.

use std::ffi::OsString;

use crate::qemu::Machine;

/// `off` leaves the balloon out (to measure what it saves: bench/footprint.sh).
pub const BALLOON_ENV: &str = "A3S_BOX_BALLOON";

/// The smallest free block the guest reports: 32 KiB (order 3) instead of the kernel's
/// default of 2 MiB (pageblock order). A guest's free memory lies in many blocks smaller than
/// 2 MiB; with base pages on the host ([`crate::host_pages`]) they can be returned too.
/// Measured (TCG, idle cold busybox boxes of 512 MiB, no THP, QEMU anonymous RSS after 40 s):
/// order 9 153.6 MiB, 7 151.3, 5 150.5, 3 150.2, 1 148.5; idle CPU time the same. Below order 3
/// each report (32 blocks a round trip) returns little. On the command line of every box: a
/// built-in parameter, harmless without the device.
pub const REPORTING_ORDER_ARG: &str = "page_reporting.page_reporting_order=3";

/// Guest kernel modules for the balloon driver.
pub const GUEST_MODULES: &[&str] = &["virtio_balloon"];

/// QEMU arguments for the balloon device on `machine`.
pub fn qemu_args(machine: Machine) -> Vec<OsString> {
    let device = match machine {
        Machine::Microvm => "virtio-balloon-device",
        Machine::Q35 => "virtio-balloon-pci",
    };
    [
        "-device".to_owned(),
        format!("{device},id=balloon0,free-page-reporting=on"),
    ]
    .into_iter()
    .map(OsString::from)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balloon_reports_free_pages_on_either_machine() {
        let s = |m| {
            qemu_args(m)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            s(Machine::Microvm),
            "-device virtio-balloon-device,id=balloon0,free-page-reporting=on"
        );
        assert_eq!(
            s(Machine::Q35),
            "-device virtio-balloon-pci,id=balloon0,free-page-reporting=on"
        );
    }
}
