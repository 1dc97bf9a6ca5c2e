//! The embedded DNS server of a bridge network (Docker's 127.0.0.11): boxes resolve each
//! other's names, hostnames and `--network-alias`es through the network's gateway address,
//! and every other name is forwarded to the host's resolvers.
//!
//! Who hosts it: every running box's monitor binds UDP `gateway:53` with `SO_REUSEPORT`, so
//! the kernel spreads queries over the monitors of the network's running boxes. Each answers
//! from the network file as it is *now* (read per query), so all answer alike and a box
//! created later is resolvable at once; the server lives exactly as long as some box of the
//! network runs and needs no helper process that could be left behind.
//!
//! A name resolves from the box's create to its removal (its address is reserved for it that
//! long), like the `/etc/hosts` entries it replaces. A box on several networks asks the DNS
//! server of its first one, which answers it (as Docker's does) with the names of all the
//! box's networks, its own network's first.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

use super::{NetError, Network, Networks};
use crate::home::A3sHome;

/// The DNS port.
pub const PORT: u16 = 53;
/// The largest datagram read or relayed (EDNS's common 4096-byte limit).
pub const MAX_DATAGRAM: usize = 4096;
/// How long an upstream resolver may take.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// TTL of local answers: short, since boxes come and go.
const LOCAL_TTL: u32 = 5;
/// Forwarded queries in flight at once; more are answered SERVFAIL.
const MAX_IN_FLIGHT: usize = 64;

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not a local name: ask the host's resolvers.
    Forward,
    /// Not a well-formed query: drop it.
    Drop,
}

/// Answers `query` from networks `scope` (the first match wins): `A` records for their boxes'
/// names, hostnames and aliases; an empty answer for other types of those names (so resolvers
/// do not go elsewhere); [`Answer::Forward`] for every other name.
pub fn answer(query: &[u8], scope: &[Network]) -> Answer {
    let Ok(msg) = Message::from_vec(query) else {
        return Answer::Drop;
    };
    if msg.message_type() != MessageType::Query {
        return Answer::Drop;
    }
    let reply = |code: ResponseCode, answers: Vec<Record>| {
        let mut r = Message::error_msg(msg.id(), msg.op_code(), code);
        r.set_recursion_desired(msg.recursion_desired())
            .set_recursion_available(true)
            .add_queries(msg.queries().iter().cloned())
            .add_answers(answers);
        r.set_authoritative(code == ResponseCode::NoError && !msg.queries().is_empty());
        r.to_vec().map_or(Answer::Drop, Answer::Reply)
    };
    let [q] = msg.queries() else {
        return reply(ResponseCode::FormErr, vec![]);
    };
    if msg.op_code() != OpCode::Query {
        return reply(ResponseCode::NotImp, vec![]);
    }
    let name = q.name().to_ascii();
    let name = name.trim_end_matches('.');
    let Some(ip) = scope.iter().find_map(|n| lookup(n, name)) else {
        return Answer::Forward;
    };
    let answers = match q.query_type() {
        RecordType::A | RecordType::ANY => {
            vec![Record::from_rdata(
                q.name().clone(),
                LOCAL_TTL,
                RData::A(A(ip)),
            )]
        }
        _ => vec![],
    };
    reply(ResponseCode::NoError, answers)
}

/// The address of the box that `name` names on `n` (also as `name.<network>`).
pub fn lookup(n: &Network, name: &str) -> Option<Ipv4Addr> {
    let suffix = format!(".{}", n.name);
    let short = name
        .len()
        .checked_sub(suffix.len())
        .filter(|&i| name[i..].eq_ignore_ascii_case(&suffix))
        .map_or(name, |i| &name[..i]);
    n.endpoints
        .values()
        .find(|e| e.answers_to(short))
        .map(|e| e.ip)
}

/// SERVFAIL for `query` (an upstream failed or none is configured).
fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let msg = Message::from_vec(query).ok()?;
    let mut r = Message::error_msg(msg.id(), msg.op_code(), ResponseCode::ServFail);
    r.set_recursion_desired(msg.recursion_desired())
        .set_recursion_available(true)
        .add_queries(msg.queries().iter().cloned());
    r.to_vec().ok()
}

/// The host's resolvers (`/etc/resolv.conf`, port 53); loopback ones work too, since the
/// server runs on the host.
pub fn host_resolvers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, PORT))
        .collect()
}

/// Asks each upstream in turn; the first reply that carries the query's id wins.
fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        if s.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
            || s.connect(up).is_err()
            || s.send(query).is_err()
        {
            continue;
        }
        let mut buf = vec![0u8; MAX_DATAGRAM];
        if let Ok(len) = s.recv(&mut buf) {
            if buf.get(..2) == Some(id) {
                buf.truncate(len);
                return Some(buf);
            }
        }
    }
    None
}

