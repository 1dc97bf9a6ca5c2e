//! The user network's forwarder: passt (Debian's `passt`, the userspace stack the product this
//! project is named after uses) or, as a reported fallback, QEMU's built-in slirp.
//!
//! Both give the guest the same view: address 10.0.2.15/24, gateway 10.0.2.2 (which maps to
//! the host's loopback, so a KBS on 127.0.0.1 is reachable as 10.0.2.2), DNS on 10.0.2.3
//! (forwarded to the host's first resolver), outbound connections through the host's sockets,
//! and published ports bound on the host. passt moves data with far fewer copies and syscalls
//! per packet than slirp: a published port reaches several times slirp's throughput. Where the
//! runtime can, published ports bypass the forwarder altogether ([`crate::net::InboundTap`]):
//! the stream socket has no virtio-net offloads, which under TCG costs three quarters of the
//! throughput.
//!
//! QEMU 10.0 has no `-netdev passt`, so the two are joined by `-netdev stream` over a socket
//! pair made here: passt gets one end (`--fd`), QEMU the other (`addr.type=fd`). No socket file
//! exists, so nothing else on the host can connect to the box's network, and passt (which
//! drops to `nobody` when started as root) needs no writable directory.
//!
//! passt needs a host interface with an IPv4 default route to take its parameters from; a
//! host without one (an isolated network namespace) falls back to slirp, and the box's boot
//! record says which forwarder it got and why (`inspect` shows it as `boot.forwarder`).
//!
//! So does a passt that keeps Nagle's algorithm on its host sockets (builds before mid-2023,
//! Debian bookworm's among them): a client in the box that writes a request in two pieces
//! (head, then body) over a reused connection waits for the server's delayed ACK of the
//! first, ~40 ms per request (`bench/requests.sh`: 44.8 ms against 1.7 ms in one write; slirp,
//! which sets `TCP_NODELAY`, 2.0 ms). passt sets `TCP_NODELAY` since, and its binary then
//! names the option in the message it logs when that fails; one without the name is taken
//! for an old build ([`sets_nodelay`]).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::net::HostFwd;

/// Chooses the forwarder: `passt`, `slirp`, or unset for passt when the host can run it.
pub const FORWARDER_ENV: &str = "A3S_BOX_FORWARDER";
/// The passt binary.
pub const PASST_BINARY: &str = "passt";
/// The fd number QEMU finds its end of the socket pair on.
pub const QEMU_NET_FD: RawFd = 64;
/// The fd number QEMU finds a user network's inbound TAP on ([`crate::net::InboundTap`]).
pub const QEMU_INBOUND_FD: RawFd = 65;
/// The fd number passt finds its end on.
const PASST_FD: RawFd = 3;
/// Named in a passt binary that sets `TCP_NODELAY` on its host sockets (see the module docs).
const NODELAY_MARK: &[u8] = b"TCP_NODELAY";
/// The most of a passt binary read to look for [`NODELAY_MARK`] (Debian's is 0.3 MB).
const BINARY_LIMIT: u64 = 32 << 20;

/// The link MTU on passt (passt's own default: the largest IPv4 frame it handles).
pub const MTU: u32 = 65520;

/// The guest's address on the user network (slirp's default, kept for passt).
pub const GUEST_ADDR: &str = "10.0.2.15";
/// The gateway: the host's loopback as the guest sees it.
pub const GATEWAY: &str = "10.0.2.2";
/// The DNS forwarder's address.
pub const DNS: &str = "10.0.2.3";

/// Which program carries a user network's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarder {
    /// passt, joined to QEMU by a socket pair.
    Passt,
    /// QEMU's built-in user network (slirp).
    Slirp,
}

impl Forwarder {
    /// `passt` or `slirp`, as in `A3S_BOX_FORWARDER` and `inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Passt => "passt",
            Self::Slirp => "slirp",
        }
    }
}

