//! Joining a pod VM's NIC to its CNI interface, Kata's tc-filter model: a TAP device beside
//! the CNI veth inside the pod's namespace, and tc ingress filters redirecting every frame
//! from the veth to the TAP and back (mirred). The guest NIC takes the veth's MAC address,
//! so peers, ARP caches and the CNI plugins keep seeing the identity ADD created; the
//! namespace's own stack never sees a frame (ingress redirect happens before it).
//!
//! QEMU opens the TAP from inside the namespace (`a3s_vmm::netns`), so nothing of the pod's
//! network is visible in the host's namespace but the plugin's own host side.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;

use a3s_vmm::proto::{GuestAddr, GuestRoute};
use serde::{Deserialize, Serialize};

use super::bridge::run;
use super::NetError;

/// The TAP's name inside the pod's namespace (one pod, one namespace: no clash).
pub const POD_TAP: &str = "a3s-tap0";

/// The pod's VM side of the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLink {
    /// The TAP device (in the pod's namespace).
    pub tap: String,
    /// The CNI interface's MAC, which the guest NIC takes.
    pub mac: String,
    /// The CNI interface's MTU.
    pub mtu: u32,
}

#[derive(Deserialize)]
struct LinkInfo {
    address: String,
    mtu: u32,
}

/// Reads `ifname`'s MAC and MTU in namespace `netns`.
///
/// # Errors
/// [`NetError::Host`].
pub fn link_info(netns: &str, ifname: &str) -> Result<(String, u32), NetError> {
    let what = format!("ip -n {netns} -j link show dev {ifname}");
    let out = Command::new("ip")
        .args(["-n", netns, "-j", "link", "show", "dev", ifname])
        .output()
        .map_err(|e| NetError::Host {
            command: what.clone(),
            message: format!("cannot run ip: {e}"),
        })?;
    if !out.status.success() {
        return Err(NetError::Host {
            command: what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let links: Vec<LinkInfo> = serde_json::from_slice(&out.stdout).map_err(|e| NetError::Host {
        command: what.clone(),
        message: format!("unexpected output: {e}"),
    })?;
    let l = links.into_iter().next().ok_or_else(|| NetError::Host {
        command: what,
        message: format!("no interface {ifname}"),
    })?;
    Ok((l.address.to_ascii_lowercase(), l.mtu))
}

/// The tc commands joining `a` and `b` both ways (pure: unit-tested).
pub fn redirect_commands(netns: &str, a: &str, b: &str) -> Vec<Vec<String>> {
    let mut cmds = Vec::new();
    for dev in [a, b] {
        cmds.push(vec!["-n", netns, "qdisc", "add", "dev", dev, "ingress"]);
    }
    for (from, to) in [(a, b), (b, a)] {
        cmds.push(vec![
            "-n", netns, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
        ]);
    }
    cmds.into_iter()
        .map(|c| c.into_iter().map(str::to_owned).collect())
        .collect()
}

/// Creates the TAP beside `ifname` in namespace `netns` (same MTU, up) and the redirects.
/// Everything it creates lives in the namespace and goes with it.
///
/// # Errors
/// [`NetError::Host`] naming the failed command.
pub fn join(netns: &str, ifname: &str) -> Result<PodLink, NetError> {
    let (mac, mtu) = link_info(netns, ifname)?;
    let ip = |args: &[&str]| {
        let mut a = vec!["-n", netns];
        a.extend_from_slice(args);
        run("ip", &a, None)
    };
    ip(&["tuntap", "add", "dev", POD_TAP, "mode", "tap"])?;
    ip(&["link", "set", "dev", POD_TAP, "mtu", &mtu.to_string(), "up"])?;
    for c in redirect_commands(netns, ifname, POD_TAP) {
        let args: Vec<&str> = c.iter().map(String::as_str).collect();
        run("tc", &args, None)?;
    }
    Ok(PodLink {
        tap: POD_TAP.to_owned(),
        mac,
        mtu,
    })
}

/// A pod VM's NIC as its box records it (`net.json`): where the TAP is and what the guest
/// configures, from the CNI result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNic {
    /// The pod's network namespace.
    pub netns: PathBuf,
    /// The TAP device in it.
    pub tap: String,
    /// The guest NIC's MAC (the CNI interface's).
    pub mac: String,
    /// Link MTU.
    pub mtu: u32,
    /// The pod's IPv4 address (none: an IPv6-only pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Ipv4Addr>,
    /// Its prefix length.
    #[serde(default)]
    pub prefix: u8,
    /// The IPv4 default route's next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// The pod's IPv6 addresses (a dual-stack or IPv6-only pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs6: Vec<GuestAddr>,
    /// The IPv6 default route's next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway6: Option<Ipv6Addr>,
    /// Other routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<GuestRoute>,
}

impl PodNic {
    /// The NIC from the link and the CNI addresses.
    pub fn new(netns: PathBuf, link: &PodLink, a: &super::cni::PodAddresses) -> Self {
        Self {
            netns,
            tap: link.tap.clone(),
            mac: link.mac.clone(),
            mtu: link.mtu,
            addr: a.ipv4.map(|(ip, _)| ip),
            prefix: a.ipv4.map_or(0, |(_, p)| p),
            gateway: a.gateway,
            addrs6: a
                .ipv6
                .iter()
                .map(|&(ip, prefix)| GuestAddr {
                    addr: IpAddr::V6(ip),
                    prefix,
                })
                .collect(),
            gateway6: a.gateway6,
            routes: a
                .routes
                .iter()
                .map(|r| GuestRoute {
                    dst: r.dst,
                    prefix: r.prefix,
                    gateway: r.gw,
                })
                .collect(),
        }
    }

    /// The VM's device.
    pub fn tap(&self) -> a3s_vmm::net::PodTap {
        a3s_vmm::net::PodTap {
            netns: self.netns.clone(),
            ifname: self.tap.clone(),
            mac: self.mac.clone(),
            mtu: self.mtu,
        }
    }

    /// What the guest configures.
    pub fn guest_nic(&self) -> a3s_vmm::proto::GuestNic {
        let v4 = self.addr.map(|a| GuestAddr {
            addr: IpAddr::V4(a),
            prefix: self.prefix,
        });
        a3s_vmm::proto::GuestNic {
            mac: self.mac.clone(),
            addrs: v4.into_iter().chain(self.addrs6.iter().copied()).collect(),
            gateways: self
                .gateway
                .map(IpAddr::V4)
                .into_iter()
                .chain(self.gateway6.map(IpAddr::V6))
                .collect(),
            routes: self.routes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_redirected_both_ways_at_ingress() {
        let c = redirect_commands("ns1", "eth0", "a3s-tap0");
        let lines: Vec<String> = c.iter().map(|a| a.join(" ")).collect();
        assert_eq!(
            lines,
            [
                "-n ns1 qdisc add dev eth0 ingress",
                "-n ns1 qdisc add dev a3s-tap0 ingress",
                "-n ns1 filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev a3s-tap0",
                "-n ns1 filter add dev a3s-tap0 parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev eth0",
            ]
        );
    }

    #[test]
    fn a_dual_stack_nic_gives_the_guest_both_families_and_old_records_still_load() {
        let v = serde_json::json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "fd00:a3:9::5/64", "gateway": "fd00:a3:9::1"},
                {"address": "10.233.9.5/24", "gateway": "10.233.9.1"}
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "fd00:beef::/48"}]
        });
        let a = super::super::cni::PodAddresses::from_result(&v, "eth0").unwrap();
        let link = PodLink {
            tap: POD_TAP.into(),
            mac: "aa:bb:cc:dd:ee:03".into(),
            mtu: 1500,
        };
        let nic = PodNic::new("/run/netns/x".into(), &link, &a);
        let g = nic.guest_nic();
        let addrs: Vec<String> = g
            .addrs
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect();
        assert_eq!(addrs, ["10.233.9.5/24", "fd00:a3:9::5/64"]);
        let gws: Vec<String> = g.gateways.iter().map(ToString::to_string).collect();
        assert_eq!(gws, ["10.233.9.1", "fd00:a3:9::1"]);
        assert_eq!(g.routes.len(), 1);
        assert_eq!(g.routes[0].gateway, Some("fd00:a3:9::1".parse().unwrap()));
        // The record round-trips, and one written before IPv6 (IPv4 fields only) still loads.
        let back: PodNic = serde_json::from_str(&serde_json::to_string(&nic).unwrap()).unwrap();
        assert_eq!(back, nic);
        let old: PodNic = serde_json::from_value(serde_json::json!({
            "netns": "/run/netns/x", "tap": "a3s-tap0", "mac": "aa:bb:cc:dd:ee:03", "mtu": 1500,
            "addr": "10.233.9.5", "prefix": 24, "gateway": "10.233.9.1",
            "routes": [{"dst": "192.168.0.0", "prefix": 16, "gateway": "10.233.9.254"}]
        }))
        .unwrap();
        assert_eq!(old.addr, Some("10.233.9.5".parse().unwrap()));
        assert!(old.addrs6.is_empty());
        assert_eq!(old.guest_nic().gateways.len(), 1);
    }
}
