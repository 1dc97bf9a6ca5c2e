//! Published ports of a default-network box, carried by a private link instead of passt.
//!
//! passt reaches QEMU through a stream socket, which has none of virtio-net's offloads: the
//! guest checksums every byte itself, and under TCG that decided throughput (a published
//! port moved about a quarter of what the same box served over a bridge, with the vCPU
//! thread saturated and passt nearly idle). So a box with published ports also gets a TAP
//! device (offloads on), alone in a network namespace of its own, and its monitor relays
//! each connection from the host port to the guest over it ([`super::forward`], the relays
//! bridge networks use too). Outbound traffic and DNS stay on passt.
//!
//! The namespace has no name and no mount: this monitor holds it by a descriptor, the relays'
//! sockets live in it, and the kernel removes it with its TAP device when the last of them
//! closes. So the host gets no interface, address, route or rule, every box can use the same
//! addresses ([`InboundTap`]'s), and a killed monitor leaves nothing behind.
//!
//! Needs CAP_NET_ADMIN, `/dev/net/tun` and `ip`; without them the ports stay with passt and
//! `inspect` says why (`boot.published`). `A3S_BOX_PUBLISH=forwarder` asks for that too.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use a3s_vmm::net::InboundTap;
use a3s_vmm::proto::{GuestAddr, GuestNic};

use super::forward::{self, Forwarders};
use super::{HostSupport, NetError, PortMap};

/// `link` (default) or `forwarder`: how a default-network box's ports are published.
pub const PUBLISH_ENV: &str = "A3S_BOX_PUBLISH";
/// The TAP device's name inside the namespace.
const IFNAME: &str = "a3s-in0";

/// A box's inbound link: its namespace, holding the TAP device the VM attaches to.
#[derive(Debug)]
pub struct InboundLink {
    netns: Arc<OwnedFd>,
}

impl InboundLink {
    /// The link for a box publishing `ports` (`Ok(None)`: it publishes none), or why its
    /// ports stay with the forwarder (`Err`, for `inspect`: the box still starts).
    ///
    /// # Errors
    /// [`NetError::PublishEnv`] for an `A3S_BOX_PUBLISH` that is neither `link` nor `forwarder`.
    pub fn for_ports(ports: &[PortMap]) -> Result<Result<Option<Self>, String>, NetError> {
        let asked = std::env::var(PUBLISH_ENV).ok();
        match asked.as_deref() {
            None | Some("link") => {}
            Some("forwarder") => return Ok(Err(format!("{PUBLISH_ENV}=forwarder"))),
            Some(other) => return Err(NetError::PublishEnv(other.to_owned())),
        }
        if ports.is_empty() {
            return Ok(Ok(None));
        }
        let host = HostSupport::probe();
        if !host.net_admin {
            return Ok(Err(
                "a private link needs CAP_NET_ADMIN, which the box's monitor lacks".into(),
            ));
        }
        if !host.tun {
            return Ok(Err(
                "a private link needs /dev/net/tun, which is missing".into()
            ));
        }
        Ok(Self::create()
            .map(Some)
            .map_err(|e| format!("the private link could not be made: {e}")))
    }

    /// Makes the namespace and, in it, the TAP device with the host end's address, up.
    fn create() -> Result<Self, NetError> {
        // `unshare` moves only the calling thread, so it runs on one of its own; `ip`, forked
        // from that thread, inherits the new namespace.
        let made = std::thread::spawn(|| -> Result<OwnedFd, NetError> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                NetError::Host {
                    command: "unshare(CLONE_NEWNET)".into(),
                    message: e.to_string(),
                }
            })?;
            let ns = std::fs::File::open("/proc/thread-self/ns/net")?;
            let script = format!(
                "link set lo up\n\
                 tuntap add dev {IFNAME} mode tap vnet_hdr\n\
                 address add {}/{} dev {IFNAME}\n\
                 link set {IFNAME} up\n",
                InboundTap::HOST_ADDR,
                InboundTap::PREFIX
            );
            super::bridge::run("ip", &["-batch", "-"], Some(&script))?;
            Ok(OwnedFd::from(ns))
        })
        .join()
        .map_err(|_| NetError::Host {
            command: "unshare(CLONE_NEWNET)".into(),
            message: "the namespace thread panicked".into(),
        })??;
        Ok(Self {
            netns: Arc::new(made),
        })
    }

    /// The VM's side: the TAP device, opened through this process's descriptor of the
    /// namespace.
    pub fn tap(&self) -> InboundTap {
        InboundTap {
            netns: PathBuf::from(format!(
                "/proc/{}/fd/{}",
                std::process::id(),
                self.netns.as_raw_fd()
            )),
            ifname: IFNAME.into(),
        }
    }

    /// The guest's side, for its setup.
    pub fn guest_nic() -> GuestNic {
        GuestNic {
            mac: InboundTap::MAC.into(),
            addrs: vec![GuestAddr {
                addr: InboundTap::GUEST_ADDR.into(),
                prefix: InboundTap::PREFIX,
            }],
            gateways: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// Binds `ports` on the host and relays them to the guest over the link.
    ///
    /// # Errors
    /// [`NetError::PortInUse`] for a host port taken since create.
    pub fn relay(&self, ports: &[PortMap]) -> Result<Forwarders, NetError> {
        forward::start_in(ports, InboundTap::GUEST_ADDR, Some(self.netns.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_end_is_the_links_other_address_without_a_default_route() {
        let nic = InboundLink::guest_nic();
        assert_eq!(nic.mac, InboundTap::MAC);
        assert_eq!(nic.addrs.len(), 1);
        assert_eq!(
            nic.addrs[0].addr,
            std::net::IpAddr::from(InboundTap::GUEST_ADDR)
        );
        assert!(
            nic.gateways.is_empty(),
            "outbound stays on the user network"
        );
        let host = u32::from(InboundTap::HOST_ADDR);
        let guest = u32::from(InboundTap::GUEST_ADDR);
        let mask = u32::MAX << (32 - InboundTap::PREFIX);
        assert_eq!(host & mask, guest & mask, "both ends on one subnet");
        assert_ne!(host, guest);
    }

    #[test]
    fn a_bad_publish_setting_is_named_with_its_variable() {
        let e = NetError::PublishEnv("tap".into());
        assert!(
            e.to_string().starts_with(&format!("{PUBLISH_ENV}=\"tap\"")),
            "{e}"
        );
        assert!(e.hint().is_some_and(|h| h.contains("forwarder")));
    }

    #[test]
    fn a_box_without_ports_gets_no_link() {
        assert!(matches!(InboundLink::for_ports(&[]), Ok(Ok(None))));
    }
}