/// The forwarder a box got, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwarderChoice {
    /// The forwarder.
    pub forwarder: Forwarder,
    /// Why (for `inspect` and `info`).
    pub reason: String,
}

/// The forwarder could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasstError {
    /// Unknown `A3S_BOX_FORWARDER`.
    #[error("{FORWARDER_ENV}={0:?} is not a forwarder: use passt or slirp")]
    Unknown(String),
    /// passt was asked for and is not installed.
    #[error("{FORWARDER_ENV}=passt, but passt is not installed")]
    Missing,
    /// passt could not be started.
    #[error("cannot start passt ({binary})")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl PasstError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Missing | Self::Spawn { .. } => Some(format!(
                "install it (`sudo scripts/setup`, or apt-get install passt), or set \
                 {FORWARDER_ENV}=slirp for QEMU's slower built-in network"
            )),
            Self::Unknown(_) => None,
        }
    }
}

/// Chooses the forwarder for this host (see the module docs).
///
/// # Errors
/// [`PasstError::Unknown`] for a bad override, [`PasstError::Missing`] for `passt` without it.
pub fn choose() -> Result<ForwarderChoice, PasstError> {
    let over = std::env::var(FORWARDER_ENV).ok();
    let installed = locate().map(|path| {
        let nodelay = sets_nodelay(&path).map_err(|e| e.to_string());
        Installed { path, nodelay }
    });
    choose_with(
        over.as_deref(),
        installed.as_ref(),
        &std::fs::read_to_string("/proc/net/route").unwrap_or_default(),
    )
}

/// The passt found on `PATH`, and whether it sets `TCP_NODELAY` (or why that is unknown).
#[derive(Debug)]
struct Installed {
    path: PathBuf,
    nodelay: Result<bool, String>,
}

fn choose_with(
    over: Option<&str>,
    installed: Option<&Installed>,
    routes: &str,
) -> Result<ForwarderChoice, PasstError> {
    let pick = |forwarder, reason: &str| {
        Ok(ForwarderChoice {
            forwarder,
            reason: reason.to_owned(),
        })
    };
    match over.map(str::trim).filter(|o| !o.is_empty()) {
        Some("slirp") => pick(Forwarder::Slirp, "chosen by A3S_BOX_FORWARDER"),
        Some("passt") if installed.is_some() => {
            pick(Forwarder::Passt, "chosen by A3S_BOX_FORWARDER")
        }
        Some("passt") => Err(PasstError::Missing),
        Some(other) => Err(PasstError::Unknown(other.to_owned())),
        None => match installed {
            None => pick(
                Forwarder::Slirp,
                "passt is not installed (apt-get install passt)",
            ),
            Some(_) if !has_default_route(routes) => pick(
                Forwarder::Slirp,
                "no IPv4 default route on this host (passt takes its parameters from one)",
            ),
            Some(p) => match &p.nodelay {
                Ok(true) => pick(Forwarder::Passt, "default"),
                Ok(false) => pick(
                    Forwarder::Slirp,
                    &format!(
                        "{} keeps Nagle's algorithm on its host sockets (a passt from before \
                         mid-2023, such as Debian bookworm's): a request written in two \
                         pieces would wait ~40 ms for the server's delayed ACK; install a \
                         newer passt (Debian trixie's sets TCP_NODELAY), or set \
                         {FORWARDER_ENV}=passt to use this one anyway",
                        p.path.display()
                    ),
                ),
                Err(e) => pick(
                    Forwarder::Slirp,
                    &format!(
                        "cannot read {} to tell whether it sets TCP_NODELAY ({e}); set \
                         {FORWARDER_ENV}=passt to use it anyway",
                        p.path.display()
                    ),
                ),
            },
        },
    }
}

/// Whether the passt at `binary` sets `TCP_NODELAY` on its host sockets: whether the binary
/// names the option (see the module docs). Reads at most [`BINARY_LIMIT`] bytes.
///
/// # Errors
/// The file cannot be read.
fn sets_nodelay(binary: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(binary)?
        .take(BINARY_LIMIT)
        .read_to_end(&mut bytes)?;
    Ok(bytes.windows(NODELAY_MARK.len()).any(|w| w == NODELAY_MARK))
}

