//! `a3s-box attest BOX`: RA-TLS to a running TEE box's agent (through the monitor and the
//! guest channel, or a TCP address for remote verifiers), a fresh nonce answered with a
//! report bound to this very connection, verified against the simulator's or AMD's roots and
//! an appraisal policy.

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use a3s_attestation::policy::{AppraisalPolicy, Check};
use a3s_ratls::delivery::{self, DeliveryError, SecretDelivery};
use a3s_ratls::freshness::NONCE_LEN;
use a3s_ratls::{ClientConfig, ServerAuth, SessionError, Verifier};
use a3s_vmm::proto::{self, Frame, Kind};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::TeeError;

/// How long one attestation may take end to end.
pub const ATTEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes read while waiting for the box's close_notify.
const CLOSE_READ_LIMIT: u64 = 64 * 1024;

/// What the verifier asks for.
#[derive(Clone, Debug)]
pub struct AttestRequest {
    /// The challenge nonce (random when absent).
    pub nonce: Option<[u8; NONCE_LEN]>,
    /// The appraisal policy.
    pub policy: AppraisalPolicy,
    /// Trust this home's simulator (only when the policy allows simulated evidence).
    pub simulator_home: Option<std::path::PathBuf>,
}

/// The verdict `attest` prints.
#[derive(Clone, Debug, Serialize)]
pub struct AttestOutcome {
    /// Every check passed and the answer was fresh.
    pub verified: bool,
    /// The evidence came from the simulator.
    pub simulated: bool,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The reported launch measurement (hex), when verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// The verifier's nonce (hex).
    pub nonce: String,
    /// The claims nonce in the fresh report: SHA-256(TLS exporter ‖ nonce), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_nonce: Option<String>,
    /// REPORT_DATA of the fresh report (hex).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_data: Option<String>,
    /// The policy checks.
    pub checks: Vec<CheckView>,
    /// Wall time of the connection, handshake and verification.
    pub elapsed_ms: u64,
}

/// One policy check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckView {
    /// Name.
    pub name: String,
    /// Passed.
    pub passed: bool,
    /// What was compared.
    pub detail: String,
}

impl From<&Check> for CheckView {
    fn from(c: &Check) -> Self {
        Self {
            name: c.name.to_owned(),
            passed: c.passed,
            detail: c.detail.clone(),
        }
    }
}

fn verifier(req: &AttestRequest) -> Result<Verifier, TeeError> {
    let mut v = Verifier::new(req.policy.clone());
    if req.policy.allow_simulated {
        if let Some(home) = &req.simulator_home {
            let sim = a3s_simulator::Simulator::open_existing(home)
                .map_err(|e| TeeError::Simulator(e.to_string()))?
                .ok_or_else(|| TeeError::Simulator("this home has no simulator".into()))?;
            let roots = sim
                .roots()
                .map_err(|e| TeeError::Simulator(e.to_string()))?;
            v = a3s_ratls::danger::accept_simulated(v, roots);
        }
    }
    Ok(v)
}

/// Attests over `io`, already connected to an RA-TLS server.
async fn attest_io<IO>(io: IO, req: &AttestRequest) -> Result<AttestOutcome, TeeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    attest_then(io, req, None).await.map(|(out, _)| out)
}

/// Attests over `io`; when the verdict passed and `secret` is given, sends it on the same
/// session and returns the box's answer (`None`: nothing was sent).
async fn attest_then<IO>(
    io: IO,
    req: &AttestRequest,
    secret: Option<&SecretDelivery>,
) -> Result<(AttestOutcome, Option<Result<(), String>>), TeeError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let nonce = match req.nonce {
        Some(n) => n,
        None => a3s_ratls::freshness::nonce().map_err(|e| TeeError::Attest(e.to_string()))?,
    };
    let config = ClientConfig::new(ServerAuth::Attested(verifier(req)?)).with_nonce(nonce);
    let result = tokio::time::timeout(ATTEST_TIMEOUT, a3s_ratls::connect(io, &config)).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut out = AttestOutcome {
        verified: false,
        simulated: false,
        error: None,
        measurement: None,
        nonce: hex::encode(nonce),
        bound_nonce: None,
        report_data: None,
        checks: Vec::new(),
        elapsed_ms,
    };
    match result {
        Err(_) => Err(TeeError::Attest(format!(
            "no answer within {}s",
            ATTEST_TIMEOUT.as_secs()
        ))),
        Ok(Ok(mut session)) => {
            let Some(peer) = session.peer() else {
                return Err(TeeError::Attest("the server was not verified".into()));
            };
            out.verified = peer.verdict().passed();
            out.simulated = peer.simulated();
            out.measurement = Some(hex::encode(peer.measurement()));
            out.bound_nonce = peer.claims().nonce.as_ref().map(hex::encode);
            out.report_data = Some(hex::encode(peer.report().report().report_data()));
            out.checks = peer.verdict().checks.iter().map(CheckView::from).collect();
            // Only a verified peer ever sees the secret.
            let delivered = match secret {
                Some(s) if out.verified => Some(deliver(session.stream(), s).await),
                _ => None,
            };
            // close_notify, then the box's (so a relay ends cleanly).
            let _ = session.stream().shutdown().await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(
                ATTEST_TIMEOUT,
                session
                    .stream()
                    .take(CLOSE_READ_LIMIT)
                    .read_to_end(&mut rest),
            )
            .await;
            Ok((out, delivered))
        }
        Ok(Err(e @ SessionError::Peer(_))) => {
            let mut msg = format!("{e}");
            if let Some(p) = e.peer() {
                msg = format!("{msg}: {p}");
            }
            if let Some(h) = e.hint() {
                msg.push_str(&format!(" (hint: {h})"));
            }
            out.error = Some(msg);
            Ok((out, None))
        }
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            Err(TeeError::Attest(msg))
        }
    }
}

