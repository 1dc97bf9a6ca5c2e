//! Box networking (issue 9): the default `tsi` mode (QEMU user networking: outbound through the
//! host's stack, published TCP ports on host loopback) and `none` (no interface at all).
//!
//! A box's network settings live in `net.json` beside its record, so the box record format
//! stays untouched; boxes created before this module have no file and get the default.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The file beside a box's record.
pub const NET_FILE: &str = "net.json";
/// The guest's address on QEMU's user network.
pub const GUEST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// QEMU's user-network gateway.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// QEMU's user-network DNS forwarder.
pub const USER_DNS: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 3);

/// How a box is networked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetMode {
    /// User networking: outbound through the host, published ports.
    #[default]
    Tsi,
    /// No interface but loopback.
    None,
}

impl NetMode {
    /// Parses `--network`.
    ///
    /// # Errors
    /// [`NetError::Mode`] for anything but `tsi` or `none`.
    pub fn parse(s: &str) -> Result<Self, NetError> {
        match s {
            "tsi" | "default" => Ok(Self::Tsi),
            "none" => Ok(Self::None),
            other => Err(NetError::Mode(other.to_owned())),
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tsi => "tsi",
            Self::None => "none",
        }
    }
}

/// One published port: host loopback port → guest TCP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    /// Host port on 127.0.0.1 (0 until a free one is picked at create).
    pub host: u16,
    /// Guest port.
    pub guest: u16,
}

impl std::fmt::Display for PortMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/tcp -> 127.0.0.1:{}", self.guest, self.host)
    }
}

/// Parses one `-p HOST:GUEST[/tcp]`.
///
/// # Errors
/// [`NetError::Publish`] naming what is wrong: UDP, a host-IP bind, the shorthand `GUEST`,
/// a range, a port out of range or guest port 0.
pub fn parse_publish(spec: &str) -> Result<PortMap, NetError> {
    let bad = |why: &str| NetError::Publish {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    match proto {
        "tcp" => {}
        "udp" | "sctp" => return Err(bad(&format!("{proto} is not supported, only tcp"))),
        other => return Err(bad(&format!("unknown protocol {other:?}, only tcp"))),
    }
    let parts: Vec<&str> = ports.split(':').collect();
    let (host, guest) = match parts.as_slice() {
        [guest] if !guest.is_empty() => {
            return Err(bad(&format!(
                "the shorthand GUEST form is not supported; write HOST:GUEST (e.g. 0:{guest} for a free host port)"
            )))
        }
        [host, guest] => (*host, *guest),
        [_, _, _] => {
            return Err(bad(
                "binding a host IP is not supported; ports are published on 127.0.0.1 only, write HOST:GUEST",
            ))
        }
        _ => return Err(bad("expected HOST:GUEST[/tcp]")),
    };
    if host.contains('-') || guest.contains('-') {
        return Err(bad("port ranges are not supported; give one -p per port"));
    }
    let port = |s: &str, which: &str| {
        s.parse::<u16>().map_err(|_| {
            bad(&format!(
                "{which} port {s:?} is not a number from 0 to 65535"
            ))
        })
    };
    let host = port(host, "host")?;
    let guest = port(guest, "guest")?;
    if guest == 0 {
        return Err(bad("guest port 0 is not a port"));
    }
    Ok(PortMap { host, guest })
}

/// Parses `--dns IP`.
///
/// # Errors
/// [`NetError::Dns`] when it is not an IP address.
pub fn parse_dns(s: &str) -> Result<String, NetError> {
    s.parse::<std::net::IpAddr>()
        .map(|a| a.to_string())
        .map_err(|_| NetError::Dns(s.to_owned()))
}

/// A box's network settings (`net.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxNet {
    /// Mode.
    pub mode: NetMode,
    /// Published ports, host ports already resolved.
    #[serde(default)]
    pub ports: Vec<PortMap>,
    /// `--dns` servers (empty: QEMU's forwarder in `tsi`).
    #[serde(default)]
    pub dns: Vec<String>,
}

impl BoxNet {
    /// Checks the combination and picks free host ports for `0`; each host port must be free.
    ///
    /// # Errors
    /// Ports with `none`, a host port given twice, a port in use.
    pub fn resolve(mut self) -> Result<Self, NetError> {
        if self.mode == NetMode::None && !self.ports.is_empty() {
            return Err(NetError::PortsWithoutNetwork);
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.host != 0 && self.ports[..i].iter().any(|q| q.host == p.host) {
                return Err(NetError::DuplicateHostPort(p.host));
            }
        }
        // Hold every listener until all are chosen so two `0`s never get the same port.
        let mut held = Vec::new();
        for p in &mut self.ports {
            let l = bind(p.host)?;
            p.host = l.local_addr().map(|a| a.port()).unwrap_or(p.host);
            held.push(l);
        }
        Ok(self)
    }

