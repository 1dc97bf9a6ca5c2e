//! What the pod learns from a CNI result (specification 0.3.0 to 1.0.0): its addresses,
//! its IPv4 gateway and routes (for the guest's NIC), and DNS settings.

use std::net::{IpAddr, Ipv4Addr};

use serde::Deserialize;
use serde_json::Value;

use super::CniError;

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    dns: Dns,
}

#[derive(Deserialize)]
struct Interface {
    #[serde(default)]
    name: String,
    #[serde(default)]
    sandbox: String,
}

#[derive(Deserialize)]
struct IpConfig {
    address: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawRoute {
    dst: String,
    #[serde(default)]
    gw: Option<IpAddr>,
}

/// DNS settings a result may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One IPv4 route for the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route4 {
    /// Destination network.
    pub dst: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
    /// Next hop (`None`: on the link).
    pub gw: Option<Ipv4Addr>,
}

/// The pod's view of an ADD result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddresses {
    /// Every address on the pod's interface, IPv4 first (PodSandboxStatus reports them).
    pub ips: Vec<IpAddr>,
    /// The IPv4 address and prefix the guest's NIC takes.
    pub ipv4: (Ipv4Addr, u8),
    /// The IPv4 default route's next hop, if the result has one.
    pub gateway: Option<Ipv4Addr>,
    /// Other IPv4 routes (next hops filled in from the address's gateway where omitted).
    pub routes: Vec<Route4>,
    /// DNS settings from the result.
    pub dns: Dns,
}

/// Parses `ADDR/PREFIX`.
fn cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (a, p) = s.split_once('/')?;
    let addr: IpAddr = a.parse().ok()?;
    let prefix: u8 = p.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

impl PodAddresses {
    /// The addresses of interface `ifname` inside the pod's namespace in `result`.
    ///
    /// # Errors
    /// [`CniError::Result`] when the result is malformed or gives the pod no IPv4 address
    /// (the VM's NIC is configured over IPv4).
    pub fn from_result(result: &Value, ifname: &str) -> Result<Self, CniError> {
        let bad = |why: String| CniError::Result(why);
        let raw: Raw = serde_json::from_value(result.clone())
            .map_err(|e| bad(format!("it is not a CNI 0.3+ result: {e}")))?;
        // The addresses that belong to the pod's interface (an `interface` index into
        // `interfaces` naming a sandbox interface), or unattributed ones.
        let pods_own = |ip: &IpConfig| match ip.interface {
            None => true,
            Some(i) => raw
                .interfaces
                .get(i)
                .is_some_and(|itf| !itf.sandbox.is_empty() && itf.name == ifname),
        };
        let mut ips = Vec::new();
        let mut ipv4 = None;
        let mut gw4 = None;
        for ip in raw.ips.iter().filter(|ip| pods_own(ip)) {
            let (addr, prefix) =
                cidr(&ip.address).ok_or_else(|| bad(format!("bad address {:?}", ip.address)))?;
            ips.push(addr);
            if let (IpAddr::V4(a), None) = (addr, ipv4) {
                ipv4 = Some((a, prefix));
                gw4 = match ip.gateway {
                    Some(IpAddr::V4(g)) => Some(g),
                    _ => None,
                };
            }
        }
        ips.sort_by_key(IpAddr::is_ipv6);
        let ipv4 = ipv4.ok_or_else(|| {
            bad(format!(
                "it gives interface {ifname} no IPv4 address (pod VMs need one)"
            ))
        })?;
        let mut gateway = None;
        let mut routes = Vec::new();
        for r in &raw.routes {
            let (dst, prefix) =
                cidr(&r.dst).ok_or_else(|| bad(format!("bad route destination {:?}", r.dst)))?;
            let IpAddr::V4(dst) = dst else { continue };
            let gw = match r.gw {
                Some(IpAddr::V4(g)) => Some(g),
                Some(IpAddr::V6(_)) => continue,
                None => gw4,
            };
            if prefix == 0 {
                gateway = gateway.or(gw);
            } else {
                routes.push(Route4 { dst, prefix, gw });
            }
        }
        Ok(Self {
            ips,
            ipv4,
            gateway,
            routes,
            dns: raw.dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a bridge + host-local 1.0.0 result (after portmap, which passes it on).
    const BRIDGE: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni-a3s0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/a3s-x"}
        ],
        "ips": [
            {"interface": 2, "address": "fd00:a3::5/64", "gateway": "fd00:a3::1"},
            {"interface": 2, "address": "10.233.7.5/24", "gateway": "10.233.7.1"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0"},
            {"dst": "192.168.50.0/24", "gw": "10.233.7.254"},
            {"dst": "172.30.0.0/16"},
            {"dst": "::/0"}
        ],
        "dns": {"nameservers": ["10.233.7.1"], "search": ["svc.local"]}
    }"#;

    #[test]
    fn the_pod_interface_address_gateway_routes_and_dns_are_read() {
        let v: Value = serde_json::from_str(BRIDGE).unwrap();
        let a = PodAddresses::from_result(&v, "eth0").unwrap();
        assert_eq!(a.ipv4, (Ipv4Addr::new(10, 233, 7, 5), 24));
        assert_eq!(
            a.ips,
            vec![
                "10.233.7.5".parse::<IpAddr>().unwrap(),
                "fd00:a3::5".parse().unwrap()
            ]
        );
        assert_eq!(a.gateway, Some(Ipv4Addr::new(10, 233, 7, 1)));
        assert_eq!(
            a.routes,
            vec![
                Route4 {
                    dst: Ipv4Addr::new(192, 168, 50, 0),
                    prefix: 24,
                    gw: Some(Ipv4Addr::new(10, 233, 7, 254))
                },
                Route4 {
                    dst: Ipv4Addr::new(172, 30, 0, 0),
                    prefix: 16,
                    gw: Some(Ipv4Addr::new(10, 233, 7, 1))
                },
            ]
        );
        assert_eq!(a.dns.nameservers, ["10.233.7.1"]);
        assert_eq!(a.dns.search, ["svc.local"]);
    }

    #[test]
    fn results_without_a_pod_ipv4_address_or_malformed_ones_are_refused() {
        let v: Value = serde_json::from_str(BRIDGE).unwrap();
        // The interface asked for is not in the result.
        let e = PodAddresses::from_result(&v, "net1").unwrap_err();
        assert!(e.to_string().contains("no IPv4 address"), "{e}");
        let v = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]});
        let e = PodAddresses::from_result(&v, "eth0").unwrap_err();
        assert!(e.to_string().contains("bad address"), "{e}");
        let v = serde_json::json!({"ips": "x"});
        assert!(PodAddresses::from_result(&v, "eth0").is_err());
        // A 0.3.1 result without interfaces: the addresses are the pod's.
        let v = serde_json::json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.9/16"}]});
        let a = PodAddresses::from_result(&v, "eth0").unwrap();
        assert_eq!(a.ipv4, (Ipv4Addr::new(10, 1, 0, 9), 16));
        assert_eq!(a.gateway, None);
    }
}
