//! The VM's network device: QEMU user networking (slirp) with host-loopback port forwards, or
//! a TAP device on a host bridge (created by the caller before boot).

use std::ffi::OsString;

use crate::qemu::Machine;

/// Guest kernel modules for the NIC (virtio_net is a module in the cloud kernel).
pub const GUEST_MODULES: &[&str] = &["virtio_net"];

/// One QEMU `hostfwd`: a host address and port forwarded to a guest port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFwd {
    /// UDP instead of TCP.
    pub udp: bool,
    /// Host address QEMU binds.
    pub host_ip: std::net::Ipv4Addr,
    /// Host port.
    pub host: u16,
    /// Guest port.
    pub guest: u16,
}

/// The user network NIC's MAC address (QEMU's default for a first NIC, given explicitly so
/// the guest finds it by address when the box also has its [`InboundTap`]).
pub const USER_NIC_MAC: &str = "52:54:00:12:34:56";

/// A user-network NIC: outbound through the host's stack, published ports as `forwards`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNet {
    /// The published ports the forwarder holds (empty when they come in over `inbound`).
    pub forwards: Vec<HostFwd>,
    /// Who carries the packets; `None`: chosen for this host when the VM starts
    /// ([`crate::passt::choose`]).
    pub forwarder: Option<crate::passt::Forwarder>,
    /// A second NIC that carries the published ports instead of the forwarder.
    pub inbound: Option<InboundTap>,
    /// Why the box has published ports but no `inbound` link (for `inspect`).
    pub inbound_refused: Option<String>,
}

/// The NIC a default-network box's published ports come in on: a TAP device in a network
/// namespace of the box's own, where the box's monitor relays each connection to the guest
/// (the runtime's `network::inbound`). Unlike passt's stream socket, a TAP device has
/// virtio-net's checksum and segmentation offloads, which decide throughput under TCG.
///
/// Every box uses the same addresses and MAC: each link is alone in its namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundTap {
    /// The namespace (a path that opens it, e.g. `/proc/<pid>/fd/<n>`).
    pub netns: std::path::PathBuf,
    /// The TAP device's name in it.
    pub ifname: String,
}

impl InboundTap {
    /// The guest end's MAC address.
    pub const MAC: &'static str = "02:a3:ff:00:00:02";
    /// The guest end's address.
    pub const GUEST_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 2);
    /// The host end's address (in the namespace).
    pub const HOST_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 1, 1);
    /// The link's prefix length.
    pub const PREFIX: u8 = 30;

    /// QEMU arguments for this NIC (`net1`); its descriptor is
    /// [`crate::passt::QEMU_INBOUND_FD`].
    pub fn qemu_args(machine: Machine) -> Vec<OsString> {
        let netdev = format!("tap,id=net1,fd={}", crate::passt::QEMU_INBOUND_FD);
        let device = match machine {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        };
        let device = format!("{device},netdev=net1,mac={}", Self::MAC);
        ["-netdev", &netdev, "-device", &device]
            .into_iter()
            .map(OsString::from)
            .collect()
    }
}

/// How a box's published ports reach it (`inspect`'s `boot.published`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Published {
    /// `link` (the monitor relays over the box's [`InboundTap`]), `passt` or `slirp`.
    pub via: String,
    /// Why.
    pub reason: String,
}

impl UserNet {
    /// How this NIC's published ports reach the guest (`None`: it has none).
    pub fn published(&self) -> Option<Published> {
        if self.inbound.is_some() {
            return Some(Published {
                via: "link".into(),
                reason: "relayed by the box's monitor over a private TAP link (with offloads)"
                    .into(),
            });
        }
        if self.forwards.is_empty() {
            return None;
        }
        let via = match self.forwarder {
            Some(crate::passt::Forwarder::Slirp) => "slirp",
            _ => "passt",
        };
        Some(Published {
            via: via.into(),
            reason: self
                .inbound_refused
                .clone()
                .unwrap_or_else(|| "held by the user network's forwarder".into()),
        })
    }
}

