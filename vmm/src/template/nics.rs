//! A box's bridge and pod NICs in its template.
//!
//! A NIC's MAC address is in the device state QEMU saves, so a restored VM has the
//! template's addresses whatever its own `mac=` says. The template gets NICs of the box's
//! kinds in the box's order (same device properties, so the same key for every box on as
//! many such networks) with addresses of its own ([`template_mac`]), on TAPs of its own that
//! exist only while it is made. The restored guest gets the pairs in its own arguments
//! ([`MACS_ARG`]) and gives each NIC the box's address before it configures anything
//! (`VIRTIO_NET_CTRL_MAC_ADDR_SET`, which moves QEMU's receive filter with it), taking the
//! link down and up so its IPv6 link-local address follows the new one.

use std::path::PathBuf;

use crate::net::{Nic, PodTap, TapNet};

/// The box argument naming each template NIC's MAC address and the box's for it:
/// `a3s.macs=TEMPLATE/BOX,…`, in the box's order of NICs.
pub const MACS_ARG: &str = "a3s.macs=";

/// The MAC address of a template's `index`th NIC: locally administered, in a range A3S Box
/// gives no box NIC (boxes use `02:a3:…` with other third octets, CNI plugins random ones;
/// a box address that happened to be one of these is still handled, the guest finds every
/// NIC before it renames any).
pub fn template_mac(index: usize) -> String {
    format!("02:a3:7e:00:00:{:02x}", index & 0xff)
}

/// The template's NICs for a box's bridge or pod `net` (`None` for user networking or none,
/// which need no readdressing) and the `a3s.macs=` pairs, with the template's TAPs named by
/// `tap(index)`. A pod's TAP is opened in this process's network namespace (it goes with
/// the template VM; nothing else uses it).
pub(super) fn for_template(net: &Nic, tap: impl Fn(usize) -> String) -> Option<(Nic, String)> {
    let tap_net = |i: usize| TapNet {
        ifname: tap(i),
        mac: template_mac(i),
    };
    let (nic, macs): (Nic, Vec<&str>) = match net {
        Nic::User(_) => return None,
        Nic::Tap(t) => (Nic::Tap(tap_net(0)), vec![t.mac.as_str()]),
        Nic::Taps(ts) => (
            Nic::Taps((0..ts.len()).map(tap_net).collect()),
            ts.iter().map(|t| t.mac.as_str()).collect(),
        ),
        Nic::Pod(p) => (
            Nic::Pod(PodTap {
                netns: PathBuf::from("/proc/self/ns/net"),
                ifname: tap(0),
                mac: template_mac(0),
                mtu: p.mtu,
            }),
            vec![p.mac.as_str()],
        ),
    };
    let pairs: Vec<String> = macs
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{}/{}", template_mac(i), m.to_ascii_lowercase()))
        .collect();
    Some((nic, format!("{MACS_ARG}{}", pairs.join(","))))
}

/// The `a3s.macs=` pairs in a restored box's arguments (none when absent). Used by the guest.
///
/// # Errors
/// A pair that is not two MAC addresses.
pub fn parse_macs(args: &str) -> Result<Vec<(String, String)>, String> {
    let Some(list) = args
        .split_whitespace()
        .find_map(|w| w.strip_prefix(MACS_ARG))
    else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(|pair| {
            let (from, to) = pair
                .split_once('/')
                .ok_or_else(|| format!("{MACS_ARG}: {pair:?} is not TEMPLATE/BOX"))?;
            for m in [from, to] {
                if !is_mac(m) {
                    return Err(format!("{MACS_ARG}: {m:?} is not a MAC address"));
                }
            }
            Ok((from.to_ascii_lowercase(), to.to_ascii_lowercase()))
        })
        .collect()
}

/// Six two-digit hex octets separated by colons.
fn is_mac(s: &str) -> bool {
    let octets: Vec<&str> = s.split(':').collect();
    octets.len() == 6
        && octets
            .iter()
            .all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(name: &str, mac: &str) -> TapNet {
        TapNet {
            ifname: name.into(),
            mac: mac.into(),
        }
    }

    #[test]
    fn bridge_nics_get_the_templates_taps_and_addresses_in_the_boxs_order() {
        let boxed = Nic::Taps(vec![
            tap("a3s-b1", "02:A3:00:00:00:07"),
            tap("a3s-b2", "02:a3:00:00:00:08"),
        ]);
        let (nic, arg) = for_template(&boxed, |i| format!("tpl{i}")).unwrap();
        assert_eq!(
            nic,
            Nic::Taps(vec![
                tap("tpl0", "02:a3:7e:00:00:00"),
                tap("tpl1", "02:a3:7e:00:00:01")
            ])
        );
        assert_eq!(
            arg,
            "a3s.macs=02:a3:7e:00:00:00/02:a3:00:00:00:07,02:a3:7e:00:00:01/02:a3:00:00:00:08"
        );
        assert_eq!(
            parse_macs(&format!("a3s.root=1,x {arg}")).unwrap(),
            [
                ("02:a3:7e:00:00:00".into(), "02:a3:00:00:00:07".into()),
                ("02:a3:7e:00:00:01".into(), "02:a3:00:00:00:08".into())
            ]
        );
    }

    #[test]
    fn a_pod_nic_keeps_its_mtu_and_user_networking_needs_nothing() {
        let pod = Nic::Pod(PodTap {
            netns: "/run/netns/p".into(),
            ifname: "eth0".into(),
            mac: "4e:1f:00:11:22:33".into(),
            mtu: 1450,
        });
        let (nic, arg) = for_template(&pod, |_| "tpl0".into()).unwrap();
        let Nic::Pod(p) = nic else { panic!("{nic:?}") };
        assert_eq!(
            (p.ifname.as_str(), p.mac.as_str(), p.mtu),
            ("tpl0", "02:a3:7e:00:00:00", 1450)
        );
        assert_eq!(arg, "a3s.macs=02:a3:7e:00:00:00/4e:1f:00:11:22:33");
        let user = Nic::User(crate::net::UserNet::default());
        assert!(for_template(&user, |_| String::new()).is_none());
    }

    #[test]
    fn malformed_pairs_are_refused() {
        assert!(parse_macs("a3s.root=1").unwrap().is_empty());
        for bad in [
            "a3s.macs=02:a3:7e:00:00:00",
            "a3s.macs=02:a3:7e:00:00:00/zz:00:00:00:00:00",
            "a3s.macs=02:a3:7e:00:00/02:a3:00:00:00:07",
            "a3s.macs=",
        ] {
            assert!(parse_macs(bad).is_err(), "{bad}");
        }
    }
}
