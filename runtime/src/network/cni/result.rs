//! What the pod learns from a CNI result (specification 0.3.0 to 1.0.0): its addresses,
//! gateways and routes, IPv4 and IPv6 (for the guest's NIC), and DNS settings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// One route for the guest (IPv4 or IPv6; the next hop is of the destination's family).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub dst: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// Next hop (`None`: on the link).
    pub gw: Option<IpAddr>,
}

/// The pod's view of an ADD result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodAddresses {
    /// Every address on the pod's interface, IPv4 first (PodSandboxStatus reports them).
    pub ips: Vec<IpAddr>,
    /// The IPv4 address and prefix the guest's NIC takes (none: an IPv6-only pod).
    pub ipv4: Option<(Ipv4Addr, u8)>,
    /// The IPv6 addresses and prefixes the guest's NIC takes (none: an IPv4-only pod).
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// The IPv4 default route's next hop, if the result has one.
    pub gateway: Option<Ipv4Addr>,
    /// The IPv6 default route's next hop, if the result has one.
    pub gateway6: Option<Ipv6Addr>,
    /// Other routes (next hops filled in from the family's address gateway where omitted).
    pub routes: Vec<Route>,
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
    /// [`CniError::Result`] when the result is malformed or gives the pod no address.
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
        let mut ipv6 = Vec::new();
        let (mut gw4, mut gw6) = (None, None);
        for ip in raw.ips.iter().filter(|ip| pods_own(ip)) {
            let (addr, prefix) =
                cidr(&ip.address).ok_or_else(|| bad(format!("bad address {:?}", ip.address)))?;
            ips.push(addr);
            match addr {
                // The NIC takes one IPv4 address (as containerd's pods do); others are
                // reported only.
                IpAddr::V4(a) if ipv4.is_none() => {
                    ipv4 = Some((a, prefix));
                    gw4 = match ip.gateway {
                        Some(IpAddr::V4(g)) => Some(g),
                        _ => None,
                    };
                }
                IpAddr::V4(_) => {}
                IpAddr::V6(a) => {
                    ipv6.push((a, prefix));
                    if gw6.is_none() {
                        gw6 = match ip.gateway {
                            Some(IpAddr::V6(g)) => Some(g),
                            _ => None,
                        };
                    }
                }
            }
        }
        ips.sort_by_key(IpAddr::is_ipv6);
        if ips.is_empty() {
            return Err(bad(format!("it gives interface {ifname} no IP address")));
        }
        let (mut gateway, mut gateway6) = (None, None);
        let mut routes = Vec::new();
        for r in &raw.routes {
            let (dst, prefix) =
                cidr(&r.dst).ok_or_else(|| bad(format!("bad route destination {:?}", r.dst)))?;
            // A route of a family the pod has no address in has nothing to leave by.
            let family_gw = match dst {
                IpAddr::V4(_) if ipv4.is_some() => gw4.map(IpAddr::V4),
                IpAddr::V6(_) if !ipv6.is_empty() => gw6.map(IpAddr::V6),
                _ => continue,
            };
            let gw = match r.gw {
                Some(g) if g.is_ipv4() == dst.is_ipv4() => Some(g),
                Some(g) => return Err(bad(format!("route to {} via {g}: mixed families", r.dst))),
                None => family_gw,
            };
            match (prefix, gw) {
                (0, Some(IpAddr::V4(g))) => gateway = gateway.or(Some(g)),
                (0, Some(IpAddr::V6(g))) => gateway6 = gateway6.or(Some(g)),
                (0, None) => {}
                _ => routes.push(Route { dst, prefix, gw }),
            }
        }
        Ok(Self {
            ips,
            ipv4,
            ipv6,
            gateway,
            gateway6,
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
        assert_eq!(a.ipv4, Some((Ipv4Addr::new(10, 233, 7, 5), 24)));
        assert_eq!(a.ipv6, vec![("fd00:a3::5".parse().unwrap(), 64)]);
        assert_eq!(a.gateway6, Some("fd00:a3::1".parse().unwrap()));
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
                Route {
                    dst: "192.168.50.0".parse().unwrap(),
                    prefix: 24,
                    gw: Some("10.233.7.254".parse().unwrap())
                },
                Route {
                    dst: "172.30.0.0".parse().unwrap(),
                    prefix: 16,
                    gw: Some("10.233.7.1".parse().unwrap())
                },
            ]
        );
        assert_eq!(a.dns.nameservers, ["10.233.7.1"]);
        assert_eq!(a.dns.search, ["svc.local"]);
    }

    #[test]
    fn results_without_a_pod_address_or_malformed_ones_are_refused() {
        let v: Value = serde_json::from_str(BRIDGE).unwrap();
        // The interface asked for is not in the result.
        let e = PodAddresses::from_result(&v, "net1").unwrap_err();
        assert!(e.to_string().contains("no IP address"), "{e}");
        let v = serde_json::json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]});
        let e = PodAddresses::from_result(&v, "eth0").unwrap_err();
        assert!(e.to_string().contains("bad address"), "{e}");
        let v = serde_json::json!({"ips": "x"});
        assert!(PodAddresses::from_result(&v, "eth0").is_err());
        // A 0.3.1 result without interfaces: the addresses are the pod's.
        let v = serde_json::json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.9/16"}]});
        let a = PodAddresses::from_result(&v, "eth0").unwrap();
        assert_eq!(a.ipv4, Some((Ipv4Addr::new(10, 1, 0, 9), 16)));
        assert_eq!(a.gateway, None);
        // A route whose next hop is of the other family.
        let v = serde_json::json!({"ips": [{"address": "10.1.0.9/16"}], "routes": [{"dst": "10.2.0.0/16", "gw": "fd00::1"}]});
        let e = PodAddresses::from_result(&v, "eth0").unwrap_err();
        assert!(e.to_string().contains("mixed families"), "{e}");
    }

    #[test]
    fn an_ipv6_only_result_gives_the_pod_its_ipv6_address_gateway_and_routes() {
        let v = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"interface": 0, "address": "fd00:a3:7::9/64", "gateway": "fd00:a3:7::1"}],
            "routes": [{"dst": "::/0"}, {"dst": "fd00:beef::/48"}, {"dst": "0.0.0.0/0"}]
        });
        let a = PodAddresses::from_result(&v, "eth0").unwrap();
        assert_eq!(a.ipv4, None);
        assert_eq!(a.ipv6, vec![("fd00:a3:7::9".parse().unwrap(), 64)]);
        assert_eq!(a.gateway, None, "no IPv4 address: no IPv4 route");
        assert_eq!(a.gateway6, Some("fd00:a3:7::1".parse().unwrap()));
        assert_eq!(
            a.routes,
            vec![Route {
                dst: "fd00:beef::".parse().unwrap(),
                prefix: 48,
                gw: Some("fd00:a3:7::1".parse().unwrap())
            }]
        );
    }
}
