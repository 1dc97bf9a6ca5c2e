//! IPv4 subnets and address allocation for bridge networks.
//!
//! The allocator is a pure function over the set of addresses already taken; persistence and
//! locking live in [`super::store`], which calls it under the network's file lock.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The pool default subnets are carved from.
pub const DEFAULT_POOL: Subnet = Subnet {
    addr: Ipv4Addr::new(10, 88, 0, 0),
    prefix: 16,
};
/// The prefix length of a default subnet.
pub const DEFAULT_PREFIX: u8 = 24;

/// An IPv4 network `ADDR/PREFIX` with no host bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// A subnet from its parts.
    ///
    /// # Errors
    /// A prefix outside 8..=30 (a bridge network needs room for a gateway and a box) or host
    /// bits set.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, String> {
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "prefix /{prefix} is not supported: use a prefix from /8 to /30"
            ));
        }
        let s = Self { addr, prefix };
        if u32::from(addr) & !s.mask() != 0 {
            return Err(format!(
                "{addr}/{prefix} has host bits set: the network address is {}/{prefix}",
                Ipv4Addr::from(u32::from(addr) & s.mask())
            ));
        }
        Ok(s)
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    fn base(&self) -> u32 {
        u32::from(self.addr)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() | !self.mask())
    }

    /// Whether `a` lies inside (network and broadcast addresses included).
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == self.base()
    }

    /// Whether `a` is a usable host address (not the network or broadcast address).
    pub fn is_host(&self, a: Ipv4Addr) -> bool {
        self.contains(a) && a != self.addr && a != self.broadcast()
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Self) -> bool {
        let p = self.prefix.min(other.prefix);
        let m = u32::MAX << (32 - u32::from(p));
        self.base() & m == other.base() & m
    }

    /// The first host address (the default gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// The lowest host address not in `taken`, or `None` when the subnet is full.
    pub fn allocate(&self, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (self.base() + 1..u32::from(self.broadcast()))
            .map(Ipv4Addr::from)
            .find(|a| !taken.contains(a))
    }

    /// The `/prefix` subnets of this one, in order.
    pub fn subnets(&self, prefix: u8) -> impl Iterator<Item = Self> + '_ {
        let count = if prefix >= self.prefix {
            1u64 << (prefix - self.prefix)
        } else {
            0
        };
        let step = 1u64 << (32 - u32::from(prefix));
        (0..count).filter_map(move |i| {
            let a = u64::from(self.base()) + i * step;
            u32::try_from(a).ok().map(|a| Self {
                addr: Ipv4Addr::from(a),
                prefix,
            })
        })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for Subnet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR form ADDR/PREFIX (e.g. 10.89.0.0/24)"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{p:?} is not a prefix length from 0 to 32"))?;
        Self::new(addr, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The first `/24` of [`DEFAULT_POOL`] that overlaps none of `used`.
pub fn default_subnet(used: &[Subnet]) -> Option<Subnet> {
    DEFAULT_POOL
        .subnets(DEFAULT_PREFIX)
        .find(|s| !used.iter().any(|u| u.overlaps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Subnet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_rejects_cidrs() {
        let s = net("10.89.3.0/24");
        assert_eq!(s.to_string(), "10.89.3.0/24");
        assert_eq!(s.broadcast(), Ipv4Addr::new(10, 89, 3, 255));
        for (bad, needle) in [
            ("10.89.3.1/24", "host bits set"),
            ("10.89.3.0", "CIDR form"),
            ("10.89.3.0/33", "prefix length"),
            ("10.89.3.0/31", "not supported"),
            ("300.1.1.0/24", "not an IPv4"),
        ] {
            let e = bad.parse::<Subnet>().unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn overlap_and_membership() {
        assert!(net("10.88.0.0/16").overlaps(&net("10.88.5.0/24")));
        assert!(net("10.88.5.0/24").overlaps(&net("10.88.0.0/16")));
        assert!(!net("10.88.5.0/24").overlaps(&net("10.88.6.0/24")));
        let s = net("192.168.7.0/30");
        assert!(s.is_host(Ipv4Addr::new(192, 168, 7, 1)));
        assert!(!s.is_host(Ipv4Addr::new(192, 168, 7, 0)));
        assert!(!s.is_host(Ipv4Addr::new(192, 168, 7, 3)));
        assert!(!s.contains(Ipv4Addr::new(192, 168, 8, 1)));
    }

    #[test]
    fn allocation_skips_taken_and_ends_when_full() {
        let s = net("192.168.7.0/30");
        let mut taken = BTreeSet::new();
        taken.insert(s.first_host());
        let a = s.allocate(&taken).unwrap();
        assert_eq!(a, Ipv4Addr::new(192, 168, 7, 2));
        taken.insert(a);
        assert_eq!(s.allocate(&taken), None);
    }

    #[test]
    fn default_subnets_avoid_used_ones() {
        assert_eq!(default_subnet(&[]), Some(net("10.88.0.0/24")));
        let used = [net("10.88.0.0/24"), net("10.88.1.0/25")];
        assert_eq!(default_subnet(&used), Some(net("10.88.2.0/24")));
        assert_eq!(default_subnet(&[net("10.0.0.0/8")]), None);
    }
}
