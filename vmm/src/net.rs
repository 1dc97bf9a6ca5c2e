//! The VM's network device: QEMU user networking (slirp) with host-loopback port forwards, or
//! a TAP device on a host bridge (created by the caller before boot).

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

/// A NIC on an existing host TAP device (`script=no`: the caller creates and removes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapNet {
    /// The TAP device name.
    pub ifname: String,
    /// The guest's MAC address.
    pub mac: String,
}

impl TapNet {
    /// QEMU arguments for this NIC.
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        let netdev = format!("tap,id=net0,ifname={},script=no,downscript=no", self.ifname);
        let device = match machine {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        };
        let device = format!("{device},netdev=net0,mac={}", self.mac);
        ["-netdev", &netdev, "-device", &device]
            .into_iter()
            .map(OsString::from)
            .collect()
    }
}

/// The VM's one NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nic {
    /// User networking.
    User(UserNet),
    /// A host TAP device.
    Tap(TapNet),
}

impl Nic {
    /// QEMU arguments for this NIC.
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        match self {
            Self::User(u) => u.qemu_args(machine),
            Self::Tap(t) => t.qemu_args(machine),
        }
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

    #[test]
    fn tap_nics_use_the_given_device_and_mac() {
        let n = Nic::Tap(TapNet {
            ifname: "a3s-tp-0123abcd".into(),
            mac: "02:a3:01:23:ab:cd".into(),
        });
        let a: Vec<String> = n
            .qemu_args(Machine::Microvm)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            [
                "-netdev",
                "tap,id=net0,ifname=a3s-tp-0123abcd,script=no,downscript=no",
                "-device",
                "virtio-net-device,netdev=net0,mac=02:a3:01:23:ab:cd",
            ]
        );
    }
}
