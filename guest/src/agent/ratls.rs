//! RA-TLS served by the guest: on channel sessions (`a3s-box attest`) and, when asked, on a TCP
//! port for remote verifiers.
//!
//! A channel session N opened by `RatlsOpen` is a byte stream: the verifier's TLS bytes arrive
//! as stdin frames for N (stdin-closed at its end), the guest's go out as stdout frames for N.
//! The guest runs [`a3s_ratls::serve`] on it (TLS 1.3 handshake, then the freshness exchange),
//! then sends TLS close_notify and ends the session with `Exited { code: 0 }`; on failure it
//! first sends `Error { message }` on N and then `Exited { code: 1 }`. Every stdout frame of
//! the session precedes its `Exited`.
//!
//! After the freshness exchange the verifier either closes (attestation only) or sends one
//! secret ([`a3s_ratls::delivery`], `a3s-box secret inject`): the guest places it in
//! `/run/secrets/<name>` (0400, the workload's) and answers. Secrets are accepted only on
//! channel sessions, which the box's owner opens through its monitor; a remote verifier on
//! the TCP port can attest but not write into the box.
//!
//! The P-384 identity is made once per boot, at the first connection, and reused.
//!
//! All of this runs on one small current-thread tokio runtime on its own thread; the
//! channel's read loop feeds it through [`RatlsService`]'s methods, which never block.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_ratls::delivery::{self, SecretDelivery};
use a3s_ratls::{Attested, EvidenceKind, Identity, ServerConfig};
use a3s_vmm::proto::{Frame, GuestMsg, Kind};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::OnceCell;

use super::attester::SharedAttester;
use super::secrets::{self, InjectTarget, Secret};
use crate::channel::Channel;

/// Longest an RA-TLS connection may take, handshake and freshness exchange included.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of the in-memory pipe between a channel session and the TLS server.
const PIPE_BYTES: usize = 64 * 1024;
/// Largest stdout frame the guest sends for a session.
const CHUNK: usize = 16 * 1024;

enum Cmd {
    Open(u32),
    Data(u32, Vec<u8>),
    Close(u32),
    Listen(std::net::TcpListener),
}

struct Ctx {
    chan: Channel,
    attester: SharedAttester,
    kind: EvidenceKind,
    identity: OnceCell<Arc<Identity>>,
    sessions: Arc<Mutex<HashSet<u32>>>,
    inject: InjectTarget,
}

/// Handle to the RA-TLS server thread.
#[derive(Debug)]
pub(crate) struct RatlsService {
    cmds: UnboundedSender<Cmd>,
    sessions: Arc<Mutex<HashSet<u32>>>,
}

impl RatlsService {
    /// Starts the server thread; identities are made with `attester` as evidence of `kind`;
    /// injected secrets go to `inject`.
    ///
    /// # Errors
    /// When the runtime or its thread cannot be created.
    pub(crate) fn start(
        chan: Channel,
        attester: SharedAttester,
        kind: EvidenceKind,
        inject: InjectTarget,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (cmds, rx) = mpsc::unbounded_channel();
        let sessions = Arc::new(Mutex::new(HashSet::new()));
        let ctx = Arc::new(Ctx {
            chan,
            attester,
            kind,
            identity: OnceCell::new(),
            sessions: sessions.clone(),
            inject,
        });
        std::thread::Builder::new()
            .name("ratls".into())
            .spawn(move || runtime.block_on(dispatch(rx, ctx)))?;
        Ok(Self { cmds, sessions })
    }

    /// Starts serving RA-TLS on channel session `session`.
    ///
    /// # Errors
    /// When the session is already an RA-TLS session or the server thread is gone.
    pub(crate) fn open(&self, session: u32) -> Result<(), String> {
        if !lock(&self.sessions).insert(session) {
            return Err(format!("session {session} is already an RA-TLS session"));
        }
        self.cmds
            .send(Cmd::Open(session))
            .map_err(|_| "the RA-TLS server has stopped".to_owned())
    }

    /// Whether `session` is an RA-TLS session (its stdin frames belong here).
    pub(crate) fn owns(&self, session: u32) -> bool {
        lock(&self.sessions).contains(&session)
    }

    /// Bytes from the verifier on `session`.
    pub(crate) fn data(&self, session: u32, bytes: Vec<u8>) {
        let _ = self.cmds.send(Cmd::Data(session, bytes));
    }

    /// The verifier's side of `session` reached its end.
    pub(crate) fn close(&self, session: u32) {
        let _ = self.cmds.send(Cmd::Close(session));
    }

