//! Published ports of a bridged box: userland TCP and UDP relays from the host address to the
//! box's address on its bridge (Docker's `docker-proxy`).
//!
//! They run as threads of the box's monitor, so they exist exactly while the box runs and
//! vanish with it (a monitor killed outright takes its sockets along; no rule or process is
//! left behind). A userland relay also serves `127.0.0.1` binds, which DNAT rules cannot
//! without `route_localnet`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{NetError, PortMap, Proto};

/// How long connecting to the box may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// UDP peers relayed at once per port; the oldest is dropped past this.
const MAX_UDP_PEERS: usize = 256;
/// A UDP peer silent this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// How often an idle listener looks at whether its box has stopped.
const STOP_CHECK: Duration = Duration::from_millis(200);
/// The largest datagram relayed.
const MAX_DATAGRAM: usize = 65_535;

/// The relays of one box; they stop when this is dropped.
#[derive(Debug)]
pub struct Forwarders {
    stop: Arc<AtomicBool>,
}

impl Forwarders {
    /// No relays.
    pub fn none() -> Self {
        Self {
            stop: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Binds every published port of a box at `target` and starts relaying.
///
/// # Errors
/// [`NetError::PortInUse`] for a host port taken since create.
pub fn start(ports: &[PortMap], target: Ipv4Addr) -> Result<Forwarders, NetError> {
    start_in(ports, target, None)
}

/// [`start`], with the connections to `target` made from network namespace `netns` (a
/// default-network box's inbound link, [`super::inbound`]); the host ports are bound here.
///
/// # Errors
/// [`NetError::PortInUse`] for a host port taken since create.
pub fn start_in(
    ports: &[PortMap],
    target: Ipv4Addr,
    netns: Option<Arc<OwnedFd>>,
) -> Result<Forwarders, NetError> {
    let stop = Arc::new(AtomicBool::new(false));
    // Bind all first: a box whose ports cannot all be published does not start.
    let mut bound = Vec::new();
    for p in ports {
        let at = SocketAddrV4::new(p.host_ip, p.host);
        let err = |source| NetError::PortInUse {
            addr: format!("{at}/{}", p.proto.as_str()),
            source,
        };
        bound.push(match p.proto {
            Proto::Tcp => Bound::Tcp(TcpListener::bind(at).map_err(err)?, *p),
            Proto::Udp => Bound::Udp(UdpSocket::bind(at).map_err(err)?, *p),
        });
    }
    // Dropped on an early return: the relays started so far stop.
    let relays = Forwarders { stop };
    for b in bound {
        let stop = relays.stop.clone();
        let netns = netns.clone();
        // Threads start in the namespace of the thread that makes them: the relays' own
        // threads, and the sockets they open, are all in `netns`. Each says whether it got
        // there before the box starts, so a relay that cannot reach the box fails the start
        // instead of leaving a port that refuses every client.
        let (entered, in_netns) = std::sync::mpsc::sync_channel(1);
        // Enters `netns`; on failure the host socket is closed before the start hears of it.
        let enter = move |socket: Bound| {
            let r = netns.map_or(Ok(()), |ns| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            });
            let socket = r.is_ok().then_some(socket);
            let _ = entered.send(r);
            socket
        };
        let name = match &b {
            Bound::Tcp(_, p) => format!("fwd-tcp-{}", p.host),
            Bound::Udp(_, p) => format!("fwd-udp-{}", p.host),
        };
        std::thread::Builder::new()
            .name(name)
            .spawn(move || match enter(b) {
                Some(Bound::Tcp(l, p)) => {
                    tcp_loop(&l, SocketAddrV4::new(target, p.guest).into(), &stop);
                }
                Some(Bound::Udp(s, p)) => {
                    udp_loop(&s, SocketAddrV4::new(target, p.guest), &stop);
                }
                None => {}
            })?;
        match in_netns.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(NetError::Host {
                    command: "setns(the box's network namespace)".into(),
                    message: e.to_string(),
                })
            }
            Err(_) => {
                return Err(NetError::Host {
                    command: "setns(the box's network namespace)".into(),
                    message: "the relay thread ended before entering it".into(),
                })
            }
        }
    }
    Ok(relays)
}

