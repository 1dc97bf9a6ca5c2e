//! Box networking (issue 9): the default `tsi` mode (QEMU user networking: outbound through the
//! host's stack, published TCP ports on host loopback), `none` (no interface at all) and
//! `bridge` (`--network NAME`: a user-defined network, see [`store`], [`bridge`], [`policy`]).
//!
//! A box's network settings live in `net.json` beside its record, so the box record format
//! stays untouched; boxes created before this module have no file and get the default.

pub mod attach;
pub mod bridge;
pub mod cni;
pub mod dns;
pub mod forward;
pub mod inbound;
pub mod ipam;
pub mod netns;
pub mod pod_link;
pub mod policy;
pub mod publish;
pub mod store;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use policy::{Isolation, Policy, PolicyError};
pub use publish::{parse_publish, publish_exposed, PortMap, Proto};
pub use store::{CreateNetwork, Network, Networks};

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
    /// A user-defined bridge network ([`BoxNet::network`]).
    Bridge,
    /// A Kubernetes pod's CNI network ([`BoxNet::pod`]): set up by the engine, never asked
    /// for with `--network`.
    Pod,
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
            Self::Bridge => "bridge",
            Self::Pod => "pod",
        }
    }
}

/// Parses `--network`: `tsi`, `none`, or the name of a user-defined network.
///
/// # Errors
/// [`NetError::BadNetworkName`] for something that is neither.
pub fn parse_network(s: &str) -> Result<(NetMode, Option<String>), NetError> {
    match NetMode::parse(s) {
        Ok(m) => Ok((m, None)),
        Err(_) => {
            store::check_network_name(s)?;
            Ok((NetMode::Bridge, Some(s.to_owned())))
        }
    }
}

/// Checks `--hostname` (RFC 1123: dot-separated labels of letters, digits and inner hyphens,
/// each at most 63 characters, 253 in all).
///
/// # Errors
/// [`NetError::Hostname`] naming what is wrong.
pub fn check_hostname(h: &str) -> Result<(), NetError> {
    let bad = |why: &str| NetError::Hostname {
        given: h.to_owned(),
        why: why.to_owned(),
    };
    if h.is_empty() || h.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each dot-separated label must be 1 to 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label cannot start or end with '-'"));
        }
    }
    Ok(())
}

/// Checks one `--add-host NAME:IP`.
///
/// # Errors
/// [`NetError::AddHost`].
pub fn parse_add_host(spec: &str) -> Result<(String, String), NetError> {
    let bad = |why: String| NetError::AddHost {
        given: spec.to_owned(),
        why,
    };
    let (name, addr) = spec
        .split_once(':')
        .ok_or_else(|| bad("expected NAME:IP".into()))?;
    check_hostname(name).map_err(|e| bad(e.to_string()))?;
    let ip: std::net::IpAddr = addr
        .parse()
        .map_err(|_| bad(format!("{addr:?} is not an IP address")))?;
    Ok((name.to_owned(), ip.to_string()))
}

/// Where a bridged box plugs in, fixed when it is prepared for boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The network's bridge device.
    pub bridge: String,
    /// The box's TAP device.
    pub tap: String,
    /// The guest's MAC address.
    pub mac: String,
    /// Prefix length of the subnet.
    pub prefix: u8,
    /// Default gateway.
    pub gateway: Ipv4Addr,
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
    /// The user-defined network (`bridge` mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The box's stable address there (allocated at create or connect; `--ip` asks for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// `--network-alias`: more names the network's DNS answers with this box's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The box's hostname, for the network's DNS (set at create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Filled in by [`BoxNet::linked`] for the boot plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
    /// The bridge networks the box joined after its first (`network connect`, a compose
    /// service listing several networks): one more NIC each. Absent in older files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<Attachment>,
    /// `pod` mode: the NIC joined to the pod's CNI interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<pod_link::PodNic>,
    /// resolv.conf `search` domains (a pod's DNS config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// resolv.conf `options` (a pod's DNS config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
}

