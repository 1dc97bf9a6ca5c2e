//! Isolation of a bridge network: the modes, the `custom` policy file, and the nftables rules
//! that enforce them on the bridge.
//!
//! Rules live in one `bridge`-family table per network whose `forward` hook sees exactly the
//! frames the bridge passes from one box's TAP to another's; traffic to the gateway (the host
//! end of the bridge) and, through it, outbound traffic never crosses that hook, so `strict`
//! blocks peers while leaving the gateway and outbound reachable.
//!
//! This kernel family has no connection tracking on bridges everywhere (`nf_conntrack_bridge`
//! is often absent), so `allow` rules are made usable without it: each one also admits the
//! replies of the connections it allows (TCP segments from the allowed port that are not a
//! bare SYN, UDP from the allowed port, ICMP echo replies and errors), placed before every
//! rule so a later `deny` cannot cut an allowed connection in half. A reply-shaped segment
//! never opens a connection, so this admits nothing the policy forbids.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Largest network policy file (a few rules).
const MAX_POLICY_FILE_BYTES: u64 = 1 << 20;

/// How boxes on one network may reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Peers reach each other freely.
    #[default]
    None,
    /// Peers cannot reach each other; the gateway and outbound traffic are allowed.
    Strict,
    /// Rules from a policy file.
    Custom,
}

impl Isolation {
    /// Parses `--isolation`.
    ///
    /// # Errors
    /// Anything but none, strict or custom.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "strict" => Ok(Self::Strict),
            "custom" => Ok(Self::Custom),
            other => Err(format!(
                "--isolation {other:?} is not an isolation mode: use none, strict or custom"
            )),
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Strict => "strict",
            Self::Custom => "custom",
        }
    }
}

/// `allow` or `deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the traffic through.
    Allow,
    /// Drop it.
    Deny,
}

impl Action {
    fn verdict(self) -> &'static str {
        match self {
            Self::Allow => "accept",
            Self::Deny => "drop",
        }
    }
}

/// `tcp`, `udp`, `icmp` or `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "tcp")]
    Tcp,
    /// UDP.
    #[serde(rename = "udp")]
    Udp,
    /// ICMP.
    #[serde(rename = "icmp")]
    Icmp,
    /// Any protocol.
    #[serde(rename = "*")]
    Any,
}

/// A list of ports, or `*`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ports {
    /// Any port (`"*"`).
    Any(String),
    /// These ports.
    List(Vec<u16>),
}

impl Default for Ports {
    fn default() -> Self {
        Self::Any("*".into())
    }
}

/// One rule of a `custom` policy; the first rule that matches a packet decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Source box name, or `*`.
    pub from: String,
    /// Destination box name, or `*`.
    pub to: String,
    /// Destination ports (default `*`).
    #[serde(default)]
    pub ports: Ports,
    /// Protocol (default `*`).
    #[serde(default = "any_protocol")]
    pub protocol: Protocol,
    /// What to do.
    pub action: Action,
}

fn any_protocol() -> Protocol {
    Protocol::Any
}

/// A `custom` isolation policy (TOML or JSON).
///
/// ```toml
/// default = "deny"
/// [[rules]]
/// from = "web"
/// to = "db"
/// ports = [5432]
/// protocol = "tcp"
/// action = "allow"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// What happens to traffic between peers that no rule matches.
    pub default: Action,
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A policy file was rejected.
#[derive(Debug, thiserror::Error)]
#[error("network policy {path}: {message}")]
pub struct PolicyError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Policy {
    /// Reads and validates a policy file: JSON when it starts with `{`, else TOML.
    ///
    /// # Errors
    /// [`PolicyError`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let err = |message: String| PolicyError {
            path: path.display().to_string(),
            message,
        };
        let text = crate::bounded::read_to_string(path, MAX_POLICY_FILE_BYTES)
            .map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// Parses and validates policy text.
    ///
    /// # Errors
    /// A message naming the rule and what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Self = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| format!("not a valid JSON policy: {e}"))?
        } else {
            toml::from_str(text).map_err(|e| format!("not a valid TOML policy: {e}"))?
        };
        p.validate()?;
        Ok(p)
    }

    fn validate(&self) -> Result<(), String> {
        for (i, r) in self.rules.iter().enumerate() {
            let n = i + 1;
            for (what, name) in [("from", &r.from), ("to", &r.to)] {
                if name != "*" && crate::state::check_name(name).is_err() {
                    return Err(format!(
                        "rule {n}: {what} = {name:?} is neither a box name nor \"*\""
                    ));
                }
            }
            match &r.ports {
                Ports::Any(s) if s == "*" => {}
                Ports::Any(s) => {
                    return Err(format!(
                        "rule {n}: ports = {s:?}: give a list of port numbers or \"*\""
                    ))
                }
                Ports::List(l) if l.is_empty() => {
                    return Err(format!("rule {n}: ports is empty: list ports or use \"*\""))
                }
                Ports::List(l) if l.contains(&0) => {
                    return Err(format!("rule {n}: port 0 is not a port"))
                }
                Ports::List(_) if r.protocol == Protocol::Icmp => {
                    return Err(format!(
                        "rule {n}: icmp has no ports: use ports = \"*\" with protocol icmp"
                    ))
                }
                Ports::List(_) => {}
            }
        }
        Ok(())
    }
}

