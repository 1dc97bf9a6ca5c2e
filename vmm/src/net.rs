//! The VM's network device: QEMU user networking (slirp) with host-loopback port forwards.

use std::ffi::OsString;

use crate::qemu::Machine;

/// Guest kernel modules for the NIC (virtio_net is a module in the cloud kernel).
pub const GUEST_MODULES: &[&str] = &["virtio_net"];

/// A user-network NIC: outbound through the host's stack, `forwards` as (host, guest) TCP ports
/// bound on 127.0.0.1 only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNet {
    /// (host port on 127.0.0.1, guest port).
    pub forwards: Vec<(u16, u16)>,
}

impl UserNet {
    /// QEMU arguments for this NIC (guest side: 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3).
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        let mut netdev = String::from("user,id=net0,ipv6=off");
        for (host, guest) in &self.forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        let device = match machine {
            Machine::Microvm => "virtio-net-device,netdev=net0",
            Machine::Q35 => "virtio-net-pci,netdev=net0",
        };
        ["-netdev", &netdev, "-device", device]
            .into_iter()
            .map(OsString::from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_bind_loopback_only() {
        let n = UserNet {
            forwards: vec![(8080, 80), (2222, 22)],
        };
        let a: Vec<String> = n
            .qemu_args(Machine::Microvm)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "-netdev",
                "user,id=net0,ipv6=off,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:2222-:22",
                "-device",
                "virtio-net-device,netdev=net0",
            ]
        );
    }
}
