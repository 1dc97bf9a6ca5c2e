//! Test support: the host end of a real channel (a socketpair carrying real frames), answered
//! by the real simulator the way the host's monitor answers a `--tee-simulate` guest.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use a3s_attestation::key_request::KeyRequest;
use a3s_attestation::Product;
use a3s_ratls::EvidenceKind;
use a3s_simulator::{GuestContext, ReportRequest, Simulator};
use a3s_vmm::proto::{self, Frame, GuestMsg, HostMsg, ReportCert};
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::attester::ChannelAttester;
use super::ratls::RatlsService;
use super::requests::Requests;
use super::secrets::InjectTarget;
use crate::channel::Channel;

/// The launch measurement of the tests' guest.
pub(crate) const MEASUREMENT: [u8; 48] = [0x4D; 48];

/// One simulator per test binary (its RSA-4096 roots take seconds to make).
pub(crate) fn sim() -> &'static Simulator {
    static SIM: OnceLock<(tempfile::TempDir, Simulator)> = OnceLock::new();
    &SIM.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary A3S home");
        let sim = Simulator::open_or_create(dir.path(), Product::Milan).expect("a simulator");
        (dir, sim)
    })
    .1
}

/// A guest end (channel, request table, optional RA-TLS service, with the read loop routing
/// frames as PID 1 does) connected to a host end answered by the simulator.
pub(crate) struct SimHost {
    guest: GuestContext,
    chan: Channel,
    requests: Arc<Requests>,
    ratls: Arc<OnceLock<RatlsService>>,
    host: Arc<Mutex<UnixStream>>,
    frames: Option<UnboundedReceiver<Frame>>,
    /// Where the RA-TLS service places injected secrets (a plain directory, no tmpfs).
    secrets: tempfile::TempDir,
}

impl SimHost {
    /// A host that answers for a guest launched with `measurement`.
    pub(crate) fn start(measurement: [u8; 48]) -> Self {
        Self::new(Some(GuestContext::launch(measurement)))
    }

    /// A host that never answers requests.
    pub(crate) fn silent() -> Self {
        Self::new(None)
    }

    fn new(answer_for: Option<GuestContext>) -> Self {
        // Made before any request's timeout starts (key generation takes long under load).
        let _ = sim();
        let (guest_end, host_end) = UnixStream::pair().expect("a socketpair");
        let chan = Channel::new(guest_end.try_clone().expect("cloning the guest end"));
        let requests = Arc::new(Requests::default());
        let ratls: Arc<OnceLock<RatlsService>> = Arc::new(OnceLock::new());
        {
            let (chan, requests, ratls) = (chan.clone(), requests.clone(), ratls.clone());
            let mut reader = guest_end;
            std::thread::spawn(move || {
                while let Ok(frame) = proto::read_frame(&mut reader) {
                    let _ = super::route(frame, &chan, &requests, ratls.get());
                }
            });
        }
        let host = Arc::new(Mutex::new(
            host_end.try_clone().expect("cloning the host end"),
        ));
        let (tx, frames) = mpsc::unbounded_channel();
        {
            let host = host.clone();
            let guest = answer_for.clone();
            let mut reader = host_end;
            std::thread::spawn(move || {
                while let Ok(frame) = proto::read_frame(&mut reader) {
                    let msg = frame.message::<GuestMsg>().ok();
                    let answer = match (&guest, msg) {
                        (Some(g), Some(m @ GuestMsg::ReportRequest { .. }))
                        | (Some(g), Some(m @ GuestMsg::KeyRequest { .. })) => answer(g, m),
                        (
                            None,
                            Some(GuestMsg::ReportRequest { .. } | GuestMsg::KeyRequest { .. }),
                        ) => continue,
                        _ => {
                            let _ = tx.send(frame);
                            continue;
                        }
                    };
                    let f = Frame::control(frame.session, &answer).expect("an answer frame");
                    let mut w = host.lock().expect("the host writer");
                    let _ = w.write_all(&f.encode());
                }
            });
        }
        Self {
            guest: answer_for.unwrap_or_else(|| GuestContext::launch([0; 48])),
            chan,
            requests,
            ratls,
            host,
            frames: Some(frames),
            secrets: tempfile::tempdir().expect("a secrets directory"),
        }
    }