/// A box on the network as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Box name.
    pub name: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its TAP device.
    pub tap: String,
}

fn set<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| s.to_string()).collect();
    format!("{{ {} }}", v.join(", "))
}

fn ports_set(p: &Ports) -> Option<String> {
    match p {
        Ports::List(l) => Some(set(l.iter().collect::<BTreeSet<_>>())),
        Ports::Any(_) => None,
    }
}

/// The `ip saddr ... ip daddr ...` match of a rule, or `None` when a name is not on the network
/// (such a rule matches no packet until a box of that name joins).
fn endpoints(r: &Rule, members: &[Member], reverse: bool) -> Option<String> {
    let ip = |name: &str| -> Option<Option<Ipv4Addr>> {
        if name == "*" {
            Some(None)
        } else {
            members.iter().find(|m| m.name == name).map(|m| Some(m.ip))
        }
    };
    let (from, to) = (ip(&r.from)?, ip(&r.to)?);
    let (src, dst) = if reverse { (to, from) } else { (from, to) };
    let mut s = String::from("ether type ip");
    if let Some(a) = src {
        s.push_str(&format!(" ip saddr {a}"));
    }
    if let Some(a) = dst {
        s.push_str(&format!(" ip daddr {a}"));
    }
    Some(s)
}

fn protocols(p: Protocol) -> &'static [Protocol] {
    match p {
        Protocol::Any => &[Protocol::Tcp, Protocol::Udp, Protocol::Icmp],
        Protocol::Tcp => &[Protocol::Tcp],
        Protocol::Udp => &[Protocol::Udp],
        Protocol::Icmp => &[Protocol::Icmp],
    }
}

/// The nft statements of one rule (forward direction).
fn forward_lines(r: &Rule, members: &[Member]) -> Vec<String> {
    let Some(ep) = endpoints(r, members, false) else {
        return vec![];
    };
    let v = r.action.verdict();
    match (r.protocol, ports_set(&r.ports)) {
        (Protocol::Any, None) => vec![format!("{ep} {v}")],
        (Protocol::Icmp, _) => vec![format!("{ep} meta l4proto icmp {v}")],
        (p, ports) => protocols(p)
            .iter()
            .filter(|p| **p != Protocol::Icmp || ports.is_none())
            .map(|p| match (p, &ports) {
                (Protocol::Tcp, Some(s)) => format!("{ep} tcp dport {s} {v}"),
                (Protocol::Udp, Some(s)) => format!("{ep} udp dport {s} {v}"),
                (Protocol::Tcp, None) => format!("{ep} meta l4proto tcp {v}"),
                (Protocol::Udp, None) => format!("{ep} meta l4proto udp {v}"),
                _ => format!("{ep} meta l4proto icmp {v}"),
            })
            .collect(),
    }
}

/// The statements admitting replies to what an `allow` rule lets through.
fn reply_lines(r: &Rule, members: &[Member]) -> Vec<String> {
    if r.action != Action::Allow {
        return vec![];
    }
    let Some(ep) = endpoints(r, members, true) else {
        return vec![];
    };
    let ports = ports_set(&r.ports);
    protocols(r.protocol)
        .iter()
        .filter(|p| **p != Protocol::Icmp || ports.is_none())
        .map(|p| match (p, &ports) {
            (Protocol::Tcp, Some(s)) => {
                format!("{ep} tcp sport {s} tcp flags & (syn | ack) != syn accept")
            }
            (Protocol::Tcp, None) => {
                format!("{ep} meta l4proto tcp tcp flags & (syn | ack) != syn accept")
            }
            (Protocol::Udp, Some(s)) => format!("{ep} udp sport {s} accept"),
            (Protocol::Udp, None) => format!("{ep} meta l4proto udp accept"),
            _ => format!(
                "{ep} icmp type {{ echo-reply, destination-unreachable, time-exceeded }} accept"
            ),
        })
        .collect()
}

/// The statements of the `peers` chain that judges frames from one member's TAP to another's.
pub fn peer_rules(
    isolation: Isolation,
    policy: Option<&Policy>,
    members: &[Member],
) -> Vec<String> {
    match (isolation, policy) {
        (Isolation::None, _) => vec![],
        (Isolation::Strict, _) | (Isolation::Custom, None) => vec!["drop".into()],
        (Isolation::Custom, Some(p)) => {
            let mut out = vec!["ether type arp accept".to_owned()];
            for r in &p.rules {
                out.extend(reply_lines(r, members));
            }
            for r in &p.rules {
                out.extend(forward_lines(r, members));
            }
            out.push(p.default.verdict().to_owned());
            out
        }
    }
}

