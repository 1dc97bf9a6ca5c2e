//! Network interfaces: loopback always; eth0 when the host passed `a3s.net=ADDR/PREFIX,GATEWAY`
//! on the kernel command line (user networking; absent with `--network none`, where the VM has
//! no NIC at all); a box on bridge networks gets one NIC per network, described in `Start`'s
//! setup (not on the measured command line, whose content must not depend on the addresses a
//! host hands out) and found by MAC address.
//!
//! Plain ioctls (the shell equivalent is in each comment) so images need no `ip` binary.

#![allow(unsafe_code)]
// ioctls for interface set-up; each block states its invariant.
// libc's AF_INET and IFF_* constants are small positive i32s stored in narrower ABI fields.
#![allow(clippy::cast_possible_truncation)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Parses `a3s.net=10.0.2.15/24,10.0.2.2` out of a kernel command line.
pub(crate) fn parse_cmdline(cmdline: &str) -> anyhow::Result<Option<(Ipv4Addr, u8, Ipv4Addr)>> {
    let Some(v) = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("a3s.net="))
    else {
        return Ok(None);
    };
    let (cidr, gw) = v
        .split_once(',')
        .context("a3s.net: expected ADDR/PREFIX,GATEWAY")?;
    let (addr, prefix) = cidr
        .split_once('/')
        .context("a3s.net: expected ADDR/PREFIX")?;
    let prefix: u8 = prefix.parse().context("a3s.net: bad prefix")?;
    if prefix > 32 {
        bail!("a3s.net: prefix {prefix} > 32");
    }
    Ok(Some((
        addr.parse().context("a3s.net: bad address")?,
        prefix,
        gw.parse().context("a3s.net: bad gateway")?,
    )))
}

/// Brings up lo and, if `cmdline` (the kernel's, or a restored box's own arguments) asks for
/// it, the user network's NIC with its address and default route.
pub(crate) fn configure(cmdline: &str) -> anyhow::Result<()> {
    let sock = Socket::new()?;
    sock.up("lo")?; // ip link set lo up
    let Some((addr, prefix, gw)) = parse_cmdline(cmdline)? else {
        return Ok(());
    };
    // Found by its MAC address: a box with published ports has a second NIC (the inbound
    // link), and the kernel may name either one eth0.
    let nic = wait_for_mac(a3s_vmm::net::USER_NIC_MAC)?;
    sock.set_addr(&nic, libc::SIOCSIFADDR, addr)?; // ip addr add ADDR/PREFIX dev NIC
    sock.set_addr(&nic, libc::SIOCSIFNETMASK, netmask(prefix))?;
    sock.up(&nic)?; // ip link set NIC up
    sock.default_route(gw)?; // ip route add default via GATEWAY
    announce(gw);
    Ok(())
}

/// In a template VM: lo and every NIC up, with no address yet. Bringing a virtio NIC up fills
/// its receive ring (1024 buffers); done here, it is saved with the template, and a restored
/// box, whose QEMU translates every guest path afresh under TCG, neither does it nor
/// translates it. The box's own [`configure`] (or [`configure_interfaces`]) then only adds
/// addresses and routes.
pub(crate) fn up_for_template() -> anyhow::Result<()> {
    let sock = Socket::new()?;
    let class = std::fs::read_dir("/sys/class/net").context("listing /sys/class/net")?;
    for entry in class.filter_map(Result::ok) {
        sock.up(&entry.file_name().to_string_lossy())?;
    }
    Ok(())
}

/// A restored box's bridge and pod NICs (`a3s.macs=` in its own arguments, see
/// `a3s_vmm::template`): each takes the box's MAC address in place of the template's. Every
/// NIC is found before any changes (a box address may be another template NIC's). Each is
/// left down, as on a cold boot, so its IPv6 link-local address is made from the new address
/// when [`configure_interfaces`] brings it up (taking it down dropped the template's).
pub(crate) fn readdress(args: &str) -> anyhow::Result<()> {
    let pairs = a3s_vmm::template::parse_macs(args).map_err(anyhow::Error::msg)?;
    if pairs.is_empty() {
        return Ok(());
    }
    let names = pairs
        .iter()
        .map(|(template, _)| wait_for_mac(template))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let sock = Socket::new()?;
    for (name, (_, mac)) in names.iter().zip(&pairs) {
        sock.down(name)?;
        sock.set_mac(name, mac_bytes(mac)?)?;
    }
    Ok(())
}

/// `02:a3:00:00:00:07` as bytes.
fn mac_bytes(mac: &str) -> anyhow::Result<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut octets = mac.split(':');
    for b in &mut out {
        let o = octets
            .next()
            .with_context(|| format!("{mac} is not a MAC address"))?;
        *b = u8::from_str_radix(o, 16).with_context(|| format!("{mac} is not a MAC address"))?;
    }
    if octets.next().is_some() {
        bail!("{mac} is not a MAC address");
    }
    Ok(out)
}

