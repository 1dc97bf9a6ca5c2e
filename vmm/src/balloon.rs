//! Giving idle guest memory back to the host: a virtio-balloon device with free page reporting.
//!
//! The guest kernel touches nearly all of its RAM while booting, and without this device QEMU
//! keeps every touched page resident for the VM's life. With `free-page-reporting=on` the
//! guest's `virtio_balloon` driver (`CONFIG_PAGE_REPORTING=y` in the cloud kernel) reports
//! free blocks of 2 MiB and more a few seconds after they are freed, and QEMU discards them
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