/// Whether `/proc/net/route` has an IPv4 default route.
fn has_default_route(routes: &str) -> bool {
    routes.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags ...; RTF_UP is bit 0 of Flags.
        f.len() > 3
            && f[1] == "00000000"
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 1 == 1)
    })
}

/// The passt binary on `PATH`.
pub fn locate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(PASST_BINARY))
        .find(|p| p.is_file())
}

/// passt's arguments for `forwards` (pure: unit-tested).
pub fn passt_args(forwards: &[HostFwd]) -> Vec<OsString> {
    // passt forwards no port unless told to.
    let mut a: Vec<String> = [
        "--foreground",
        "--quiet",
        "--ipv4-only",
        "--fd",
        &PASST_FD.to_string(),
        "--address",
        GUEST_ADDR,
        "--netmask",
        "24",
        "--gateway",
        GATEWAY,
        "--dns-forward",
        DNS,
        "--mtu",
        &MTU.to_string(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for udp in [false, true] {
        for f in forwards.iter().filter(|f| f.udp == udp) {
            a.push(if udp { "--udp-ports" } else { "--tcp-ports" }.to_owned());
            a.push(format!("{}/{}:{}", f.host_ip, f.host, f.guest));
        }
    }
    a.into_iter().map(OsString::from).collect()
}

/// QEMU's arguments for a NIC on passt's socket pair.
pub fn qemu_netdev() -> String {
    format!("stream,id=net0,server=off,addr.type=fd,addr.str={QEMU_NET_FD}")
}

/// A running passt; killed and reaped when dropped.
#[derive(Debug)]
pub struct Passt {
    child: Child,
}

impl Passt {
    /// Starts passt for `forwards`, logging to `log`; returns it and QEMU's end of the pair,
    /// which [`give_to_qemu`] places at [`QEMU_NET_FD`]. `mergeable`: the host's KSM may
    /// merge its memory (a plain box's, as its guest RAM; see [`crate::host_pages`]).
    ///
    /// # Errors
    /// [`PasstError`]; no process is left behind.
    pub fn spawn(
        forwards: &[HostFwd],
        log: &Path,
        mergeable: bool,
    ) -> Result<(Self, OwnedFd), PasstError> {
        let binary = locate().ok_or(PasstError::Missing)?;
        let spawn_err = |source| PasstError::Spawn {
            binary: binary.clone(),
            source,
        };
        let (ours, theirs) = UnixStream::pair().map_err(spawn_err)?;
        for end in [&ours, &theirs] {
            widen_send_buffer(end);
        }
        let log = std::fs::File::create(log).map_err(spawn_err)?;
        let mut cmd = Command::new(&binary);
        cmd.args(passt_args(forwards))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        let fd = ours.as_raw_fd();
        place_fd(&mut cmd, fd, PASST_FD);
        if mergeable {
            crate::host_pages::merge_any(&mut cmd);
        }
        let child = cmd.spawn().map_err(spawn_err)?;
        drop(ours);
        Ok((Self { child }, OwnedFd::from(theirs)))
    }

    /// passt's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many bytes each end of the socket pair may have in flight (`SO_SNDBUF`).
pub const SEND_BUFFER: usize = 4 << 20;

/// Raises `end`'s send buffer to [`SEND_BUFFER`]. At the kernel's default (`wmem_default`,
/// 208 KiB) only three 64 KiB frames fit; passt drops the frames that do not and the guest's
/// TCP waits for retransmissions: a download from the host into a TCG box ran at 5-10 MB/s
/// with stalls, against 45 MB/s on slirp. `SO_SNDBUFFORCE` (root) passes `wmem_max`; without
/// CAP_NET_ADMIN the kernel caps `SO_SNDBUF` at `wmem_max`, which still helps.
fn widen_send_buffer(end: &UnixStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(end, sockopt::SndBufForce, &SEND_BUFFER).is_err() {
        let _ = setsockopt(end, sockopt::SndBuf, &SEND_BUFFER);
    }
}

/// Makes `fd` QEMU's [`QEMU_NET_FD`] in the child `cmd` starts.
pub fn give_to_qemu(cmd: &mut Command, fd: &OwnedFd) {
    place_fd(cmd, fd.as_raw_fd(), QEMU_NET_FD);
}

/// Makes `fd` QEMU's [`QEMU_INBOUND_FD`] in the child `cmd` starts.
pub fn give_inbound_to_qemu(cmd: &mut Command, fd: &OwnedFd) {
    place_fd(cmd, fd.as_raw_fd(), QEMU_INBOUND_FD);
}

/// In the child: `from` becomes `to`, inherited across exec; the child also dies with the
/// thread that spawned it.
#[allow(unsafe_code)]
fn place_fd(cmd: &mut Command, from: RawFd, to: RawFd) {
    // SAFETY: the closure runs in the forked child before exec and calls only dup2(2),
    // fcntl(2) and prctl(2), which are async-signal-safe; it allocates nothing and takes no
    // locks. `from` stays open in the parent until the child has been spawned.
    unsafe {
        cmd.pre_exec(move || {
            use nix::fcntl::{fcntl, FcntlArg, FdFlag};
            if from == to {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                let fd = std::os::fd::BorrowedFd::borrow_raw(to);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(std::io::Error::from)?;
            } else if nix::libc::dup2(from, to) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
        eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
    const NO_DEFAULT: &str = "Iface\tDestination\tGateway \tFlags\n\
        hjv0\t000200C0\t00000000\t0001\n";

    fn passt(nodelay: Result<bool, String>) -> Option<Installed> {
        Some(Installed {
            path: PathBuf::from("/usr/bin/passt"),
            nodelay,
        })
    }

    #[test]
    fn passt_is_the_default_where_it_can_run() {
        let new = passt(Ok(true));
        let c = choose_with(None, new.as_ref(), ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Passt);
        let c = choose_with(Some(" "), new.as_ref(), ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Passt);
        let c = choose_with(None, None, ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Slirp);
        assert!(c.reason.contains("not installed"), "{}", c.reason);
        let c = choose_with(None, new.as_ref(), NO_DEFAULT).unwrap();
        assert_eq!(c.forwarder, Forwarder::Slirp);
        assert!(c.reason.contains("default route"), "{}", c.reason);
    }

    #[test]
    fn a_passt_that_keeps_nagle_is_not_the_default() {
        let c = choose_with(None, passt(Ok(false)).as_ref(), ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Slirp);
        for said in [
            "/usr/bin/passt keeps Nagle",
            "delayed ACK",
            "A3S_BOX_FORWARDER=passt",
        ] {
            assert!(c.reason.contains(said), "{said}: {}", c.reason);
        }
        let c = choose_with(
            None,
            passt(Err("Permission denied".into())).as_ref(),
            ROUTES,
        )
        .unwrap();
        assert_eq!(c.forwarder, Forwarder::Slirp);
        assert!(
            c.reason.contains("cannot read /usr/bin/passt"),
            "{}",
            c.reason
        );
        assert!(c.reason.contains("Permission denied"), "{}", c.reason);
        // Asked for by name, it is used.
        let c = choose_with(Some("passt"), passt(Ok(false)).as_ref(), ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Passt);
    }

    #[test]
    fn the_override_is_obeyed_or_refused() {
        let new = passt(Ok(true));
        let c = choose_with(Some("slirp"), new.as_ref(), ROUTES).unwrap();
        assert_eq!(c.forwarder, Forwarder::Slirp);
        let c = choose_with(Some("passt"), new.as_ref(), NO_DEFAULT).unwrap();
        assert_eq!(c.forwarder, Forwarder::Passt);
        assert!(matches!(
            choose_with(Some("passt"), None, ROUTES),
            Err(PasstError::Missing)
        ));
        let e = choose_with(Some("vde"), new.as_ref(), ROUTES).unwrap_err();
        assert!(e.to_string().contains("use passt or slirp"), "{e}");
    }

    #[test]
    fn names_match_the_serialized_forwarder() {
        for f in [Forwarder::Passt, Forwarder::Slirp] {
            assert_eq!(serde_json::to_value(f).unwrap(), f.name());
        }
    }

    #[test]
    fn a_binary_that_names_tcp_nodelay_sets_it() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new");
        let mut bytes = vec![0u8; 4096];
        bytes.extend_from_slice(b"TCP: failed to set TCP_NODELAY on socket %i\0");
        std::fs::write(&new, &bytes).unwrap();
        assert!(sets_nodelay(&new).unwrap());
        let old = dir.path().join("old");
        std::fs::write(&old, b"\x7fELF passt unknown version TCP_CORK").unwrap();
        assert!(!sets_nodelay(&old).unwrap());
        assert!(sets_nodelay(&dir.path().join("absent")).is_err());
        // The machine's own passt builds, whichever they are, are judged without error.
        for p in ["/usr/bin/passt", "/usr/local/bin/passt"] {
            if Path::new(p).is_file() {
                let v = sets_nodelay(Path::new(p)).unwrap();
                eprintln!("{p}: sets TCP_NODELAY: {v}");
            }
        }
    }

    #[test]
    fn published_ports_become_bound_forwards() {
        let fwd = |udp, ip: [u8; 4], host, guest| HostFwd {
            udp,
            host_ip: ip.into(),
            host,
            guest,
        };
        let s = |f: &[HostFwd]| {
            passt_args(f)
                .into_iter()
                .map(|a| a.into_string().unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let base = "--foreground --quiet --ipv4-only --fd 3 --address 10.0.2.15 --netmask 24 \
                    --gateway 10.0.2.2 --dns-forward 10.0.2.3 --mtu 65520";
        assert_eq!(
            s(&[]),
            base.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        assert_eq!(
            s(&[
                fwd(false, [127, 0, 0, 1], 8080, 80),
                fwd(true, [0, 0, 0, 0], 5353, 53),
                fwd(false, [0, 0, 0, 0], 8443, 443),
            ]),
            format!(
                "{} --tcp-ports 127.0.0.1/8080:80 --tcp-ports 0.0.0.0/8443:443 \
                 --udp-ports 0.0.0.0/5353:53",
                s(&[])
            )
        );
    }

    #[test]
    fn qemus_end_of_the_pair_holds_many_large_frames() {
        use nix::sys::socket::{getsockopt, sockopt};
        let Some(_) = locate() else {
            eprintln!("passt is not installed: skipping (scripts/setup installs it)");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (passt, qemu_end) = Passt::spawn(&[], &dir.path().join("passt.log"), false).unwrap();
        let sndbuf = getsockopt(&qemu_end, sockopt::SndBuf).unwrap();
        // The kernel reports twice what was set (its bookkeeping overhead). Its default is
        // wmem_default (208 KiB on Debian); without CAP_NET_ADMIN wmem_max caps the request.
        let want = if crate::host::has_net_admin() {
            SEND_BUFFER
        } else {
            let max = std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap();
            SEND_BUFFER.min(max.trim().parse().unwrap())
        };
        assert_eq!(sndbuf, 2 * want, "SO_SNDBUF of QEMU's end");
        drop(passt);
    }

    #[test]
    fn has_default_route_needs_an_up_default() {
        assert!(has_default_route(ROUTES));
        assert!(!has_default_route(NO_DEFAULT));
        assert!(!has_default_route(""));
        assert!(!has_default_route(
            "Iface\tDestination\tGateway\tFlags\neth0\t00000000\t0100000A\t0002\n"
        ));
    }
}