/// A running DNS server; stops (and unbinds) when dropped.
#[derive(Debug)]
pub struct DnsServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves network `network` on `gateway:53` (shared with the network's other monitors).
    ///
    /// # Errors
    /// [`NetError::Host`] when the socket cannot be bound.
    pub fn start(home: &A3sHome, network: &str, gateway: Ipv4Addr) -> Result<Self, NetError> {
        let socket = bind_shared(SocketAddrV4::new(gateway, PORT)).map_err(|e| NetError::Host {
            command: format!("binding the DNS server of {network} on {gateway}:{PORT}"),
            message: e.to_string(),
        })?;
        // Wakes the loop now and then to see `stop`.
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Serve {
            socket: Arc::new(socket),
            home: home.clone(),
            nets: Networks::open(home),
            network: network.to_owned(),
            upstreams: Arc::new(host_resolvers(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            )),
            in_flight: Arc::new(AtomicUsize::new(0)),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("dns".into())
            .spawn(move || ctx.run())?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_shared(at: SocketAddrV4) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(true)?;
    s.bind(&at.into())?;
    Ok(s.into())
}

struct Serve {
    socket: Arc<UdpSocket>,
    home: A3sHome,
    nets: Networks,
    network: String,
    upstreams: Arc<Vec<SocketAddr>>,
    in_flight: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Serve {
    fn run(self) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while !self.stop.load(Ordering::Relaxed) {
            let Ok((len, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let query = &buf[..len];
            // Read per query: boxes created or removed since are answered correctly.
            let Ok(n) = self.nets.get(&self.network) else {
                continue;
            };
            let mut scope = vec![n];
            scope.extend(self.other_networks_of(&scope[0], from));
            match answer(query, &scope) {
                Answer::Reply(r) => drop(self.socket.send_to(&r, from)),
                Answer::Drop => {}
                Answer::Forward => self.forward(query.to_vec(), from),
            }
        }
    }

    /// The other networks of the box that sent a query from `from` on `n` (none for a sender
    /// that is no box of `n`).
    fn other_networks_of(&self, n: &Network, from: SocketAddr) -> Vec<Network> {
        let std::net::IpAddr::V4(ip) = from.ip() else {
            return Vec::new();
        };
        let Some(id) = n
            .endpoints
            .iter()
            .find_map(|(id, e)| (e.ip == ip).then_some(id))
        else {
            return Vec::new();
        };
        let dir = self.home.root().join("boxes").join(id);
        let Ok(net) = super::BoxNet::load(&dir) else {
            return Vec::new();
        };
        net.attachments()
            .iter()
            .filter(|a| a.network != n.name)
            .filter_map(|a| self.nets.get(&a.network).ok())
            .collect()
    }

    /// Forwards on its own thread, so a slow upstream does not hold up local answers.
    fn forward(&self, query: Vec<u8>, from: SocketAddr) {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Some(r) = servfail(&query) {
                let _ = self.socket.send_to(&r, from);
            }
            return;
        }
        let (socket, upstreams, in_flight) = (
            self.socket.clone(),
            self.upstreams.clone(),
            self.in_flight.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("dns-forward".into())
            .spawn(move || {
                if let Some(r) = forward(&query, &upstreams).or_else(|| servfail(&query)) {
                    let _ = socket.send_to(&r, from);
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;
    use crate::network::store::Endpoint;

    fn network() -> Network {
        let mut n: Network = serde_json::from_value(serde_json::json!({
            "version": 1, "name": "shop", "id": "0123456789abcdef",
            "subnet": "10.77.5.0/24", "gateway": "10.77.5.1", "isolation": "none",
            "created_at": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        n.endpoints.insert(
            "a".repeat(64),
            Endpoint {
                name: "shop-db-1".into(),
                ip: Ipv4Addr::new(10, 77, 5, 2),
                aliases: vec!["db".into(), "database".into()],
                hostname: Some("pg".into()),
            },
        );
        n
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new();
        m.set_id(0x4242)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn reply(a: Answer) -> Message {
        match a {
            Answer::Reply(r) => Message::from_vec(&r).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn names_aliases_and_hostnames_get_the_box_address() {
        for name in ["shop-db-1.", "db.", "DATABASE.", "pg.", "db.shop."] {
            let r = reply(answer(
                &query(name, RecordType::A),
                std::slice::from_ref(&network()),
            ));
            assert_eq!(r.id(), 0x4242);
            assert_eq!(r.response_code(), ResponseCode::NoError);
            assert_eq!(
                r.answers()[0].data(),
                &RData::A(A(Ipv4Addr::new(10, 77, 5, 2))),
                "{name}"
            );
        }
    }

    #[test]
    fn a_box_on_two_networks_resolves_names_of_both_its_own_first() {
        let mut other = network();
        other.name = "cache".into();
        other.endpoints.clear();
        other.endpoints.insert(
            "b".repeat(64),
            Endpoint {
                name: "shop-cache-1".into(),
                ip: Ipv4Addr::new(10, 77, 9, 2),
                aliases: vec!["db".into()],
                hostname: None,
            },
        );
        let scope = [network(), other];
        let a = |name: &str, scope: &[Network]| match answer(&query(name, RecordType::A), scope) {
            Answer::Reply(r) => Message::from_vec(&r).unwrap().answers()[0].data().clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(
            a("shop-cache-1.", &scope),
            RData::A(A(Ipv4Addr::new(10, 77, 9, 2)))
        );
        // The same name on both: the asking network's own box.
        assert_eq!(a("db.", &scope), RData::A(A(Ipv4Addr::new(10, 77, 5, 2))));
        assert_eq!(
            answer(&query("shop-cache-1.", RecordType::A), &scope[..1]),
            Answer::Forward
        );
    }

    #[test]
    fn other_types_of_a_local_name_are_empty_not_forwarded() {
        let r = reply(answer(
            &query("db.", RecordType::AAAA),
            std::slice::from_ref(&network()),
        ));
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.answers().is_empty());
    }

    #[test]
    fn unknown_names_are_forwarded_and_garbage_is_dropped() {
        assert_eq!(
            answer(
                &query("example.org.", RecordType::A),
                std::slice::from_ref(&network())
            ),
            Answer::Forward
        );
        assert_eq!(
            answer(b"\x01\x02junk", std::slice::from_ref(&network())),
            Answer::Drop
        );
    }

    #[test]
    fn forwarding_relays_a_real_upstream_reply_and_fails_as_servfail() {
        // A real UDP resolver on loopback that answers every query with one A record.
        let up = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = up.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (len, from) = up.recv_from(&mut buf).unwrap();
            let q = Message::from_vec(&buf[..len]).unwrap();
            let mut r = Message::error_msg(q.id(), q.op_code(), ResponseCode::NoError);
            r.add_queries(q.queries().iter().cloned())
                .add_answer(Record::from_rdata(
                    q.queries()[0].name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
                ));
            up.send_to(&r.to_vec().unwrap(), from).unwrap();
        });
        let q = query("example.org.", RecordType::A);
        let r = Message::from_vec(&forward(&q, &[addr]).unwrap()).unwrap();
        assert_eq!(
            r.answers()[0].data(),
            &RData::A(A(Ipv4Addr::new(192, 0, 2, 7)))
        );
        t.join().unwrap();
        let r = Message::from_vec(&servfail(&q).unwrap()).unwrap();
        assert_eq!(r.response_code(), ResponseCode::ServFail);
    }

    #[test]
    fn resolv_conf_nameservers_become_upstreams() {
        let u = host_resolvers("# x\nnameserver 127.0.0.53\nsearch lan\nnameserver 10.0.0.1\n");
        assert_eq!(
            u,
            [
                "127.0.0.53:53".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_live_server_answers_over_udp_from_the_current_network_file() {
        let t = tempfile::tempdir().unwrap();
        let home = A3sHome::at(t.path());
        let nets = Networks::open(&home);
        nets.create(&crate::network::CreateNetwork {
            name: "live".into(),
            subnet: Some("10.77.6.0/24".into()),
            ..Default::default()
        })
        .unwrap();
        // A loopback address of this run's own, so parallel runs never share a socket group.
        let [_, _, hi, lo] = std::process::id().to_be_bytes();
        let at = Ipv4Addr::new(127, 53, hi, lo.max(1));
        // Two servers share the port, as two monitors of one network do.
        let s1 = DnsServer::start(&home, "live", at);
        let s2 = DnsServer::start(&home, "live", at);
        let (Ok(_s1), Ok(_s2)) = (s1, s2) else {
            // Port 53 needs root (or CAP_NET_BIND_SERVICE); CI runs as root.
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot bind port 53 under CI"
            );
            return;
        };
        let id = crate::state::BoxId::random();
        std::fs::create_dir_all(home.root().join("boxes").join(id.as_str())).unwrap();
        nets.attach(
            "live",
            &id,
            &crate::network::store::Join {
                name: "later".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.send_to(&query("later.", RecordType::A), (at, PORT))
            .unwrap();
        let mut buf = [0u8; 512];
        let len = c.recv(&mut buf).unwrap();
        let r = Message::from_vec(&buf[..len]).unwrap();
        assert!(matches!(r.answers()[0].data(), RData::A(_)));
    }
}