/// A complete nft script that replaces the network's bridge table atomically (or removes it
/// when there is nothing to enforce).
pub fn bridge_table_script(
    table: &str,
    isolation: Isolation,
    policy: Option<&Policy>,
    members: &[Member],
) -> String {
    let mut s = format!("table bridge {table} {{}}\ndelete table bridge {table}\n");
    let rules = peer_rules(isolation, policy, members);
    if rules.is_empty() || members.is_empty() {
        return s;
    }
    let taps = set(members.iter().map(|m| format!("\"{}\"", m.tap)));
    s.push_str(&format!("table bridge {table} {{\n"));
    s.push_str("  chain forward_filter {\n");
    s.push_str("    type filter hook forward priority 0; policy accept;\n");
    s.push_str(&format!("    iifname {taps} oifname {taps} jump peers\n"));
    s.push_str("  }\n  chain peers {\n");
    for r in rules {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str("  }\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<Member> {
        vec![
            Member {
                name: "web".into(),
                ip: Ipv4Addr::new(10, 88, 0, 2),
                tap: "a3s-tp-aaaa".into(),
            },
            Member {
                name: "db".into(),
                ip: Ipv4Addr::new(10, 88, 0, 3),
                tap: "a3s-tp-bbbb".into(),
            },
        ]
    }

    #[test]
    fn toml_and_json_policies_parse_to_the_same_rules() {
        let t = Policy::parse(
            "default = \"deny\"\n[[rules]]\nfrom = \"web\"\nto = \"db\"\nports = [5432]\nprotocol = \"tcp\"\naction = \"allow\"\n",
        )
        .unwrap();
        let j = Policy::parse(
            r#"{"default":"deny","rules":[{"from":"web","to":"db","ports":[5432],"protocol":"tcp","action":"allow"}]}"#,
        )
        .unwrap();
        assert_eq!(t, j);
        assert_eq!(t.rules[0].ports, Ports::List(vec![5432]));
    }

    #[test]
    fn bad_policies_name_the_problem() {
        for (text, needle) in [
            ("default = \"maybe\"", "not a valid TOML"),
            ("rules = []", "missing field `default`"),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a\"\nto=\"b\"\nprotocol=\"sctp\"\naction=\"allow\"",
                "not a valid TOML",
            ),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a b\"\nto=\"b\"\naction=\"allow\"",
                "rule 1: from",
            ),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a\"\nto=\"b\"\nports=[]\naction=\"allow\"",
                "ports is empty",
            ),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a\"\nto=\"b\"\nports=\"80\"\naction=\"allow\"",
                "list of port numbers",
            ),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a\"\nto=\"b\"\nports=[1]\nprotocol=\"icmp\"\naction=\"allow\"",
                "icmp has no ports",
            ),
            (
                "default=\"deny\"\n[[rules]]\nfrom=\"a\"\nto=\"b\"\naction=\"allow\"\ncolour=\"red\"",
                "unknown field",
            ),
        ] {
            let e = Policy::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn strict_drops_every_frame_between_peers() {
        let s = bridge_table_script("a3s-x", Isolation::Strict, None, &members());
        assert!(s.contains(
            "iifname { \"a3s-tp-aaaa\", \"a3s-tp-bbbb\" } oifname { \"a3s-tp-aaaa\", \"a3s-tp-bbbb\" } jump peers"
        ));
        assert!(s.contains("chain peers {\n    drop\n  }"), "{s}");
        let none = bridge_table_script("a3s-x", Isolation::None, None, &members());
        assert_eq!(none, "table bridge a3s-x {}\ndelete table bridge a3s-x\n");
    }

    #[test]
    fn custom_rules_admit_replies_first_then_match_in_order() {
        let p = Policy::parse(
            "default=\"deny\"\n[[rules]]\nfrom=\"web\"\nto=\"db\"\nports=[80]\nprotocol=\"tcp\"\naction=\"allow\"\n[[rules]]\nfrom=\"ghost\"\nto=\"*\"\naction=\"allow\"\n",
        )
        .unwrap();
        let r = peer_rules(Isolation::Custom, Some(&p), &members());
        assert_eq!(
            r,
            [
                "ether type arp accept",
                "ether type ip ip saddr 10.88.0.3 ip daddr 10.88.0.2 tcp sport { 80 } tcp flags & (syn | ack) != syn accept",
                "ether type ip ip saddr 10.88.0.2 ip daddr 10.88.0.3 tcp dport { 80 } accept",
                "drop",
            ]
        );
    }
}
