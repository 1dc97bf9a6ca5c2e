//! User-defined bridge networks and their address allocations.
//!
//! ```text
//! networks/.lock          held for every read-modify-write of any network (and for bridge
//!                         set-up), so concurrent `run`s never get the same address
//! networks/<name>.json    Network (atomic writes)
//! ```
//!
//! A box attached to a network has an endpoint there (box id → name, address) and its
//! `net.json` says `bridge` with the network name and the address. The endpoint outlives
//! restarts, so a box keeps its address; it is freed by `network disconnect`, by removing the
//! box, or, for a box removed by other means, the next time the network is written (an
//! endpoint whose box directory is gone is garbage).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ipam::{self, Subnet};
use super::policy::{Isolation, Member, Policy};
use super::{BoxNet, NetError};
use crate::home::A3sHome;
use crate::state::{self, BoxId, Lock};

/// Version of the network file layout.
pub const NETWORK_VERSION: u32 = 1;

/// Names `--network` gives other meanings to.
pub const RESERVED: &[&str] = &["tsi", "none", "default", "host", "bridge"];

/// One box's place on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Box name (for `/etc/hosts` and policy rules).
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// `--network-alias` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Its `--hostname`, when it differs from the name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

impl Endpoint {
    /// Whether DNS name `q` (no trailing dot, any case) names this endpoint.
    pub fn answers_to(&self, q: &str) -> bool {
        std::iter::once(&self.name)
            .chain(&self.aliases)
            .chain(&self.hostname)
            .any(|n| n.eq_ignore_ascii_case(q))
    }
}

/// What a box brings when it joins a network.
#[derive(Clone, Debug, Default)]
pub struct Join {
    /// Its name.
    pub name: String,
    /// `--network-alias` names.
    pub aliases: Vec<String>,
    /// Its hostname.
    pub hostname: Option<String>,
    /// `--ip`: the address it asks for.
    pub ip: Option<Ipv4Addr>,
}

/// A user-defined bridge network (`networks/<name>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Layout version.
    pub version: u32,
    /// Name.
    pub name: String,
    /// Random id (16 hex digits); the bridge and nft table names derive from it.
    pub id: String,
    /// Subnet.
    pub subnet: Subnet,
    /// The host's address on the bridge, the boxes' default route.
    pub gateway: Ipv4Addr,
    /// Isolation mode.
    pub isolation: Isolation,
    /// The `custom` policy (validated, copied from the file at create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Box id → endpoint.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl Network {
    /// The Linux bridge device (`a3s-br-` + 8 hex digits: 15 characters, the kernel's limit).
    pub fn bridge(&self) -> String {
        format!("a3s-br-{}", &self.id[..8])
    }

    /// The bridge's own MAC address, fixed: a bridge without one takes the lowest MAC of its
    /// ports, so it (the boxes' gateway) would change whenever a box joins or leaves, and the
    /// running boxes' ARP entries would point nowhere until they expire.
    pub fn bridge_mac(&self) -> String {
        let h = &self.id;
        format!("02:a4:{}:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6], &h[6..8])
    }

    /// The nft table name (same in the `bridge` and `ip` families).
    pub fn table(&self) -> String {
        format!("a3s-{}", &self.id[..8])
    }

    /// The members as the isolation rules see them.
    pub fn members(&self) -> Vec<Member> {
        self.endpoints
            .iter()
            .filter_map(|(id, e)| {
                Some(Member {
                    name: e.name.clone(),
                    ip: e.ip,
                    tap: tap_name(&id.parse().ok()?, self),
                })
            })
            .collect()
    }
}

/// 8 hex digits naming box `id` on network `n`: a box on several networks has one TAP and
/// one MAC address per network, and each network's rules name its own TAPs.
fn link_tag(id: &BoxId, n: &Network) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(format!("{}/{}", id.as_str(), n.id).as_bytes());
    hex::encode(&d[..4])
}

/// Box `id`'s TAP device on network `n` (`a3s-tp-` + 8 hex digits: 15 characters, the
/// kernel's limit).
pub fn tap_name(id: &BoxId, n: &Network) -> String {
    format!("a3s-tp-{}", link_tag(id, n))
}