/// Sends `secret` on a verified session and reads the answer, within [`ATTEST_TIMEOUT`].
async fn deliver<S>(stream: &mut S, secret: &SecretDelivery) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(ATTEST_TIMEOUT, delivery::send(stream, secret)).await {
        Err(_) => Err(format!(
            "the box did not answer within {}s",
            ATTEST_TIMEOUT.as_secs()
        )),
        Ok(Ok(())) => Ok(()),
        Ok(Err(DeliveryError::Refused(reason))) => Err(reason),
        Ok(Err(e)) => {
            let mut msg = e.to_string();
            if let Some(s) = std::error::Error::source(&e) {
                msg.push_str(&format!(": {s}"));
            }
            Err(msg)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, TeeError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TeeError::Attest(format!("async runtime: {e}")))
}

/// Attests a remote verifier's way: RA-TLS to `addr` (a box's published RA-TLS port).
///
/// # Errors
/// [`TeeError::Attest`] when no verdict could be reached (connection, protocol).
pub fn attest_tcp(addr: &str, req: &AttestRequest) -> Result<AttestOutcome, TeeError> {
    runtime()?.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| TeeError::Attest(format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        attest_io(tcp, req).await
    })
}

/// Attests over a monitor connection that relays an RA-TLS session to the guest agent
/// (stdin frames up, stdout frames down).
///
/// # Errors
/// [`TeeError::Attest`] when no verdict could be reached.
pub fn attest_relayed(conn: UnixStream, req: &AttestRequest) -> Result<AttestOutcome, TeeError> {
    runtime()?.block_on(async {
        conn.set_nonblocking(true)
            .map_err(|e| TeeError::Attest(e.to_string()))?;
        let conn =
            tokio::net::UnixStream::from_std(conn).map_err(|e| TeeError::Attest(e.to_string()))?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(relay(conn, theirs));
        let out = attest_io(ours, req).await;
        relay.abort();
        out
    })
}

/// Attests a running box through its monitor like [`attest_relayed`] and, only when the
/// verdict passed, delivers `secret` on that same session (`a3s-box secret inject`).
///
/// # Errors
/// [`TeeError::Attest`] when no verdict could be reached.
pub fn inject_relayed(
    conn: UnixStream,
    req: &AttestRequest,
    secret: &SecretDelivery,
) -> Result<(AttestOutcome, Option<Result<(), String>>), TeeError> {
    runtime()?.block_on(async {
        conn.set_nonblocking(true)
            .map_err(|e| TeeError::Attest(e.to_string()))?;
        let conn =
            tokio::net::UnixStream::from_std(conn).map_err(|e| TeeError::Attest(e.to_string()))?;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let relay = tokio::spawn(relay(conn, theirs));
        let out = attest_then(ours, req, Some(secret)).await;
        relay.abort();
        out
    })
}

/// Moves bytes between the duplex end and the framed monitor connection.
async fn relay(conn: tokio::net::UnixStream, end: tokio::io::DuplexStream) {
    let (mut conn_r, mut conn_w) = conn.into_split();
    let (mut end_r, mut end_w) = tokio::io::split(end);
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match end_r.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let f = Frame::data(Kind::StdinClosed, 0, Vec::new());
                    let _ = conn_w.write_all(&f.encode()).await;
                    return;
                }
                Ok(n) => n,
            };
            let f = Frame::data(Kind::Stdin, 0, buf[..n].to_vec());
            if conn_w.write_all(&f.encode()).await.is_err() {
                return;
            }
        }
    };
    let down = async move {
        loop {
            let mut header = [0u8; proto::HEADER_LEN];
            if conn_r.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
            if len > proto::MAX_PAYLOAD {
                break;
            }
            let mut bytes = header.to_vec();
            bytes.resize(proto::HEADER_LEN + len, 0);
            if conn_r
                .read_exact(&mut bytes[proto::HEADER_LEN..])
                .await
                .is_err()
            {
                break;
            }
            let Ok(frame) = proto::read_frame(&mut bytes.as_slice()) else {
                break;
            };
            match frame.kind {
                Kind::Stdout if end_w.write_all(&frame.payload).await.is_err() => break,
                // Exited or an error: the guest ended the session.
                Kind::Control => break,
                _ => {}
            }
        }
        let _ = end_w.shutdown().await;
    };
    tokio::join!(up, down);
}
