//! Joining a pod VM's NIC to its CNI interface, Kata's tc-filter model: a TAP device beside
//! the CNI veth inside the pod's namespace, and tc ingress filters redirecting every frame
//! from the veth to the TAP and back (mirred). The guest NIC takes the veth's MAC address,
//! so peers, ARP caches and the CNI plugins keep seeing the identity ADD created; the
//! namespace's own stack never sees a frame (ingress redirect happens before it).
//!
//! QEMU opens the TAP from inside the namespace (`a3s_vmm::netns`), so nothing of the pod's
//! network is visible in the host's namespace but the plugin's own host side.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use a3s_vmm::proto::GuestRoute;
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
    /// The pod's IPv4 address.
    pub addr: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// Default route's next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
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
            addr: a.ipv4.0,
            prefix: a.ipv4.1,
            gateway: a.gateway,
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
        a3s_vmm::proto::GuestNic {
            mac: self.mac.clone(),
            addr: self.addr,
            prefix: self.prefix,
            gateway: self.gateway,
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
}
