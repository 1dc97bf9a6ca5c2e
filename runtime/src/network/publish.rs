//! Published ports (`-p`, `-P`): Docker's forms parsed into [`PortMap`]s.
//!
//! Forms: `GUEST`, `HOST:GUEST`, `IP:HOST:GUEST`, `IP::GUEST`, each with `/tcp` or `/udp`,
//! and ranges (`8000-8002:80-82`, `80-82`). A missing host IP is 127.0.0.1 (unlike Docker's
//! 0.0.0.0: a box is not reachable from other machines unless asked); a missing or `0` host
//! port is a free one picked at create.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::NetError;

/// The longest range one `-p` may publish (each port is a listener in the box's monitor).
pub const MAX_RANGE: u16 = 1024;

/// TCP or UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

fn loopback() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

/// One published port: host address and port → guest port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Host address the listener binds (127.0.0.1 unless `-p IP:...` says otherwise).
    #[serde(default = "loopback")]
    pub host_ip: Ipv4Addr,
    /// Host port (0 until a free one is picked at create).
    pub host: u16,
    /// Guest port.
    pub guest: u16,
    /// Protocol.
    #[serde(default)]
    pub proto: Proto,
}

impl PortMap {
    /// A TCP port on host loopback.
    pub fn tcp(host: u16, guest: u16) -> Self {
        Self {
            host_ip: loopback(),
            host,
            guest,
            proto: Proto::Tcp,
        }
    }
}

impl std::fmt::Display for PortMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} -> {}:{}",
            self.guest,
            self.proto.as_str(),
            self.host_ip,
            self.host
        )
    }
}

/// Parses one `-p` in any of Docker's IPv4 forms; a range gives one map per port.
///
/// # Errors
/// [`NetError::Publish`] naming what is wrong.
pub fn parse_publish(spec: &str) -> Result<Vec<PortMap>, NetError> {
    let bad = |why: &str| NetError::Publish {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, "tcp")) => (p, Proto::Tcp),
        Some((p, "udp")) => (p, Proto::Udp),
        Some((_, "sctp")) => return Err(bad("sctp is not supported, only tcp and udp")),
        Some((_, other)) => {
            return Err(bad(&format!("unknown protocol {other:?}, use tcp or udp")))
        }
        None => (spec, Proto::Tcp),
    };
    if ports.starts_with('[') {
        return Err(bad(
            "IPv6 host addresses are not supported; bind an IPv4 address",
        ));
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, guest) = match parts.as_slice() {
        [guest] => (None, "", *guest),
        [host, guest] => (None, *host, *guest),
        [ip, host, guest] => (Some(*ip), *host, *guest),
        _ => return Err(bad("expected [IP:][HOST:]GUEST[/tcp|/udp]")),
    };
    let host_ip = match ip {
        None => loopback(),
        Some(ip) => ip
            .parse::<Ipv4Addr>()
            .map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?,
    };
    let guest = range(guest, "guest").map_err(|w| bad(&w))?;
    let host = if host.is_empty() {
        (0, 0)
    } else {
        range(host, "host").map_err(|w| bad(&w))?
    };
    if guest.0 == 0 {
        return Err(bad("guest port 0 is not a port"));
    }
    let len = guest.1 - guest.0;
    let host_len = host.1 - host.0;
    if host.0 != 0 && host_len != len {
        return Err(bad(
            "the host and guest ranges must have the same length (or leave HOST out for free ports)",
        ));
    }
    if len >= MAX_RANGE {
        return Err(bad(&format!("a range may hold at most {MAX_RANGE} ports")));
    }
    Ok((0..=len)
        .map(|i| PortMap {
            host_ip,
            host: if host.0 == 0 { 0 } else { host.0 + i },
            guest: guest.0 + i,
            proto,
        })
        .collect())
}

/// `-P`: every port the image `EXPOSE`s (`80/tcp`, `53/udp`) on a free host port.
///
/// # Errors
/// [`NetError::Publish`] for an entry that is not `PORT[/PROTO]`.
pub fn publish_exposed(exposed: &[String]) -> Result<Vec<PortMap>, NetError> {
    let mut out = Vec::new();
    for e in exposed {
        // EXPOSE may name a range too; each entry is a `-p GUEST[/proto]`.
        out.extend(parse_publish(e)?);
    }
    Ok(out)
}

/// `A` or `A-B` (A ≤ B), each 0..=65535.
fn range(s: &str, which: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{which} port {p:?} is not a number from 0 to 65535"))
    };
    match s.split_once('-') {
        None => port(s).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b || a == 0 {
                return Err(format!("{which} range {s:?} must run upwards from port 1"));
            }
            Ok((a, b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_default_to_loopback_tcp_and_a_free_port() {
        assert_eq!(parse_publish("8080:80").unwrap(), [PortMap::tcp(8080, 80)]);
        assert_eq!(parse_publish("80").unwrap(), [PortMap::tcp(0, 80)]);
        assert_eq!(parse_publish("0:80/tcp").unwrap(), [PortMap::tcp(0, 80)]);
    }

    #[test]
    fn host_ip_binds_udp_and_ranges_parse_like_docker() {
        let any = parse_publish("0.0.0.0:8080:80").unwrap();
        assert_eq!(any[0].host_ip, Ipv4Addr::UNSPECIFIED);
        let lo = parse_publish("127.0.0.1::53/udp").unwrap();
        assert_eq!(
            lo,
            [PortMap {
                host_ip: Ipv4Addr::LOCALHOST,
                host: 0,
                guest: 53,
                proto: Proto::Udp
            }]
        );
        let r = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter().map(|p| (p.host, p.guest)).collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
        assert_eq!(parse_publish("80-81").unwrap().len(), 2);
    }

    #[test]
    fn each_bad_form_is_refused_with_its_reason() {
        for (spec, needle) in [
            ("8080:80/sctp", "sctp"),
            ("8080:80/icmp", "unknown protocol"),
            ("[::1]:8080:80", "IPv6"),
            ("localhost:8080:80", "not an IPv4 address"),
            ("8000-8010:80", "same length"),
            ("82-80", "upwards"),
            ("8080:0", "guest port 0"),
            ("70000:80", "not a number"),
            ("a:b:c:d", "expected"),
            ("1-2000", "at most"),
        ] {
            let e = parse_publish(spec).unwrap_err().to_string();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn exposed_ports_publish_on_free_loopback_ports() {
        let p = publish_exposed(&["53/udp".into(), "80/tcp".into()]).unwrap();
        assert_eq!(p[0].proto, Proto::Udp);
        assert!(p.iter().all(|m| m.host == 0 && m.host_ip.is_loopback()));
    }
}