impl UserNet {
    /// QEMU arguments for this NIC (guest side: 10.0.2.15, gateway 10.0.2.2, DNS 10.0.2.3).
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        let device = match machine {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        };
        let device = format!("{device},netdev=net0,mac={USER_NIC_MAC}");
        let (netdev, device) = match self.forwarder {
            // passt holds the forwards (see [`crate::passt`]) and takes 64 KiB frames: the
            // device offers that MTU, which the guest driver adopts, so the guest's TCP sends
            // a tenth of the frames it would at 1500 (the stream has no segmentation offload).
            Some(crate::passt::Forwarder::Passt) => (
                crate::passt::qemu_netdev(),
                format!("{device},host_mtu={}", crate::passt::MTU),
            ),
            _ => (self.slirp_netdev(), device),
        };
        let mut args: Vec<OsString> = ["-netdev", &netdev, "-device", &device]
            .into_iter()
            .map(OsString::from)
            .collect();
        if self.inbound.is_some() {
            args.extend(InboundTap::qemu_args(machine));
        }
        args
    }

    fn slirp_netdev(&self) -> String {
        let mut netdev = String::from("user,id=net0,ipv6=off");
        for f in &self.forwards {
            let proto = if f.udp { "udp" } else { "tcp" };
            netdev.push_str(&format!(
                ",hostfwd={proto}:{}:{}-:{}",
                f.host_ip, f.host, f.guest
            ));
        }
        netdev
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
    /// QEMU arguments for this NIC as the VM's `index`th (its netdev is `net<index>`).
    pub fn qemu_args(&self, machine: Machine, index: usize) -> Vec<OsString> {
        let netdev = format!(
            "tap,id=net{index},ifname={},script=no,downscript=no",
            self.ifname
        );
        let device = match machine {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        };
        let device = format!("{device},netdev=net{index},mac={}", self.mac);
        ["-netdev", &netdev, "-device", &device]
            .into_iter()
            .map(OsString::from)
            .collect()
    }
}

/// A NIC on a TAP device inside a pod's network namespace (see [`crate::netns`]): the
/// caller creates the TAP there, [`crate::qemu::Vm::start`] opens it from inside the
/// namespace and QEMU inherits the descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodTap {
    /// The namespace (`/run/netns/NAME`).
    pub netns: std::path::PathBuf,
    /// The TAP device's name in it.
    pub ifname: String,
    /// The guest's MAC address (the CNI interface's).
    pub mac: String,
    /// The link MTU (the CNI interface's), offered to the guest driver.
    pub mtu: u32,
}

impl PodTap {
    /// QEMU arguments for this NIC; its descriptor is [`crate::passt::QEMU_NET_FD`].
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        let netdev = format!("tap,id=net0,fd={}", crate::passt::QEMU_NET_FD);
        let device = match machine {
            Machine::Microvm => "virtio-net-device",
            Machine::Q35 => "virtio-net-pci",
        };
        let device = format!(
            "{device},netdev=net0,mac={},host_mtu={}",
            self.mac, self.mtu
        );
        ["-netdev", &netdev, "-device", &device]
            .into_iter()
            .map(OsString::from)
            .collect()
    }
}

/// The VM's network devices.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nic {
    /// User networking.
    User(UserNet),
    /// A host TAP device.
    Tap(TapNet),
    /// One host TAP device per network the box is on, in the box's order of networks.
    Taps(Vec<TapNet>),
    /// A TAP in a pod's network namespace.
    Pod(PodTap),
}

