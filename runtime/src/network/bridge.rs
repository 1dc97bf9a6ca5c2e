//! Host plumbing of bridge networks: the Linux bridge, one TAP device per running box, the
//! isolation table and outbound NAT, all through `ip` and `nft` (iproute2 and nftables) with
//! checked exit codes.
//!
//! Everything happens in the caller's network namespace, so `ip netns exec NS a3s-box ...`
//! keeps a network (bridge, TAPs, rules, VMs) inside `NS`.
//!
//! Outbound: packets from the subnet leaving through another interface are masqueraded
//! (`table ip a3s-<id>`, postrouting), and IPv4 forwarding is enabled on the bridge device
//! only (`net.ipv4.conf.<bridge>.forwarding`), never host-wide.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::store::{tap_name, Network};
use super::{policy, NetError};
use crate::state::BoxId;

pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetError> {
    let what = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Host {
            command: what.clone(),
            message: format!("cannot run {program}: {e}"),
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| NetError::Host {
                command: what.clone(),
                message: e.to_string(),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| NetError::Host {
        command: what.clone(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Host {
            command: what,
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn has_mac(link: &str, mac: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(link).join("address"))
        .is_ok_and(|a| a.trim().eq_ignore_ascii_case(mac))
}

fn nft_available() -> bool {
    super::HostSupport::probe().nftables
}

/// Creates the bridge if it is missing (address, up, forwarding, NAT) and installs the
/// isolation table for the network's current members.
///
/// # Errors
/// [`NetError::Host`] naming the failed command.
pub fn ensure(n: &Network) -> Result<(), NetError> {
    let br = n.bridge();
    let cidr = format!("{}/{}", n.gateway, n.subnet.prefix());
    let mac = n.bridge_mac();
    if !link_exists(&br) {
        run(
            "ip",
            &["link", "add", &br, "address", &mac, "type", "bridge"],
            None,
        )?;
    } else if !has_mac(&br, &mac) {
        // A bridge made before its address was fixed.
        run("ip", &["link", "set", "dev", &br, "address", &mac], None)?;
    }
    run("ip", &["addr", "replace", &cidr, "dev", &br], None)?;
    run("ip", &["link", "set", &br, "up"], None)?;
    let fwd = format!("/proc/sys/net/ipv4/conf/{br}/forwarding");
    fs_err::write(&fwd, "1").map_err(|e| NetError::Host {
        command: format!("echo 1 > {fwd}"),
        message: e.to_string(),
    })?;
    if nft_available() {
        let t = n.table();
        let nat = format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    ip saddr {} oifname != \"{br}\" masquerade\n  }}\n}}\n",
            n.subnet
        );
        run("nft", &["-f", "-"], Some(&nat))?;
    }
    refresh(n)
}

/// Reinstalls the isolation table for the network's current members.
///
/// # Errors
/// [`NetError::Host`]; [`NetError::NoNftables`] when isolation needs nft and it is missing.
pub fn refresh(n: &Network) -> Result<(), NetError> {
    if !nft_available() {
        return if n.isolation == policy::Isolation::None {
            Ok(())
        } else {
            Err(NetError::NoNftables(n.name.clone()))
        };
    }
    let script =
        policy::bridge_table_script(&n.table(), n.isolation, n.policy.as_ref(), &n.members());
    run("nft", &["-f", "-"], Some(&script))
}

/// [`refresh`] when the bridge exists in this namespace (a network only has live rules where
/// a box of it has run).
///
/// # Errors
/// As [`refresh`].
pub fn refresh_if_present(n: &Network) -> Result<(), NetError> {
    if link_exists(&n.bridge()) {
        refresh(n)
    } else {
        Ok(())
    }
}

/// Removes the bridge and the network's nft tables, if present.
///
/// # Errors
/// [`NetError::Host`].
pub fn teardown(n: &Network) -> Result<(), NetError> {
    if !link_exists(&n.bridge()) {
        return Ok(());
    }
    // TAPs left by a monitor that was killed outright (its drop guard never ran).
    for m in n.members() {
        if link_exists(&m.tap) {
            run("ip", &["link", "del", &m.tap], None)?;
        }
    }
    run("ip", &["link", "del", &n.bridge()], None)?;
    if nft_available() {
        let t = n.table();
        let script = format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable bridge {t} {{}}\ndelete table bridge {t}\n"
        );
        run("nft", &["-f", "-"], Some(&script))?;
    }
    Ok(())
}

/// A box's TAP device on its network's bridge; deleted on drop.
#[derive(Debug)]
pub struct Tap {
    name: String,
}

impl Tap {
    /// Creates (replacing a stale one) box `id`'s TAP and enslaves it to the bridge.
    ///
    /// # Errors
    /// [`NetError::Host`].
    pub fn create(n: &Network, id: &BoxId) -> Result<Self, NetError> {
        let name = tap_name(id, n);
        if link_exists(&name) {
            run("ip", &["link", "del", &name], None)?;
        }
        run("ip", &["tuntap", "add", "dev", &name, "mode", "tap"], None)?;
        let tap = Self { name };
        run(
            "ip",
            &["link", "set", &tap.name, "master", &n.bridge(), "up"],
            None,
        )?;
        Ok(tap)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if link_exists(&self.name) {
            let _ = run("ip", &["link", "del", &self.name], None);
        }
    }
}