/// A TCP relay from `listen` (port 0: a free one) to `target`, the other way round from a
/// published port: a bridged box reaching a host-loopback service (its KBS) through its
/// network's gateway address. Returns the relay (stops on drop) and the bound address.
///
/// # Errors
/// [`NetError::PortInUse`] when `listen` cannot be bound.
pub fn relay_to(
    listen: SocketAddrV4,
    target: SocketAddr,
) -> Result<(Forwarders, SocketAddrV4), NetError> {
    let l = TcpListener::bind(listen).map_err(|source| NetError::PortInUse {
        addr: format!("{listen}/tcp"),
        source,
    })?;
    let bound = match l.local_addr()? {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => listen,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name(format!("relay-{}", bound.port()))
        .spawn(move || tcp_loop(&l, target, &flag))?;
    Ok((Forwarders { stop }, bound))
}

enum Bound {
    Tcp(TcpListener, PortMap),
    Udp(UdpSocket, PortMap),
}

fn tcp_loop(l: &TcpListener, target: SocketAddr, stop: &AtomicBool) {
    if l.set_nonblocking(true).is_err() {
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        // Wait for a client in the kernel, waking only to look at `stop`: a sleep-and-retry
        // loop added up to its period to every connection (25 ms on average at 50 ms).
        if !readable_within(l, STOP_CHECK) {
            continue;
        }
        match l.accept() {
            Ok((client, _)) => {
                let _ = std::thread::Builder::new()
                    .name("fwd-conn".into())
                    .spawn(move || relay_tcp(client, target));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // Out of descriptors and the like: back off rather than spin.
            Err(_) => std::thread::sleep(STOP_CHECK),
        }
    }
}

/// Whether `l` has a connection to accept within `wait`.
fn readable_within(l: &TcpListener, wait: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(l.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    matches!(poll(&mut fds, timeout), Ok(n) if n > 0)
}

/// Copies both ways until each side has closed its half.
fn relay_tcp(client: TcpStream, target: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let Ok(upstream) = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) else {
        // The box does not listen (yet): close, like a refused connection.
        return;
    };
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = std::thread::spawn(move || pipe(u2, c2));
    pipe(client, upstream);
    let _ = back.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One host socket; one upstream socket per client peer, whose replies go back to it.
fn udp_loop(host: &UdpSocket, target: SocketAddrV4, stop: &Arc<AtomicBool>) {
    let Ok(host) = host.try_clone().map(Arc::new) else {
        return;
    };
    if host
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return;
    }
    let peers: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !stop.load(Ordering::Relaxed) {
        let Ok((len, from)) = host.recv_from(&mut buf) else {
            continue;
        };
        let Some(up) = peer(&peers, &host, from, target, stop) else {
            continue;
        };
        let _ = up.send(&buf[..len]);
    }
}

fn peer(
    peers: &Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>>,
    host: &Arc<UdpSocket>,
    from: SocketAddr,
    target: SocketAddrV4,
    stop: &Arc<AtomicBool>,
) -> Option<Arc<UdpSocket>> {
    let mut map = peers.lock().ok()?;
    if let Some(up) = map.get(&from) {
        return Some(up.clone());
    }
    if map.len() >= MAX_UDP_PEERS {
        return None;
    }
    let up = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    up.connect(target).ok()?;
    up.set_read_timeout(Some(UDP_IDLE)).ok()?;
    let up = Arc::new(up);
    map.insert(from, up.clone());
    let (host, peers, up2, stop) = (host.clone(), peers.clone(), up.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        // Replies until the peer is idle for UDP_IDLE or the box stops.
        while let Ok(len) = up2.recv(&mut buf) {
            if stop.load(Ordering::Relaxed) || host.send_to(&buf[..len], from).is_err() {
                break;
            }
        }
        if let Ok(mut m) = peers.lock() {
            m.remove(&from);
        }
    });
    Some(up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_that_cannot_enter_the_boxs_namespace_fails_the_start_and_frees_its_port() {
        // A plain file is no namespace: setns refuses it.
        let not_a_namespace = Arc::new(OwnedFd::from(tempfile::tempfile().unwrap()));
        let port = free(Proto::Tcp);
        let r = start_in(&[port], Ipv4Addr::LOCALHOST, Some(not_a_namespace));
        match r {
            Err(NetError::Host { command, .. }) => assert!(command.contains("setns"), "{command}"),
            other => panic!("started anyway: {other:?}"),
        }
        assert!(TcpListener::bind(("127.0.0.1", port.host)).is_ok());
    }

    fn free(proto: Proto) -> PortMap {
        let port = match proto {
            Proto::Tcp => TcpListener::bind("127.0.0.1:0").unwrap().local_addr(),
            Proto::Udp => UdpSocket::bind("127.0.0.1:0").unwrap().local_addr(),
        }
        .unwrap()
        .port();
        PortMap {
            proto,
            ..PortMap::tcp(port, 0)
        }
    }

    #[test]
    fn tcp_is_relayed_both_ways_to_the_target() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let guest = echo.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b.map(|c| c.to_ascii_uppercase())).unwrap();
        });
        let p = PortMap {
            guest,
            ..free(Proto::Tcp)
        };
        let _f = start(&[p], Ipv4Addr::LOCALHOST).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", p.host)).unwrap();
        c.write_all(b"hello").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "HELLO");
        t.join().unwrap();
    }

    #[test]
    fn a_relay_on_a_free_port_reaches_its_target() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut b = [0u8; 3];
            s.read_exact(&mut b).unwrap();
            s.write_all(b"kbs").unwrap();
        });
        let (_relay, at) = relay_to(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), target).unwrap();
        assert_ne!(at.port(), 0);
        let mut c = TcpStream::connect(at).unwrap();
        c.write_all(b"get").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(got, "kbs");
        t.join().unwrap();
    }

    #[test]
    fn udp_is_relayed_both_ways_to_the_target() {
        let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
        let guest = echo.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut b = [0u8; 16];
            let (n, from) = echo.recv_from(&mut b).unwrap();
            echo.send_to(&b[..n].to_ascii_uppercase(), from).unwrap();
        });
        let p = PortMap {
            guest,
            ..free(Proto::Udp)
        };
        let _f = start(&[p], Ipv4Addr::LOCALHOST).unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.send_to(b"ping", ("127.0.0.1", p.host)).unwrap();
        let mut b = [0u8; 16];
        let n = c.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"PING");
        t.join().unwrap();
    }

    #[test]
    fn a_taken_host_port_fails_the_start_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = start(&[PortMap::tcp(port, 80)], Ipv4Addr::LOCALHOST).unwrap_err();
        assert!(
            e.to_string().contains(&format!("127.0.0.1:{port}/tcp")),
            "{e}"
        );
    }
}