impl Nic {
    /// QEMU arguments for these NICs.
    pub fn qemu_args(&self, machine: Machine) -> Vec<OsString> {
        match self {
            Self::User(u) => u.qemu_args(machine),
            Self::Tap(t) => t.qemu_args(machine, 0),
            Self::Taps(ts) => ts
                .iter()
                .enumerate()
                .flat_map(|(i, t)| t.qemu_args(machine, i))
                .collect(),
            Self::Pod(p) => p.qemu_args(machine),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn forwards_bind_the_given_address_and_protocol() {
        let fwd = |udp, host_ip, host, guest| HostFwd {
            udp,
            host_ip,
            host,
            guest,
        };
        let n = UserNet {
            forwards: vec![
                fwd(false, std::net::Ipv4Addr::LOCALHOST, 8080, 80),
                fwd(true, std::net::Ipv4Addr::UNSPECIFIED, 5353, 53),
            ],
            forwarder: None,
            ..UserNet::default()
        };
        let a = strings(n.qemu_args(Machine::Microvm));
        assert_eq!(
            a,
            [
                "-netdev",
                "user,id=net0,ipv6=off,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:0.0.0.0:5353-:53",
                "-device",
                "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
            ]
        );
    }

    #[test]
    fn each_network_gets_its_own_netdev_and_device() {
        let tap = |i: &str, m: &str| TapNet {
            ifname: i.into(),
            mac: m.into(),
        };
        let n = Nic::Taps(vec![
            tap("a3s-tp-00000001", "02:a3:00:00:00:01"),
            tap("a3s-tp-00000002", "02:a3:00:00:00:02"),
        ]);
        let a = strings(n.qemu_args(Machine::Q35));
        assert_eq!(
            a,
            [
                "-netdev",
                "tap,id=net0,ifname=a3s-tp-00000001,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=net0,mac=02:a3:00:00:00:01",
                "-netdev",
                "tap,id=net1,ifname=a3s-tp-00000002,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=net1,mac=02:a3:00:00:00:02",
            ]
        );
    }

    #[test]
    fn a_passt_nic_is_a_stream_on_the_inherited_socket() {
        let n = UserNet {
            forwards: vec![HostFwd {
                udp: false,
                host_ip: std::net::Ipv4Addr::LOCALHOST,
                host: 8080,
                guest: 80,
            }],
            forwarder: Some(crate::passt::Forwarder::Passt),
            ..UserNet::default()
        };
        let a = strings(n.qemu_args(Machine::Microvm));
        assert_eq!(
            a,
            [
                "-netdev",
                "stream,id=net0,server=off,addr.type=fd,addr.str=64",
                "-device",
                "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56,host_mtu=65520",
            ]
        );
    }

    #[test]
    fn an_inbound_link_is_a_second_nic_on_its_inherited_tap_and_says_so() {
        let n = UserNet {
            forwarder: Some(crate::passt::Forwarder::Passt),
            inbound: Some(InboundTap {
                netns: "/proc/1/fd/9".into(),
                ifname: "a3s-in0".into(),
            }),
            ..UserNet::default()
        };
        let a = strings(n.qemu_args(Machine::Microvm));
        assert_eq!(
            a[4..],
            [
                "-netdev",
                "tap,id=net1,fd=65",
                "-device",
                "virtio-net-device,netdev=net1,mac=02:a3:ff:00:00:02",
            ]
        );
        assert_eq!(n.published().map(|p| p.via).as_deref(), Some("link"));
    }

    #[test]
    fn ports_left_with_the_forwarder_say_which_and_why() {
        let mut n = UserNet {
            forwards: vec![HostFwd {
                udp: false,
                host_ip: std::net::Ipv4Addr::LOCALHOST,
                host: 8080,
                guest: 80,
            }],
            forwarder: Some(crate::passt::Forwarder::Slirp),
            inbound_refused: Some("no CAP_NET_ADMIN".into()),
            ..UserNet::default()
        };
        let p = n.published().unwrap();
        assert_eq!(
            (p.via.as_str(), p.reason.as_str()),
            ("slirp", "no CAP_NET_ADMIN")
        );
        n.forwards.clear();
        assert_eq!(n.published(), None, "no ports, nothing to say");
    }

    #[test]
    fn a_pod_nic_is_the_inherited_tap_with_the_cni_mac_and_mtu() {
        let n = Nic::Pod(PodTap {
            netns: "/run/netns/a3s-pod-1".into(),
            ifname: "a3s-tap0".into(),
            mac: "2e:5a:01:02:03:04".into(),
            mtu: 1450,
        });
        let a = strings(n.qemu_args(Machine::Microvm));
        assert_eq!(
            a,
            [
                "-netdev",
                "tap,id=net0,fd=64",
                "-device",
                "virtio-net-device,netdev=net0,mac=2e:5a:01:02:03:04,host_mtu=1450",
            ]
        );
    }

    #[test]
    fn tap_nics_use_the_given_device_and_mac() {
        let n = Nic::Tap(TapNet {
            ifname: "a3s-tp-0123abcd".into(),
            mac: "02:a3:01:23:ab:cd".into(),
        });
        let a = strings(n.qemu_args(Machine::Microvm));
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