    /// The guest's attester, waiting `timeout` for each answer.
    pub(crate) fn attester(&self, timeout: Duration) -> ChannelAttester {
        ChannelAttester::new(self.chan.clone(), self.requests.clone(), timeout)
    }

    /// The guest end's channel.
    pub(crate) fn chan(&self) -> &Channel {
        &self.chan
    }

    /// The guest end's request table.
    pub(crate) fn requests(&self) -> &Arc<Requests> {
        &self.requests
    }

    /// The simulated guest the host answers for.
    pub(crate) fn guest(&self) -> GuestContext {
        self.guest.clone()
    }

    /// Starts the guest end's RA-TLS service, fed by its read loop.
    pub(crate) fn start_ratls(&self) {
        let service = RatlsService::start(
            self.chan.clone(),
            Arc::new(self.attester(Duration::from_secs(30))),
            EvidenceKind::Simulated,
            self.inject_target(),
        )
        .expect("the RA-TLS service");
        assert!(self.ratls.set(service).is_ok(), "started twice");
    }

    /// Where injected secrets land (`<tempdir>/secrets`).
    pub(crate) fn inject_target(&self) -> InjectTarget {
        InjectTarget {
            root: self.secrets.path().join("secrets"),
            mount_tmpfs: false,
            owner: None,
        }
    }

    /// Sends a frame from the host to the guest.
    pub(crate) fn send(&self, frame: &Frame) {
        (self.writer())(frame);
    }

    /// A sender of host→guest frames usable from other threads and tasks.
    pub(crate) fn writer(&self) -> impl Fn(&Frame) + Send + Sync + 'static {
        let host = self.host.clone();
        move |frame: &Frame| {
            let mut w = host.lock().expect("the host writer");
            let _ = w.write_all(&frame.encode());
        }
    }

    /// The frames the guest sent that the host did not answer itself.
    pub(crate) fn take_frames(&mut self) -> UnboundedReceiver<Frame> {
        self.frames.take().expect("frames already taken")
    }

    /// Returns the receiver taken with [`SimHost::take_frames`].
    pub(crate) fn put_frames(&mut self, frames: UnboundedReceiver<Frame>) {
        self.frames = Some(frames);
    }
}

/// What the host's monitor answers a simulated guest.
fn answer(guest: &GuestContext, msg: GuestMsg) -> HostMsg {
    let sim = sim();
    match msg {
        GuestMsg::ReportRequest {
            request,
            report_data_hex,
            vmpl,
        } => {
            let mut report_data = [0u8; 64];
            if hex::decode_to_slice(&report_data_hex, &mut report_data).is_err() {
                return HostMsg::RequestFailed {
                    request,
                    message: "report_data is not 64 bytes of hex".into(),
                };
            }
            let req = ReportRequest {
                vmpl,
                ..ReportRequest::new(guest.clone(), report_data)
            };
            match sim.report(&req) {
                Ok(report) => {
                    let product = sim.product();
                    let cert = |kind: &str, der: &[u8]| ReportCert {
                        kind: kind.into(),
                        der_hex: hex::encode(der),
                    };
                    HostMsg::Report {
                        request,
                        report_hex: hex::encode(report.as_bytes()),
                        certs: vec![
                            cert("ARK", sim.ark_der(product).expect("the ARK")),
                            cert("ASK", sim.ask_der(product).expect("the ASK")),
                            cert("VCEK", sim.default_chip().vcek_der()),
                        ],
                    }
                }
                Err(e) => HostMsg::RequestFailed {
                    request,
                    message: e.to_string(),
                },
            }
        }
        GuestMsg::KeyRequest {
            request,
            msg_key_req_hex,
        } => {
            let parsed = hex::decode(&msg_key_req_hex)
                .map_err(|e| e.to_string())
                .and_then(|b| KeyRequest::from_bytes(&b).map_err(|e| e.to_string()))
                .and_then(|r| sim.derive_key(guest, &r).map_err(|e| e.to_string()));
            match parsed {
                Ok(key) => HostMsg::DerivedKey {
                    request,
                    key_hex: hex::encode(key.as_bytes()),
                },
                Err(message) => HostMsg::RequestFailed { request, message },
            }
        }
        other => unreachable!("not a request: {other:?}"),
    }
}