/// Box `id`'s stable, locally administered MAC address on network `n`.
pub fn mac_address(id: &BoxId, n: &Network) -> String {
    let h = link_tag(id, n);
    format!("02:a3:{}:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6], &h[6..8])
}

/// What `network create` asks for.
#[derive(Clone, Debug, Default)]
pub struct CreateNetwork {
    /// Name.
    pub name: String,
    /// `--subnet` (a free /24 of 10.88.0.0/16 when absent).
    pub subnet: Option<String>,
    /// `--gateway` (the subnet's first address when absent).
    pub gateway: Option<String>,
    /// `--isolation`.
    pub isolation: Isolation,
    /// `--policy` (validated).
    pub policy: Option<Policy>,
}

/// The networks of one A3S home.
#[derive(Clone, Debug)]
pub struct Networks {
    home: A3sHome,
    dir: PathBuf,
}

/// Checks a network name.
///
/// # Errors
/// [`NetError::BadNetworkName`].
pub fn check_network_name(name: &str) -> Result<(), NetError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64
        && !RESERVED.contains(&name);
    if ok {
        Ok(())
    } else {
        Err(NetError::BadNetworkName(name.to_owned()))
    }
}

impl Networks {
    /// The networks of `home`.
    pub fn open(home: &A3sHome) -> Self {
        Self {
            home: home.clone(),
            dir: home.root().join("networks"),
        }
    }