/// A bridge network a box is on: [`BoxNet`]'s first one ([`BoxNet::network`], [`BoxNet::ip`],
/// [`BoxNet::aliases`]) or one of [`BoxNet::extra`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The network's name.
    pub network: String,
    /// The box's address there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    /// More names that network's DNS answers with this address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Filled in by [`BoxNet::linked`] for the boot plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<Link>,
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
        if self.mode != NetMode::Bridge && (self.ip.is_some() || !self.aliases.is_empty()) {
            return Err(NetError::BridgeOnly);
        }
        for a in &self.aliases {
            check_hostname(a).map_err(|_| NetError::Alias(a.clone()))?;
        }
        for (i, p) in self.ports.iter().enumerate() {
            if p.host != 0
                && self.ports[..i]
                    .iter()
                    .any(|q| q.host == p.host && q.proto == p.proto && q.host_ip == p.host_ip)
            {
                return Err(NetError::DuplicateHostPort(p.host));
            }
        }
        // Hold every socket until all are chosen so two `0`s never get the same port.
        let mut held = Vec::new();
        for p in &mut self.ports {
            let (port, socket) = bind(p)?;
            p.host = port;
            held.push(socket);
        }
        Ok(self)
    }

    /// Checks, before boot, that every host port can still be bound.
    ///
    /// # Errors
    /// [`NetError::PortInUse`].
    pub fn check_free(&self) -> Result<(), NetError> {
        let held: Result<Vec<_>, _> = self.ports.iter().map(bind).collect();
        held.map(drop)
    }

    /// Every bridge network the box is on, its first one first (empty in other modes).
    pub fn attachments(&self) -> Vec<Attachment> {
        let Some(first) = self
            .network
            .as_ref()
            .filter(|_| self.mode == NetMode::Bridge)
        else {
            return Vec::new();
        };
        std::iter::once(Attachment {
            network: first.clone(),
            ip: self.ip,
            aliases: self.aliases.clone(),
            link: self.link.clone(),
        })
        .chain(self.extra.iter().cloned())
        .collect()
    }

    /// Whether the box is on bridge network `name`.
    pub fn is_on(&self, name: &str) -> bool {
        self.attachments().iter().any(|a| a.network == name)
    }

    /// Replaces the box's networks with `all` (its first one first; none: `none` mode).
    pub fn set_attachments(&mut self, all: Vec<Attachment>) {
        let mut all = all.into_iter();
        match all.next() {
            Some(first) => {
                self.mode = NetMode::Bridge;
                self.network = Some(first.network);
                self.ip = first.ip;
                self.aliases = first.aliases;
                self.link = first.link;
            }
            None => {
                self.mode = NetMode::None;
                self.network = None;
                self.ip = None;
                self.aliases = Vec::new();
                self.link = None;
            }
        }
        self.extra = all.collect();
    }

    /// The guest's bridge NICs for `Start`'s setup (a box needs [`BoxNet::linked`] first): by
    /// MAC address, the default route via the first network.
    pub fn guest_nics(&self) -> Vec<a3s_vmm::proto::GuestNic> {
        if let (NetMode::Pod, Some(p)) = (self.mode, &self.pod) {
            return vec![p.guest_nic()];
        }
        self.attachments()
            .iter()
            .enumerate()
            .filter_map(|(i, a)| {
                let l = a.link.as_ref()?;
                Some(a3s_vmm::proto::GuestNic {
                    mac: l.mac.clone(),
                    addrs: vec![a3s_vmm::proto::GuestAddr {
                        addr: std::net::IpAddr::V4(a.ip?),
                        prefix: l.prefix,
                    }],
                    gateways: (i == 0)
                        .then_some(std::net::IpAddr::V4(l.gateway))
                        .into_iter()
                        .collect(),
                    routes: Vec::new(),
                })
            })
            .collect()
    }

    /// Nameservers for the guest's resolv.conf.
    pub fn nameservers(&self) -> Vec<String> {
        match (self.mode, self.dns.is_empty()) {
            (_, false) => self.dns.clone(),
            (NetMode::Tsi, true) => vec![USER_DNS.to_string()],
            (NetMode::None | NetMode::Pod, true) => vec![],
            // The network's DNS server on the gateway (see [`dns`]); filled in at plug.
            (NetMode::Bridge, true) => self.link.iter().map(|l| l.gateway.to_string()).collect(),
        }
    }

    /// The kernel argument telling guest-init how to configure eth0: user networking's fixed
    /// address only. Bridge NICs come in `Start`'s setup ([`BoxNet::guest_nics`]), so the
    /// measured command line does not depend on the addresses a host hands out.
    pub fn kernel_arg(&self) -> Option<String> {
        (self.mode == NetMode::Tsi).then(|| format!("a3s.net={GUEST_ADDR}/24,{GATEWAY}"))
    }

    /// The VM's user-network device, if any.
    pub fn user_net(&self) -> Option<a3s_vmm::net::UserNet> {
        (self.mode == NetMode::Tsi).then(|| a3s_vmm::net::UserNet {
            forwards: self
                .ports
                .iter()
                .map(|p| a3s_vmm::net::HostFwd {
                    udp: p.proto == Proto::Udp,
                    host_ip: p.host_ip,
                    host: p.host,
                    guest: p.guest,
                })
                .collect(),
            forwarder: None,
            inbound: None,
            inbound_refused: None,
        })
    }

    /// The VM's NICs, if any: one TAP per bridge network (a bridged box needs
    /// [`BoxNet::linked`] first).
    pub fn nic(&self) -> Option<a3s_vmm::net::Nic> {
        match self.mode {
            NetMode::Tsi => self.user_net().map(a3s_vmm::net::Nic::User),
            NetMode::Bridge => {
                let taps: Vec<a3s_vmm::net::TapNet> = self
                    .attachments()
                    .iter()
                    .filter_map(|a| a.link.as_ref())
                    .map(|l| a3s_vmm::net::TapNet {
                        ifname: l.tap.clone(),
                        mac: l.mac.clone(),
                    })
                    .collect();
                (!taps.is_empty()).then_some(a3s_vmm::net::Nic::Taps(taps))
            }
            NetMode::Pod => self.pod.as_ref().map(|p| a3s_vmm::net::Nic::Pod(p.tap())),
            NetMode::None => None,
        }
    }

    /// For boot: a bridged box's link (its network must exist and still hold its address, and
    /// the host must be able to build the bridge); other modes as they are.
    ///
    /// # Errors
    /// A missing network or endpoint, or a host without bridge support.
    pub fn linked(
        mut self,
        home: &crate::A3sHome,
        id: &crate::state::BoxId,
    ) -> Result<Self, NetError> {
        if self.mode != NetMode::Bridge {
            return Ok(self);
        }
        if self.network.is_none() {
            return Err(NetError::NotAttached);
        }
        let nets = Networks::open(home);
        let support = HostSupport::probe();
        let mut linked = Vec::new();
        for mut a in self.attachments() {
            let n = nets.get(&a.network)?;
            support.check_bridge(&n)?;
            let ip = n
                .endpoints
                .get(id.as_str())
                .map(|e| e.ip)
                .filter(|ip| Some(*ip) == a.ip)
                .ok_or_else(|| NetError::LostEndpoint(a.network.clone()))?;
            a.ip = Some(ip);
            a.link = Some(Link {
                bridge: n.bridge(),
                tap: store::tap_name(id, &n),
                mac: store::mac_address(id, &n),
                prefix: n.subnet.prefix(),
                gateway: n.gateway,
            });
            linked.push(a);
        }
        self.set_attachments(linked);
        Ok(self)
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

/// A socket held on a published port while ports are chosen (never read: holding it is
/// the point).
#[allow(dead_code)]
enum Held {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// Binds `p`'s host side; returns the port (the picked one for `0`).
fn bind(p: &PortMap) -> Result<(u16, Held), NetError> {
    let at = SocketAddrV4::new(p.host_ip, p.host);
    let err = |source| NetError::PortInUse {
        addr: format!("{}:{}/{}", p.host_ip, p.host, p.proto.as_str()),
        source,
    };
    let (addr, held) = match p.proto {
        Proto::Tcp => {
            let l = TcpListener::bind(at).map_err(err)?;
            (l.local_addr(), Held::Tcp(l))
        }
        Proto::Udp => {
            let s = UdpSocket::bind(at).map_err(err)?;
            (s.local_addr(), Held::Udp(s))
        }
    };
    Ok((addr.map(|a| a.port()).unwrap_or(p.host), held))
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
    /// CAP_NET_ADMIN in the effective set: what bridge networks need (root has it unless it was
    /// dropped).
    pub net_admin: bool,
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
            net_admin: a3s_vmm::host::has_net_admin(),
        }
    }

    /// Whether bridge networks can be used here.
    pub fn bridge_ok(&self) -> bool {
        self.net_admin && self.bridge && self.tun
    }

    /// Whether a `tsi` box's published ports can come in over its private link
    /// ([`inbound`]; otherwise its forwarder holds them).
    pub fn inbound_link_ok(&self) -> bool {
        self.net_admin && self.tun
    }

    /// Checks, before boot, that this host can build network `n`'s bridge.
    ///
    /// # Errors
    /// [`NetError::Unprivileged`], [`NetError::NoBridgeSupport`], [`NetError::NoNftables`].
    pub fn check_bridge(&self, n: &Network) -> Result<(), NetError> {
        // Root without CAP_NET_ADMIN (a container, a dropped capability) cannot either.
        if !self.net_admin {
            return Err(NetError::Unprivileged(n.name.clone()));
        }
        if !self.bridge || !self.tun {
            return Err(NetError::NoBridgeSupport {
                network: n.name.clone(),
                missing: if self.tun {
                    "the kernel bridge module (/sys/module/bridge)"
                } else {
                    "/dev/net/tun"
                }
                .into(),
            });
        }
        if n.isolation != Isolation::None && !self.nftables {
            return Err(NetError::NoNftables(n.name.clone()));
        }
        Ok(())
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
    /// A bad `A3S_BOX_PUBLISH`.
    #[error("A3S_BOX_PUBLISH={0:?} is not a way to publish ports")]
    PublishEnv(String),
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
    #[error("host port {addr} is not available")]
    PortInUse {
        /// Address, port and protocol.
        addr: String,
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
    /// `--ip` or `--network-alias` without a bridge network.
    #[error("--ip and --network-alias need a bridge network (--network NAME)")]
    BridgeOnly,
    /// A bad `--network-alias`.
    #[error("--network-alias {0:?} is not a valid host name")]
    Alias(String),
    /// `--ip` outside the subnet or taken.
    #[error("--ip {ip}: {why}")]
    Ip {
        /// Asked for.
        ip: Ipv4Addr,
        /// What is wrong.
        why: String,
    },
    /// A bad `--hostname`.
    #[error("--hostname {given:?}: {why}")]
    Hostname {
        /// As given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// A bad `--add-host`.
    #[error("--add-host {given:?}: {why}")]
    AddHost {
        /// As given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// A bad network name.
    #[error("{0:?} is not a usable network name")]
    BadNetworkName(String),
    /// No such network.
    #[error("network {0} does not exist")]
    NoSuchNetwork(String),
    /// The name is taken.
    #[error("network {0} already exists")]
    NetworkExists(String),
    /// A bad `--subnet`.
    #[error("--subnet {given}: {why}")]
    Subnet {
        /// As given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// The subnet overlaps another network's.
    #[error("--subnet {subnet} overlaps network {other} ({other_subnet})")]
    Overlap {
        /// Asked for.
        subnet: String,
        /// The other network.
        other: String,
        /// Its subnet.
        other_subnet: String,
    },
    /// No free default subnet.
    #[error("no free /24 is left in 10.88.0.0/16 for a default subnet")]
    PoolExhausted,
    /// A bad `--gateway`.
    #[error("--gateway {given} {why}")]
    Gateway {
        /// As given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// `--isolation custom` without a policy.
    #[error("--isolation custom needs --policy FILE")]
    CustomWithoutPolicy,
    /// A policy without `custom`.
    #[error("--policy is only used with --isolation custom")]
    PolicyWithoutCustom,
    /// The policy file.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// No address left.
    #[error("network {network} ({subnet}) has no free address left")]
    SubnetFull {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: String,
    },
    /// `network rm` with boxes attached.
    #[error("network {network} has boxes attached: {}", boxes.join(", "))]
    InUse {
        /// The network.
        network: String,
        /// Their names.
        boxes: Vec<String>,
    },
    /// `network connect`/`disconnect` of a running box.
    #[error("box {0} is running: network changes apply at the next boot, so stop it first")]
    BoxRunning(String),
    /// `network disconnect` of a box not on that network.
    #[error("box {name} is not connected to network {network}")]
    NotConnected {
        /// The box.
        name: String,
        /// The network.
        network: String,
    },
    /// A bridge-mode `net.json` without a network.
    #[error("the box is in bridge mode but names no network")]
    NotAttached,
    /// The network no longer lists the box.
    #[error("network {0} no longer holds this box's address")]
    LostEndpoint(String),
    /// Neither root nor CAP_NET_ADMIN.
    #[error("network {0} needs a bridge and TAP devices, which need CAP_NET_ADMIN (this process lacks it: not root, or the capability was dropped)")]
    Unprivileged(String),
    /// The kernel cannot.
    #[error("network {network} cannot be built on this host: {missing} is missing")]
    NoBridgeSupport {
        /// The network.
        network: String,
        /// What is missing.
        missing: String,
    },
    /// Isolation without nft.
    #[error("network {0} has isolation rules, which need nftables (`nft`), not found on PATH")]
    NoNftables(String),
    /// An `ip`/`nft` command failed.
    #[error("{command} failed: {message}")]
    Host {
        /// The command line.
        command: String,
        /// Its stderr.
        message: String,
    },
    /// File i/o.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl NetError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Mode(_) => Some(
                "use --network tsi (the default), --network none, or a network from `a3s-box network ls`".into(),
            ),
            Self::Publish { .. } => {
                Some("publish ports as -p [IP:][HOST:]GUEST[/tcp|/udp], e.g. -p 8080:80 or -p 0.0.0.0:5353:53/udp (no HOST: a free port)".into())
            }
            Self::PortInUse { addr, .. } => Some(format!(
                "stop whatever listens on {addr} or pick another host port (0 picks a free one)"
            )),
            Self::PortsWithoutNetwork => Some("drop -p, or drop --network none".into()),
            Self::PublishEnv(_) => Some(format!(
                "set {}=link (the default: a private link to the box) or =forwarder (passt or slirp holds the ports), or unset it",
                inbound::PUBLISH_ENV
            )),
            Self::BadNetworkName(_) => Some(
                "use --network tsi, --network none, or the name of a network from `a3s-box network ls` (names: letters, digits, _ . -)".into(),
            ),
            Self::NoSuchNetwork(n) => Some(format!(
                "create it with `a3s-box network create {n}`, or list networks with `a3s-box network ls`"
            )),
            Self::BridgeOnly => Some("add --network NAME (`a3s-box network create NAME` first)".into()),
            Self::Ip { .. } => Some("pick a free address inside the network's subnet (`a3s-box network inspect NET`)".into()),
            Self::Overlap { .. } | Self::PoolExhausted => Some(
                "pick a free --subnet, or remove an unused network with `a3s-box network rm`".into(),
            ),
            Self::Subnet { .. } => Some("give the subnet as ADDR/PREFIX, e.g. --subnet 10.89.0.0/24".into()),
            Self::InUse { network, .. } => Some(format!(
                "disconnect or remove those boxes, or `a3s-box network rm --force {network}` detaches them"
            )),
            Self::BoxRunning(b) => Some(format!("`a3s-box stop {b}`, then retry")),
            Self::LostEndpoint(n) => Some(format!(
                "reconnect it: `a3s-box network disconnect {n} BOX && a3s-box network connect {n} BOX`"
            )),
            Self::Unprivileged(_) => Some(
                "run as root (or grant CAP_NET_ADMIN), or use --network tsi (needs no privileges)".into(),
            ),
            Self::NoBridgeSupport { .. } => Some(
                "load the bridge and tun modules (`modprobe bridge tun`), or use --network tsi".into(),
            ),
            Self::NoNftables(_) => Some("install nftables (`apt-get install nftables`), or use --isolation none".into()),
            Self::Policy(_) => Some(
                "a policy is TOML or JSON: default = \"allow\"|\"deny\" and [[rules]] with from, to, ports, protocol, action".into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