/// Makes the NIC send its first frame now (an ARP request for the gateway, triggered by one
/// datagram to the gateway's discard port). passt learns the guest's MAC address from the
/// guest's first frame and until then addresses it as broadcast, which the guest's TCP drops:
/// a box that had sent nothing yet timed out the first connection to its published port.
fn announce(gw: std::net::Ipv4Addr) {
    if let Ok(s) = std::net::UdpSocket::bind("0.0.0.0:0") {
        let _ = s.send_to(b"", (gw, 9));
    }
}

/// Configures the NICs of `Start`'s setup (bridge networks, a pod's CNI interface): addresses
/// (IPv4 and IPv6), up, the default routes via the gateways (the box's first network), and
/// the other routes.
pub(crate) fn configure_interfaces(nics: &[a3s_vmm::proto::GuestNic]) -> anyhow::Result<()> {
    if nics.is_empty() {
        return Ok(());
    }
    let sock = Socket::new()?;
    // Opened only for a NIC with IPv6 addresses or routes: a kernel without IPv6 still runs
    // IPv4-only boxes.
    let mut sock6 = None;
    let mut names = Vec::new();
    for nic in nics {
        let name = wait_for_mac(&nic.mac)?;
        let mut v4 = nic.addrs.iter().filter(|a| a.addr.is_ipv4());
        if let (Some(_), Some(extra)) = (v4.next(), v4.next()) {
            bail!(
                "interface {}: a second IPv4 address {}",
                nic.mac,
                extra.addr
            );
        }
        if nic.addrs.iter().any(|a| a.addr.is_ipv6()) {
            // The address is the pod's, handed out by its network's IPAM: duplicate address
            // detection would only hold it "tentative" (unusable) for a second or more.
            no_dad(&name)?;
        }
        for a in &nic.addrs {
            match a.addr {
                IpAddr::V4(v4) => {
                    if a.prefix > 32 {
                        bail!("interface {}: prefix {} > 32", nic.mac, a.prefix);
                    }
                    sock.set_addr(&name, libc::SIOCSIFADDR, v4)?; // ip addr add V4/P dev NAME
                    sock.set_addr(&name, libc::SIOCSIFNETMASK, netmask(a.prefix))?;
                }
                IpAddr::V6(v6) => {
                    if a.prefix > 128 {
                        bail!("interface {}: prefix {} > 128", nic.mac, a.prefix);
                    }
                    socket6(&mut sock6)?.add_addr6(&name, v6, a.prefix)?; // ip -6 addr add
                }
            }
        }
        sock.up(&name)?;
        names.push(name);
    }
    for (nic, name) in nics.iter().zip(&names) {
        for gw in &nic.gateways {
            match *gw {
                IpAddr::V4(g) => sock.default_route(g)?,
                IpAddr::V6(g) => {
                    socket6(&mut sock6)?.route6(name, Ipv6Addr::UNSPECIFIED, 0, Some(g))?;
                }
            }
        }
        for r in &nic.routes {
            match (r.dst, r.gateway) {
                (IpAddr::V4(dst), None | Some(IpAddr::V4(_))) => {
                    if r.prefix > 32 {
                        bail!("route {}/{}: prefix > 32", r.dst, r.prefix);
                    }
                    let gw = r.gateway.and_then(|g| match g {
                        IpAddr::V4(g) => Some(g),
                        IpAddr::V6(_) => None,
                    });
                    sock.route(name, dst, r.prefix, gw)?;
                }
                (IpAddr::V6(dst), None | Some(IpAddr::V6(_))) => {
                    if r.prefix > 128 {
                        bail!("route {}/{}: prefix > 128", r.dst, r.prefix);
                    }
                    let gw = r.gateway.and_then(|g| match g {
                        IpAddr::V6(g) => Some(g),
                        IpAddr::V4(_) => None,
                    });
                    socket6(&mut sock6)?.route6(name, dst, r.prefix, gw)?;
                }
                (dst, Some(gw)) => bail!("route {dst}/{} via {gw}: mixed families", r.prefix),
            }
        }
    }
    Ok(())
}

/// The IPv6 socket, opened on first use.
fn socket6(slot: &mut Option<Socket>) -> anyhow::Result<&Socket> {
    if slot.is_none() {
        *slot = Some(Socket::new6()?);
    }
    slot.as_ref().context("IPv6 socket")
}