    /// Also serves RA-TLS on TCP `0.0.0.0:port`; returns the bound address.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub(crate) fn listen(&self, port: u16) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(("0.0.0.0", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        self.cmds
            .send(Cmd::Listen(listener))
            .map_err(|_| io::Error::other("the RA-TLS server has stopped"))?;
        Ok(addr)
    }
}

async fn dispatch(mut rx: UnboundedReceiver<Cmd>, ctx: Arc<Ctx>) {
    let mut inbound: HashMap<u32, UnboundedSender<Vec<u8>>> = HashMap::new();
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Open(session) => {
                let (tx, rx) = mpsc::unbounded_channel();
                inbound.insert(session, tx);
                tokio::spawn(channel_session(session, rx, ctx.clone()));
            }
            Cmd::Data(session, bytes) => {
                if let Some(tx) = inbound.get(&session) {
                    if tx.send(bytes).is_err() {
                        inbound.remove(&session);
                    }
                }
            }
            Cmd::Close(session) => {
                inbound.remove(&session);
            }
            Cmd::Listen(listener) => match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::spawn(accept_loop(l, ctx.clone()));
                }
                Err(e) => eprintln!("a3s-guest-init: RA-TLS listener: {e}"),
            },
        }
    }
}

/// One RA-TLS connection carried by channel session `session`.
async fn channel_session(session: u32, mut rx: UnboundedReceiver<Vec<u8>>, ctx: Arc<Ctx>) {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (mut from_tls, mut to_tls) = tokio::io::split(theirs);
    let inbound = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if to_tls.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to_tls.shutdown().await;
    });
    let chan = ctx.chan.clone();
    let outbound = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from_tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !chan.send(&Frame::data(Kind::Stdout, session, buf[..n].to_vec())) {
                        break;
                    }
                }
            }
        }
    };
    // `ours` is dropped when the server is done, so `outbound` drains and ends.
    let (result, ()) = tokio::join!(serve_one(ours, &ctx, Secrets::Accept), outbound);
    inbound.abort();
    lock(&ctx.sessions).remove(&session);
    let code = match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("a3s-guest-init: RA-TLS session {session}: {message}");
            ctx.chan.msg(session, &GuestMsg::Error { message });
            1
        }
    };
    ctx.chan.msg(session, &GuestMsg::Exited { code });
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<Ctx>) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let _ = tcp.set_nodelay(true);
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_one(tcp, &ctx, Secrets::Refuse).await {
                        eprintln!("a3s-guest-init: RA-TLS connection from {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("a3s-guest-init: RA-TLS accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whether a connection may deliver a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Secrets {
    /// A channel session, opened by the box's owner through its monitor.
    Accept,
    /// The TCP port: attestation only.
    Refuse,
}

/// Serves one RA-TLS connection on `io` (and the verifier's secret, if it sends one) and
/// closes it.
async fn serve_one<IO>(io: IO, ctx: &Ctx, accept: Secrets) -> Result<(), String>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let work = async {
        let identity = identity(ctx).await?;
        let config = ServerConfig::attested(Attested::new(identity, ctx.attester.clone()));
        let mut session = a3s_ratls::serve(io, &config)
            .await
            .map_err(|e| super::error_chain(&e))?;
        let stream = session.stream();
        // The verifier has its verdict; it closes, or sends one secret.
        let request = delivery::receive(stream).await;
        let placed = match request {
            Ok(None) => Ok(()),
            Ok(Some(secret)) => {
                let outcome = place(ctx, accept, secret).await;
                let answer = outcome.as_ref().map(|_| ()).map_err(String::as_str);
                match delivery::answer(stream, answer).await {
                    Err(e) => Err(super::error_chain(&e)),
                    Ok(()) => {
                        outcome.map(|name| eprintln!("a3s-guest-init: secret {name} injected"))
                    }
                }
            }
            Err(e) => Err(super::error_chain(&e)),
        };
        let _ = stream.shutdown().await;
        placed
    };
    tokio::time::timeout(SESSION_TIMEOUT, work)
        .await
        .map_err(|_| {
            format!(
                "the RA-TLS exchange did not finish within {} s",
                SESSION_TIMEOUT.as_secs()
            )
        })?
}

/// Places an injected secret; its name, or why it was refused (never the value).
async fn place(ctx: &Ctx, accept: Secrets, delivered: SecretDelivery) -> Result<String, String> {
    if accept == Secrets::Refuse {
        return Err(format!(
            "secret {} refused: secrets are accepted only through the box's monitor \
             (a3s-box secret inject), not on the RA-TLS TCP port",
            delivered.name
        ));
    }
    let target = ctx.inject.clone();
    let name = delivered.name.clone();
    let secret = Secret {
        name: delivered.name.clone(),
        value: delivered.value,
    };
    // Mounting and writing block.
    tokio::task::spawn_blocking(move || secrets::place_injected(&target, &secret))
        .await
        .map_err(|e| format!("placing secret {name}: {e}"))?
        .map_err(|e| format!("placing secret {name}: {e:#}"))?;
    Ok(name)
}

/// This boot's RA-TLS identity, made at the first call.
async fn identity(ctx: &Ctx) -> Result<Arc<Identity>, String> {
    ctx.identity
        .get_or_try_init(|| async {
            let (attester, kind) = (ctx.attester.clone(), ctx.kind);
            // The attester blocks (a request over the channel, or an ioctl).
            tokio::task::spawn_blocking(move || Identity::generate(attester.as_ref(), kind))
                .await
                .map_err(|e| format!("making the RA-TLS identity: {e}"))?
                .map(Arc::new)
                .map_err(|e| format!("making the RA-TLS identity: {}", super::error_chain(&e)))
        })
        .await
        .cloned()
}

fn lock(m: &Mutex<HashSet<u32>>) -> std::sync::MutexGuard<'_, HashSet<u32>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use a3s_attestation::policy::AppraisalPolicy;
    use a3s_ratls::{connect, danger, ClientConfig, ServerAuth, Verifier};
    use a3s_vmm::proto::HostMsg;

    use super::*;
    use crate::agent::testing::{sim, SimHost, MEASUREMENT};

    fn verifier(measurement: [u8; 48]) -> Verifier {
        danger::accept_simulated(
            Verifier::new(AppraisalPolicy {
                measurements: vec![measurement],
                ..Default::default()
            }),
            sim().roots().unwrap(),
        )
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Relays a client's bytes over channel session `session` of `host` and returns the
    /// verified peer's measurement and the session's exit code.
    async fn attest_over_channel(
        host: &mut SimHost,
        session: u32,
        verifier: Verifier,
    ) -> (Result<[u8; 48], String>, Vec<GuestMsg>) {
        let (peer, _, msgs) = deliver_over_channel(host, session, verifier, None).await;
        (peer, msgs)
    }

    /// As [`attest_over_channel`], then sends `secret` when the peer verified; also returns
    /// the delivery's result.
    async fn deliver_over_channel(
        host: &mut SimHost,
        session: u32,
        verifier: Verifier,
        secret: Option<SecretDelivery>,
    ) -> (
        Result<[u8; 48], String>,
        Option<Result<(), String>>,
        Vec<GuestMsg>,
    ) {
        host.send(&Frame::control(session, &HostMsg::RatlsOpen).unwrap());
        let (client_io, relay_io) = tokio::io::duplex(PIPE_BYTES);
        let (mut up, mut down) = tokio::io::split(relay_io);
        let writer = host.writer();
        let upward = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                match up.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => writer(&Frame::data(Kind::Stdin, session, buf[..n].to_vec())),
                }
            }
            writer(&Frame::data(Kind::StdinClosed, session, Vec::new()));
        });
        let mut frames = host.take_frames();
        let downward = tokio::spawn(async move {
            let mut msgs = Vec::new();
            while let Some(frame) = frames.recv().await {
                assert_eq!(frame.session, session);
                match frame.kind {
                    Kind::Stdout => {
                        let _ = down.write_all(&frame.payload).await;
                    }
                    Kind::Control => {
                        let msg: GuestMsg = frame.message().unwrap();
                        let end = matches!(msg, GuestMsg::Exited { .. });
                        msgs.push(msg);
                        if end {
                            let _ = down.shutdown().await;
                            break;
                        }
                    }
                    other => panic!("unexpected {other:?} frame"),
                }
            }
            (msgs, frames)
        });
        let config = ClientConfig::new(ServerAuth::Attested(verifier));
        let mut delivered = None;
        let result = match connect(client_io, &config).await {
            Ok(mut s) => {
                let m = s
                    .peer()
                    .map(|p| p.measurement())
                    .ok_or("no peer".to_owned());
                if let Some(secret) = &secret {
                    delivered = Some(
                        delivery::send(s.stream(), secret)
                            .await
                            .map_err(|e| e.to_string()),
                    );
                }
                // close_notify, then read to the guest's.
                let _ = s.stream().shutdown().await;
                let mut rest = Vec::new();
                let _ = s.stream().read_to_end(&mut rest).await;
                m
            }
            Err(e) => Err(crate::agent::error_chain(&e)),
        };
        let (msgs, frames) = downward.await.unwrap();
        upward.abort();
        host.put_frames(frames);
        (result, delivered, msgs)
    }

    fn secret(name: &str, value: &[u8]) -> SecretDelivery {
        SecretDelivery {
            name: name.into(),
            value: zeroize::Zeroizing::new(value.to_vec()),
        }
    }

    #[test]
    fn a_verified_channel_session_places_an_injected_secret_once() {
        use std::os::unix::fs::PermissionsExt;
        let mut host = SimHost::start(MEASUREMENT);
        host.start_ratls();
        let root = host.inject_target().root;
        runtime().block_on(async {
            let (peer, delivered, msgs) = deliver_over_channel(
                &mut host,
                7,
                verifier(MEASUREMENT),
                Some(secret("api", b"s3cret")),
            )
            .await;
            assert_eq!(peer.unwrap(), MEASUREMENT);
            assert_eq!(delivered, Some(Ok(())));
            assert_eq!(msgs, vec![GuestMsg::Exited { code: 0 }]);
            let meta = std::fs::metadata(root.join("api")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
            assert_eq!(std::fs::read(root.join("api")).unwrap(), b"s3cret");
            // The same name again is refused with the reason; the first value stays.
            let (_, delivered, msgs) = deliver_over_channel(
                &mut host,
                8,
                verifier(MEASUREMENT),
                Some(secret("api", b"second-value-q7")),
            )
            .await;
            let err = delivered.unwrap().unwrap_err();
            assert!(err.contains("already exists"), "{err}");
            assert!(!err.contains("second-value-q7"), "{err}");
            assert!(matches!(msgs.last(), Some(GuestMsg::Exited { code: 1 })));
            assert_eq!(std::fs::read(root.join("api")).unwrap(), b"s3cret");
        });
    }

    #[test]
    fn serves_ra_tls_on_a_channel_session_and_ends_it_with_exited() {
        let mut host = SimHost::start(MEASUREMENT);
        host.start_ratls();
        runtime().block_on(async {
            let (peer, msgs) = attest_over_channel(&mut host, 5, verifier(MEASUREMENT)).await;
            assert_eq!(peer.unwrap(), MEASUREMENT);
            assert_eq!(msgs, vec![GuestMsg::Exited { code: 0 }]);
            // A second session reuses the boot's identity and verifies again.
            let (peer, msgs) = attest_over_channel(&mut host, 6, verifier(MEASUREMENT)).await;
            assert_eq!(peer.unwrap(), MEASUREMENT);
            assert_eq!(msgs, vec![GuestMsg::Exited { code: 0 }]);
        });
    }

    #[test]
    fn a_verifier_expecting_another_measurement_refuses_and_the_session_fails() {
        let mut host = SimHost::start(MEASUREMENT);
        host.start_ratls();
        runtime().block_on(async {
            let (peer, msgs) = attest_over_channel(&mut host, 3, verifier([0x99; 48])).await;
            let err = peer.unwrap_err();
            assert!(err.contains("attestation refused"), "{err}");
            assert!(
                matches!(msgs.last(), Some(GuestMsg::Exited { code: 1 })),
                "{msgs:?}"
            );
            assert!(
                matches!(msgs.first(), Some(GuestMsg::Error { .. })),
                "{msgs:?}"
            );
        });
    }

    #[test]
    fn serves_ra_tls_on_a_tcp_port() {
        let host = SimHost::start(MEASUREMENT);
        let service = RatlsService::start(
            host.chan().clone(),
            Arc::new(host.attester(Duration::from_secs(30))),
            EvidenceKind::Simulated,
            host.inject_target(),
        )
        .unwrap();
        let addr = service.listen(0).unwrap();
        runtime().block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", addr.port()))
                .await
                .unwrap();
            let config = ClientConfig::new(ServerAuth::Attested(verifier(MEASUREMENT)));
            let mut session = connect(tcp, &config).await.unwrap();
            let peer = session.peer().unwrap();
            assert_eq!(peer.measurement(), MEASUREMENT);
            assert!(peer.simulated());
            // A remote verifier may attest but not write into the box.
            let err = delivery::send(session.stream(), &secret("api", b"x"))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("only through the box's monitor"), "{err}");
        });
        assert!(!host.inject_target().root.join("api").exists());
    }
}