    /// Checks, before boot, that every host port can still be bound.
    ///
    /// # Errors
    /// [`NetError::PortInUse`].
    pub fn check_free(&self) -> Result<(), NetError> {
        let held: Result<Vec<_>, _> = self.ports.iter().map(|p| bind(p.host)).collect();
        held.map(drop)
    }

    /// Nameservers for the guest's resolv.conf.
    pub fn nameservers(&self) -> Vec<String> {
        match (self.mode, self.dns.is_empty()) {
            (_, false) => self.dns.clone(),
            (NetMode::Tsi, true) => vec![USER_DNS.to_string()],
            (NetMode::None, true) => vec![],
        }
    }

    /// The kernel argument telling guest-init how to configure eth0 (none for `none`).
    pub fn kernel_arg(&self) -> Option<String> {
        (self.mode == NetMode::Tsi).then(|| format!("a3s.net={GUEST_ADDR}/24,{GATEWAY}"))
    }

    /// The VM's user-network device, if any.
    pub fn user_net(&self) -> Option<a3s_vmm::net::UserNet> {
        (self.mode == NetMode::Tsi).then(|| a3s_vmm::net::UserNet {
            forwards: self.ports.iter().map(|p| (p.host, p.guest)).collect(),
        })
    }

    /// Reads `net.json` from a box directory (the default when absent).
    ///
    /// # Errors
    /// i/o or a malformed file.
    pub fn load(dir: &Path) -> Result<Self, NetError> {
        let path = dir.join(NET_FILE);
        match fs_err::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|source| NetError::Malformed {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `net.json` atomically into a box directory.
    ///
    /// # Errors
    /// i/o.
    pub fn save(&self, dir: &Path) -> Result<(), NetError> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        a3s_vmm::assets::write_atomic(&dir.join(NET_FILE), &json)?;
        Ok(())
    }
}

fn bind(port: u16) -> Result<TcpListener, NetError> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(|source| NetError::PortInUse { port, source })
}

/// What the host supports, for `a3s-box info`.
#[derive(Clone, Debug, Serialize)]
pub struct HostSupport {
    /// User networking (always: built into QEMU).
    pub tsi: bool,
    /// The bridge module or sysfs class is present.
    pub bridge: bool,
    /// `/dev/net/tun` exists.
    pub tun: bool,
    /// `nft` is on PATH.
    pub nftables: bool,
    /// Running as root (needed for bridge networks).
    pub root: bool,
}

impl HostSupport {
    /// Probes this host (file checks only, no changes).
    pub fn probe() -> Self {
        let on_path = |b: &str| {
            std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()))
        };
        let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
        Self {
            tsi: true,
            bridge: Path::new("/sys/module/bridge").exists()
                || modules.lines().any(|l| l.starts_with("bridge ")),
            tun: Path::new("/dev/net/tun").exists(),
            nftables: on_path("nft"),
            root: nix::unistd::geteuid().is_root(),
        }
    }
}

/// A network setting was rejected or could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Unknown `--network`.
    #[error("--network {0:?} is not a network mode")]
    Mode(String),
    /// A bad `-p`.
    #[error("-p {spec:?}: {why}")]
    Publish {
        /// What was given.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A bad `--dns`.
    #[error("--dns {0:?} is not an IP address")]
    Dns(String),
    /// `-p` with `--network none`.
    #[error("-p cannot be used with --network none (the box has no interface)")]
    PortsWithoutNetwork,
    /// The same host port twice.
    #[error("host port {0} is published twice")]
    DuplicateHostPort(u16),
    /// The host port cannot be bound.
    #[error("host port 127.0.0.1:{port} is not available")]
    PortInUse {
        /// The port.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `net.json` is not valid.
    #[error("{path} is malformed")]
    Malformed {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// File i/o.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl NetError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Mode(_) => Some("use --network tsi (the default) or --network none".into()),
            Self::Publish { .. } => {
                Some("publish TCP ports as -p HOST:GUEST, e.g. -p 8080:80 (HOST 0 picks a free port)".into())
            }
            Self::PortInUse { port, .. } => Some(format!(
                "stop whatever listens on 127.0.0.1:{port} or pick another host port (0 picks a free one)"
            )),
            Self::PortsWithoutNetwork => Some("drop -p, or drop --network none".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