/// `sysctl net.ipv6.conf.NAME.accept_dad=0` (before the addresses are added and the link
/// comes up).
fn no_dad(name: &str) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/accept_dad");
    std::fs::write(&path, "0").with_context(|| {
        format!("writing {path} (does the VM kernel have IPv6? a pod was given an IPv6 address)")
    })
}

/// The interface whose MAC address is `mac` (waits, like [`configure`], for virtio_net).
fn wait_for_mac(mac: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(name) = interface_with_mac(std::path::Path::new("/sys/class/net"), mac) {
            return Ok(name);
        }
        if Instant::now() > deadline {
            bail!("no network interface with MAC address {mac} appeared (is virtio_net loaded?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interface_with_mac(class: &std::path::Path, mac: &str) -> Option<String> {
    std::fs::read_dir(class)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            std::fs::read_to_string(e.path().join("address"))
                .is_ok_and(|a| a.trim().eq_ignore_ascii_case(mac))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    })
}

struct Socket(std::os::fd::OwnedFd);

/// The kernel's `struct in6_rtmsg` (`linux/ipv6_route.h`), SIOCADDRT's argument on an
/// AF_INET6 socket (the libc crate's copy keeps its fields private).
#[repr(C)]
struct In6Rtmsg {
    dst: [u8; 16],
    src: [u8; 16],
    gateway: [u8; 16],
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn sockaddr(a: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr are both 16 bytes; the kernel reads it as sockaddr_in.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

fn ifreq(name: &str) -> anyhow::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        bail!("interface name {name} too long");
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

impl Socket {
    fn new() -> anyhow::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket(AF_INET)");
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn new6() -> anyhow::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("socket(AF_INET6) (does the VM kernel have IPv6?)");
        }
        // SAFETY: fd is a fresh, valid descriptor nobody else owns.
        Ok(Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn index(&self, name: &str) -> anyhow::Result<i32> {
        let mut req = ifreq(name)?;
        self.ioctl(
            libc::SIOCGIFINDEX,
            &mut req,
            &format!("finding interface {name}"),
        )?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
        Ok(unsafe { req.ifr_ifru.ifru_ifindex })
    }

    /// ip -6 addr add ADDR/PREFIX dev NAME (on an AF_INET6 socket).
    fn add_addr6(&self, name: &str, addr: Ipv6Addr, prefix: u8) -> anyhow::Result<()> {
        let mut req = libc::in6_ifreq {
            ifr6_addr: libc::in6_addr {
                s6_addr: addr.octets(),
            },
            ifr6_prefixlen: u32::from(prefix),
            ifr6_ifindex: self.index(name)?,
        };
        self.ioctl(
            libc::SIOCSIFADDR,
            &mut req,
            &format!("setting {addr}/{prefix} on {name}"),
        )
    }

    /// ip -6 route add DST/PREFIX [via GW] dev NAME (on an AF_INET6 socket; `::/0`: the
    /// default route).
    fn route6(
        &self,
        dev: &str,
        dst: Ipv6Addr,
        prefix: u8,
        gw: Option<Ipv6Addr>,
    ) -> anyhow::Result<()> {
        let mut flags = u32::from(libc::RTF_UP);
        if gw.is_some() {
            flags |= u32::from(libc::RTF_GATEWAY);
        }
        let mut rt = In6Rtmsg {
            dst: dst.octets(),
            src: [0; 16],
            gateway: gw.map_or([0; 16], |g| g.octets()),
            kind: 0,
            dst_len: u16::from(prefix),
            src_len: 0,
            // 1024, `ip -6 route`'s default metric (0 would mean the same to the kernel).
            metric: 1024,
            info: 0,
            flags,
            ifindex: self.index(dev)?,
        };
        self.ioctl(
            libc::SIOCADDRT,
            &mut rt,
            &format!("adding the route to {dst}/{prefix} on {dev}"),
        )
    }

    fn ioctl<T>(&self, req: libc::Ioctl, arg: &mut T, what: &str) -> anyhow::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `arg` is the struct type this request expects and outlives the call.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), req, std::ptr::from_mut(arg)) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error()).context(what.to_owned());
        }
        Ok(())
    }

    /// ip link set NAME down
    fn down(&self, name: &str) -> anyhow::Result<()> {
        let up = libc::IFF_UP as libc::c_short;
        self.change_flags(name, |f| f & !up, &format!("taking {name} down"))
    }

    /// ip link set NAME address MAC
    fn set_mac(&self, name: &str, mac: [u8; 6]) -> anyhow::Result<()> {
        let mut req = ifreq(name)?;
        // SAFETY: the hwaddr member is a sockaddr, all-zero valid; its data holds 14 bytes.
        unsafe {
            req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (d, b) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
                *d = b as libc::c_char;
            }
        }
        self.ioctl(
            libc::SIOCSIFHWADDR,
            &mut req,
            &format!("setting {name}'s MAC address"),
        )
    }

    /// ip link set NAME up
    fn up(&self, name: &str) -> anyhow::Result<()> {
        let up = (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        self.change_flags(name, |f| f | up, &format!("bringing {name} up"))
    }

    /// Reads NAME's flags, changes them with `change`, writes them back; `what` names the
    /// step in an error.
    fn change_flags(
        &self,
        name: &str,
        change: impl FnOnce(libc::c_short) -> libc::c_short,
        what: &str,
    ) -> anyhow::Result<()> {
        let mut req = ifreq(name)?;
        self.ioctl(
            libc::SIOCGIFFLAGS,
            &mut req,
            &format!("reading {name} flags"),
        )?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags = change(req.ifr_ifru.ifru_flags);
        }
        self.ioctl(libc::SIOCSIFFLAGS, &mut req, what)
    }

    fn set_addr(&self, name: &str, op: libc::Ioctl, a: Ipv4Addr) -> anyhow::Result<()> {
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_addr = sockaddr(a);
        self.ioctl(op, &mut req, &format!("setting {a} on {name}"))
    }

    /// ip route add DST/PREFIX [via GW]
    fn route(
        &self,
        dev: &str,
        dst: Ipv4Addr,
        prefix: u8,
        gw: Option<Ipv4Addr>,
    ) -> anyhow::Result<()> {
        let mut dev = std::ffi::CString::new(dev)
            .context("interface name")?
            .into_bytes_with_nul();
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        // The kernel copies the name during the ioctl; `dev` outlives it.
        rt.rt_dev = dev.as_mut_ptr().cast();
        rt.rt_dst = sockaddr(dst);
        rt.rt_genmask = sockaddr(netmask(prefix));
        rt.rt_flags = libc::RTF_UP;
        if let Some(g) = gw {
            rt.rt_gateway = sockaddr(g);
            rt.rt_flags |= libc::RTF_GATEWAY;
        }
        self.ioctl(
            libc::SIOCADDRT,
            &mut rt,
            &format!("adding the route to {dst}/{prefix}"),
        )
    }

    fn default_route(&self, gw: Ipv4Addr) -> anyhow::Result<()> {
        // SAFETY: rtentry is plain old data; all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        rt.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        rt.rt_gateway = sockaddr(gw);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        self.ioctl(
            libc::SIOCADDRT,
            &mut rt,
            &format!("adding the default route via {gw}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_prefix_and_gateway_from_the_cmdline() {
        let c = "console=ttyS0 a3s.net=10.0.2.15/24,10.0.2.2 rdinit=/x";
        assert_eq!(
            parse_cmdline(c).unwrap(),
            Some((Ipv4Addr::new(10, 0, 2, 15), 24, Ipv4Addr::new(10, 0, 2, 2)))
        );
        assert_eq!(parse_cmdline("console=ttyS0").unwrap(), None);
        assert!(parse_cmdline("a3s.net=10.0.2.15/40,10.0.2.2").is_err());
    }

    #[test]
    fn the_ipv6_route_message_has_the_kernels_layout() {
        assert_eq!(
            std::mem::size_of::<In6Rtmsg>(),
            std::mem::size_of::<libc::in6_rtmsg>()
        );
        assert_eq!(std::mem::offset_of!(In6Rtmsg, dst_len), 52);
        assert_eq!(std::mem::offset_of!(In6Rtmsg, flags), 72);
    }

    #[test]
    fn mac_addresses_parse_to_six_bytes() {
        assert_eq!(
            mac_bytes("02:a3:7e:00:0a:FF").unwrap(),
            [0x02, 0xa3, 0x7e, 0x00, 0x0a, 0xff]
        );
        for bad in [
            "02:a3:7e:00:0a",
            "02:a3:7e:00:0a:ff:01",
            "02:a3:7e:00:0a:zz",
        ] {
            assert!(mac_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interfaces_are_found_by_mac_in_any_case_and_masks_follow_the_prefix() {
        let class = tempfile::tempdir().unwrap();
        for (name, mac) in [("eth0", "02:a3:00:00:00:02"), ("eth1", "02:A3:00:00:00:01")] {
            std::fs::create_dir(class.path().join(name)).unwrap();
            std::fs::write(class.path().join(name).join("address"), format!("{mac}\n")).unwrap();
        }
        assert_eq!(
            interface_with_mac(class.path(), "02:a3:00:00:00:01").as_deref(),
            Some("eth1")
        );
        assert_eq!(interface_with_mac(class.path(), "02:a3:00:00:00:09"), None);
        assert_eq!(netmask(24), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(netmask(32), Ipv4Addr::BROADCAST);
    }
}