    /// Takes the networks lock (exclusive, across processes).
    ///
    /// # Errors
    /// i/o.
    pub fn lock(&self) -> Result<Lock, NetError> {
        state::lock_file(&self.dir.join(".lock"))
            .map_err(|e| NetError::Io(std::io::Error::other(e.to_string())))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn read(&self, name: &str) -> Result<Network, NetError> {
        check_network_name(name).map_err(|_| NetError::NoSuchNetwork(name.to_owned()))?;
        let path = self.path(name);
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(NetError::NoSuchNetwork(name.to_owned()))
            }
            Err(e) => return Err(e.into()),
        };
        let n: Network = serde_json::from_slice(&bytes)
            .map_err(|source| NetError::Malformed { path, source })?;
        if n.version != NETWORK_VERSION {
            return Err(NetError::Io(std::io::Error::other(format!(
                "network {name} has layout version {} (this a3s-box reads {NETWORK_VERSION})",
                n.version
            ))));
        }
        Ok(n)
    }

    fn write(&self, n: &Network) -> Result<(), NetError> {
        let json = serde_json::to_vec_pretty(n).map_err(std::io::Error::other)?;
        a3s_vmm::assets::write_atomic(&self.path(&n.name), &json)?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<Network>, NetError> {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let f = e.file_name().to_string_lossy().into_owned();
            if let Some(name) = f.strip_suffix(".json") {
                if check_network_name(name).is_ok() {
                    out.push(self.read(name)?);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Drops endpoints whose box is gone; returns whether any were.
    fn collect_garbage(&self, n: &mut Network) -> bool {
        let boxes = self.home.root().join("boxes");
        let before = n.endpoints.len();
        n.endpoints.retain(|id, _| boxes.join(id).is_dir());
        n.endpoints.len() != before
    }

    /// Creates a network.
    ///
    /// # Errors
    /// A bad or taken name, a bad or overlapping subnet, a gateway outside it, a policy without
    /// `custom` or `custom` without a policy.
    pub fn create(&self, req: &CreateNetwork) -> Result<Network, NetError> {
        check_network_name(&req.name)?;
        match (req.isolation, &req.policy) {
            (Isolation::Custom, None) => return Err(NetError::CustomWithoutPolicy),
            (i, Some(_)) if i != Isolation::Custom => return Err(NetError::PolicyWithoutCustom),
            _ => {}
        }
        let _lock = self.lock()?;
        let existing = self.all()?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(NetError::NetworkExists(req.name.clone()));
        }
        let used: Vec<Subnet> = existing.iter().map(|n| n.subnet).collect();
        let subnet = match &req.subnet {
            Some(s) => {
                let s: Subnet = s.parse().map_err(|why| NetError::Subnet {
                    given: s.clone(),
                    why,
                })?;
                if let Some(o) = existing.iter().find(|n| n.subnet.overlaps(&s)) {
                    return Err(NetError::Overlap {
                        subnet: s.to_string(),
                        other: o.name.clone(),
                        other_subnet: o.subnet.to_string(),
                    });
                }
                s
            }
            None => {
                let mut avoid = used;
                avoid.extend(host_routes());
                ipam::default_subnet(&avoid).ok_or(NetError::PoolExhausted)?
            }
        };
        let gateway = match &req.gateway {
            Some(g) => {
                let a: Ipv4Addr = g.parse().map_err(|_| NetError::Gateway {
                    given: g.clone(),
                    why: "is not an IPv4 address".into(),
                })?;
                if !subnet.is_host(a) {
                    return Err(NetError::Gateway {
                        given: g.clone(),
                        why: format!("is not a host address of {subnet}"),
                    });
                }
                a
            }
            None => subnet.first_host(),
        };
        let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
        let n = Network {
            version: NETWORK_VERSION,
            name: req.name.clone(),
            id,
            subnet,
            gateway,
            isolation: req.isolation,
            policy: req.policy.clone(),
            created_at: state::now_rfc3339(),
            endpoints: BTreeMap::new(),
        };
        self.write(&n)?;
        Ok(n)
    }

    /// Every network, by name (stale endpoints dropped).
    ///
    /// # Errors
    /// i/o or a malformed file.
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        let _lock = self.lock()?;
        let mut all = self.all()?;
        for n in &mut all {
            if self.collect_garbage(n) {
                self.write(n)?;
            }
        }
        Ok(all)
    }

    /// One network (stale endpoints dropped).
    ///
    /// # Errors
    /// [`NetError::NoSuchNetwork`].
    pub fn get(&self, name: &str) -> Result<Network, NetError> {
        let _lock = self.lock()?;
        self.get_locked(name)
    }

    /// [`Networks::get`] for a caller that holds [`Networks::lock`].
    ///
    /// # Errors
    /// [`NetError::NoSuchNetwork`].
    pub fn get_locked(&self, name: &str) -> Result<Network, NetError> {
        let mut n = self.read(name)?;
        if self.collect_garbage(&mut n) {
            self.write(&n)?;
        }
        Ok(n)
    }

    /// Gives box `id` an address on `name` (its existing one if it has one). The box's
    /// directory must exist already, or the endpoint would look like garbage.
    ///
    /// # Errors
    /// [`NetError::NoSuchNetwork`], [`NetError::SubnetFull`].
    pub fn attach(&self, name: &str, id: &BoxId, join: &Join) -> Result<Ipv4Addr, NetError> {
        let _lock = self.lock()?;
        let mut n = self.read(name)?;
        self.collect_garbage(&mut n);
        let hostname = join.hostname.clone().filter(|h| *h != join.name);
        if let Some(e) = n.endpoints.get_mut(id.as_str()) {
            e.name.clone_from(&join.name);
            e.aliases.clone_from(&join.aliases);
            e.hostname = hostname;
            let ip = e.ip;
            self.write(&n)?;
            return Ok(ip);
        }
        let mut taken: BTreeSet<Ipv4Addr> = n.endpoints.values().map(|e| e.ip).collect();
        taken.insert(n.gateway);
        let ip = match join.ip {
            Some(ip) if !n.subnet.is_host(ip) => {
                return Err(NetError::Ip {
                    ip,
                    why: format!("not a host address of {} ({})", n.name, n.subnet),
                })
            }
            Some(ip) if taken.contains(&ip) => {
                return Err(NetError::Ip {
                    ip,
                    why: format!("already in use on {}", n.name),
                })
            }
            Some(ip) => ip,
            None => n
                .subnet
                .allocate(&taken)
                .ok_or_else(|| NetError::SubnetFull {
                    network: n.name.clone(),
                    subnet: n.subnet.to_string(),
                })?,
        };
        n.endpoints.insert(
            id.as_str().to_owned(),
            Endpoint {
                name: join.name.clone(),
                ip,
                aliases: join.aliases.clone(),
                hostname,
            },
        );
        self.write(&n)?;
        super::bridge::refresh_if_present(&n)?;
        Ok(ip)
    }

    /// Frees box `id`'s address on `name` (nothing when it has none or the network is gone).
    ///
    /// # Errors
    /// i/o.
    pub fn detach(&self, name: &str, id: &BoxId) -> Result<(), NetError> {
        let _lock = self.lock()?;
        let mut n = match self.read(name) {
            Ok(n) => n,
            Err(NetError::NoSuchNetwork(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let removed = n.endpoints.remove(id.as_str()).is_some();
        if removed | self.collect_garbage(&mut n) {
            self.write(&n)?;
            super::bridge::refresh_if_present(&n)?;
        }
        Ok(())
    }

    /// Removes a network: refused while boxes are attached unless `force`, which detaches
    /// them (their `net.json` becomes `none`; a running one loses its link now). Tears down the
    /// bridge and its nft tables when present. Returns the network as it was.
    ///
    /// # Errors
    /// [`NetError::InUse`] without `force`.
    pub fn remove(&self, name: &str, force: bool) -> Result<Network, NetError> {
        let _lock = self.lock()?;
        let mut n = self.read(name)?;
        self.collect_garbage(&mut n);
        if !n.endpoints.is_empty() && !force {
            return Err(NetError::InUse {
                network: n.name.clone(),
                boxes: n.endpoints.values().map(|e| e.name.clone()).collect(),
            });
        }
        for id in n.endpoints.keys() {
            let dir = self.home.root().join("boxes").join(id);
            if let Ok(mut net) = BoxNet::load(&dir) {
                if net.is_on(name) {
                    let rest = net
                        .attachments()
                        .into_iter()
                        .filter(|a| a.network != name)
                        .collect();
                    net.set_attachments(rest);
                    net.save(&dir)?;
                }
            }
        }
        super::bridge::teardown(&n)?;
        fs_err::remove_file(self.path(name))?;
        Ok(n)
    }
}

/// IPv4 routes of this network namespace (`/proc/net/route`), so a default subnet does not
/// shadow a network the host already reaches. The default route is skipped.
fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // Network-order bytes printed as a native (little-endian here) integer.
            let dest = u32::from_be_bytes(dest.to_le_bytes());
            let mask = u32::from_be_bytes(mask.to_le_bytes());
            let prefix = u8::try_from(mask.count_ones()).ok()?.clamp(8, 30);
            if mask == 0 {
                return None;
            }
            let m = u32::MAX << (32 - u32::from(prefix));
            Subnet::new(Ipv4Addr::from(dest & m), prefix).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(name: &str) -> Join {
        Join {
            name: name.to_owned(),
            ..Join::default()
        }
    }

    #[test]
    fn an_asked_for_ip_is_given_or_refused_with_the_reason() {
        let (t, nets) = home();
        nets.create(&req("n", Some("10.77.3.0/24"))).unwrap();
        let ask = |ip: [u8; 4]| Join {
            ip: Some(Ipv4Addr::from(ip)),
            aliases: vec!["db".into()],
            ..j("x")
        };
        let a = fake_box(&t);
        assert_eq!(
            nets.attach("n", &a, &ask([10, 77, 3, 9])).unwrap(),
            Ipv4Addr::new(10, 77, 3, 9)
        );
        let e = nets
            .attach("n", &fake_box(&t), &ask([10, 77, 3, 9]))
            .unwrap_err();
        assert!(e.to_string().contains("already in use"), "{e}");
        let e = nets
            .attach("n", &fake_box(&t), &ask([10, 78, 3, 9]))
            .unwrap_err();
        assert!(e.to_string().contains("not a host address"), "{e}");
        let n = nets.get("n").unwrap();
        assert!(n.endpoints[a.as_str()].answers_to("DB"));
    }

    fn home() -> (tempfile::TempDir, Networks) {
        let t = tempfile::tempdir().unwrap();
        let n = Networks::open(&A3sHome::at(t.path()));
        (t, n)
    }

    fn req(name: &str, subnet: Option<&str>) -> CreateNetwork {
        CreateNetwork {
            name: name.into(),
            subnet: subnet.map(Into::into),
            ..Default::default()
        }
    }

    fn fake_box(t: &tempfile::TempDir) -> BoxId {
        let id = BoxId::random();
        std::fs::create_dir_all(t.path().join("boxes").join(id.as_str())).unwrap();
        id
    }

    #[test]
    fn create_validates_and_refuses_overlaps() {
        let (_t, nets) = home();
        let a = nets.create(&req("a", None)).unwrap();
        assert_eq!(a.gateway, a.subnet.first_host());
        assert!(a.bridge().len() <= 15);
        let b = nets.create(&req("b", None)).unwrap();
        assert!(!a.subnet.overlaps(&b.subnet), "{} {}", a.subnet, b.subnet);
        let e = nets
            .create(&req("c", Some(&a.subnet.to_string())))
            .unwrap_err();
        assert!(matches!(e, NetError::Overlap { .. }), "{e}");
        assert!(matches!(
            nets.create(&req("a", Some("192.168.50.0/24"))).unwrap_err(),
            NetError::NetworkExists(_)
        ));
        assert!(matches!(
            nets.create(&req("none", None)).unwrap_err(),
            NetError::BadNetworkName(_)
        ));
        let mut g = req("g", Some("192.168.60.0/24"));
        g.gateway = Some("192.168.61.1".into());
        let e = nets.create(&g).unwrap_err().to_string();
        assert!(e.contains("not a host address of 192.168.60.0/24"), "{e}");
        let mut c = req("c", None);
        c.isolation = Isolation::Custom;
        assert!(matches!(
            nets.create(&c).unwrap_err(),
            NetError::CustomWithoutPolicy
        ));
        assert_eq!(nets.list().unwrap().len(), 2);
    }

    #[test]
    fn addresses_are_stable_freed_and_garbage_collected() {
        let (t, nets) = home();
        nets.create(&req("n", Some("192.168.70.0/29"))).unwrap();
        let (b1, b2) = (fake_box(&t), fake_box(&t));
        let ip1 = nets.attach("n", &b1, &j("one")).unwrap();
        assert_eq!(ip1, Ipv4Addr::new(192, 168, 70, 2));
        assert_eq!(nets.attach("n", &b1, &j("one")).unwrap(), ip1);
        let ip2 = nets.attach("n", &b2, &j("two")).unwrap();
        assert_ne!(ip1, ip2);
        nets.detach("n", &b1).unwrap();
        let b3 = fake_box(&t);
        assert_eq!(nets.attach("n", &b3, &j("three")).unwrap(), ip1);
        // A removed box's address comes back.
        std::fs::remove_dir_all(t.path().join("boxes").join(b2.as_str())).unwrap();
        assert_eq!(nets.get("n").unwrap().endpoints.len(), 1);
        assert!(matches!(
            nets.remove("n", false).unwrap_err(),
            NetError::InUse { .. }
        ));
        nets.remove("n", true).unwrap();
        assert!(matches!(
            nets.get("n").unwrap_err(),
            NetError::NoSuchNetwork(_)
        ));
    }

    #[test]
    fn concurrent_attaches_never_share_an_address() {
        let (t, nets) = home();
        nets.create(&req("n", Some("10.77.0.0/24"))).unwrap();
        let ids: Vec<BoxId> = (0..48).map(|_| fake_box(&t)).collect();
        let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|id| {
                    let nets = nets.clone();
                    s.spawn(move || {
                        nets.attach("n", id, &j(&format!("b{}", id.short())))
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: BTreeSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ips:?}");
        assert_eq!(nets.get("n").unwrap().endpoints.len(), ids.len());
    }

    #[test]
    fn a_full_subnet_says_so() {
        let (t, nets) = home();
        nets.create(&req("n", Some("10.78.0.0/30"))).unwrap();
        nets.attach("n", &fake_box(&t), &j("a")).unwrap();
        let e = nets.attach("n", &fake_box(&t), &j("b")).unwrap_err();
        assert!(matches!(e, NetError::SubnetFull { .. }), "{e}");
    }
}
