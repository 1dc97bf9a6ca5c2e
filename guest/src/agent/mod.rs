//! The attestation agent of TEE boxes, inside PID 1.
//!
//! On `Start` with a TEE setup, before the workload ([`boot`]):
//! 1. [`Agent::open`]: the attester ([`attester`]: the host-side simulator over the channel,
//!    or the SEV-SNP hardware), the RA-TLS server ([`ratls`]; and its TCP port when asked),
//!    the sealing socket ([`seal`]) and the `a3s-guest` tool ([`tool`]);
//! 2. [`provision`]: evidence → KBS attestation → secrets → `/run/secrets/<name>`
//!    ([`secrets`]), one `TeeStep` per finished step;
//! 3. the caller starts the workload. Any failure: `TeeFailed { step, message }`, the message
//!    on the console, and the VM powers off without starting the workload.
//!
//! Step names (`TeeStep` and `TeeFailed`): `evidence`, `kbs_attest`, `secret` (detail: the
//! secret's name), `secrets_written`; failures only: `agent` (socket or tool set-up) and
//! `ratls` (the RA-TLS TCP port). The host's answers to the agent's requests are routed by
//! [`route`] from the channel's read loop, which keeps serving while the agent waits.

mod attester;
mod provision;
mod ratls;
mod requests;
mod seal;
pub(crate) mod secrets;
pub(crate) mod tool;

#[cfg(test)]
mod testing;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use a3s_vmm::proto::{Frame, GuestMsg, HostMsg, Kind, ProcessSpec, TeeSetup, WORKLOAD_SESSION};

pub(crate) use ratls::RatlsService;
pub(crate) use requests::Requests;

use crate::channel::Channel;
use attester::SharedAttester;
use provision::{Placement, Step};

/// A step of the agent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepError {
    /// The step's name (as in `TeeStep`).
    pub(crate) step: &'static str,
    /// Why, never a secret value.
    pub(crate) message: String,
}

impl StepError {
    pub(crate) fn new(step: &'static str, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
        }
    }
}

/// The running agent of a TEE box.
#[derive(Debug)]
pub(crate) struct Agent {
    ratls: RatlsService,
}

impl Agent {
    /// Sets up the attester, RA-TLS, the sealing socket and the tool for `tee`.
    ///
    /// # Errors
    /// [`StepError`] `evidence` when there is no TEE to attest with, `agent` or `ratls` when a
    /// service cannot start.
    pub(crate) fn open(
        tee: &TeeSetup,
        chan: &Channel,
        requests: &Arc<Requests>,
        owner: Option<(u32, u32)>,
    ) -> Result<(Arc<Self>, SharedAttester), StepError> {
        let (attester, kind) = attester::for_mode(tee.mode, chan, requests)
            .map_err(|e| StepError::new("evidence", error_chain(&e)))?;
        let inject = secrets::InjectTarget {
            root: secrets::SECRETS_DIR.into(),
            mount_tmpfs: true,
            owner,
        };
        let ratls = RatlsService::start(chan.clone(), attester.clone(), kind, inject)
            .map_err(|e| StepError::new("agent", format!("starting the RA-TLS server: {e}")))?;
        if let Some(port) = tee.ratls_port {
            ratls.listen(port).map_err(|e| {
                StepError::new("ratls", format!("listening on TCP port {port}: {e}"))
            })?;
        }
        seal::serve(Path::new(seal::SOCKET), attester.clone(), owner)
            .map_err(|e| StepError::new("agent", format!("{e:#}")))?;
        tool::install(Path::new(tool::TOOL_PATH))
            .map_err(|e| StepError::new("agent", format!("{e:#}")))?;
        Ok((Arc::new(Self { ratls }), attester))
    }

    /// The RA-TLS service (for routing channel sessions).
    pub(crate) fn ratls(&self) -> &RatlsService {
        &self.ratls
    }
}

/// Runs the agent for a TEE box before its workload `process`: [`Agent::open`] (handing the
/// agent to `opened` at once, so RA-TLS sessions are served from then on), then the secrets.
///
/// # Errors
/// [`StepError`] naming the failed step; the caller must not start the workload.
pub(crate) fn boot(
    tee: &TeeSetup,
    process: &ProcessSpec,
    chan: &Channel,
    requests: &Arc<Requests>,
    opened: impl FnOnce(Arc<Agent>),
) -> Result<(), StepError> {
    let owner = workload_owner(process);
    let (agent, attester) = Agent::open(tee, chan, requests, owner)?;
    opened(agent);
    provision::provision(
        tee,
        attester.as_ref(),
        Placement {
            root: Path::new(secrets::SECRETS_DIR),
            mount_tmpfs: true,
            owner,
        },
        &mut |s: Step| {
            chan.msg(
                WORKLOAD_SESSION,
                &GuestMsg::TeeStep {
                    step: s.name.into(),
                    detail: s.detail,
                    elapsed_ms: u64::try_from(s.elapsed.as_millis()).unwrap_or(u64::MAX),
                },
            );
        },
    )
}

/// The key of a confidential box's writable layer: a secure-processor derived key bound to the
/// launch measurement and guest policy (as sealing keys are), separated from the sealing key by
/// HKDF-SHA256 with its own label, so one never equals the other.
///
/// # Errors
/// [`StepError`] `rootfs` when the TEE cannot derive a key.
pub(crate) fn layer_key(
    tee: &TeeSetup,
    chan: &Channel,
    requests: &Arc<Requests>,
) -> Result<zeroize::Zeroizing<[u8; 32]>, StepError> {
    use a3s_sealing::SealingKeySource;
    let (attester, _) = attester::for_mode(tee.mode, chan, requests)
        .map_err(|e| StepError::new("rootfs", error_chain(&e)))?;
    let derived = a3s_sealing::AttesterKeySource::new(attester::Shared(attester))
        .derive(&a3s_sealing::KeyParams::new(seal::seal_fields()))
        .map_err(|e| StepError::new("rootfs", error_chain(&e)))?;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hkdf::Hkdf::<sha2::Sha256>::new(None, derived.as_slice())
        .expand(b"a3s-box writable layer v1", key.as_mut_slice())
        .map_err(|e| StepError::new("rootfs", format!("expanding the layer key: {e}")))?;
    Ok(key)
}

/// How long the guest waits for the host to copy a just-made layer (a few MiB of a sparse
/// file: milliseconds; only a broken host takes longer).
const KEEP_LAYER_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells the host the writable layer was just made and closed, and waits until it has read
/// it ([`GuestMsg::LayerMade`]). Not answered in time: the start fails, because going on
/// would write to the disk under a copy in progress, and the next box of this measurement
/// could start from a torn one.
pub(crate) fn keep_layer(chan: &Channel, requests: &Requests) -> anyhow::Result<()> {
    let (request, answer) = requests.register();
    if !chan.msg(WORKLOAD_SESSION, &GuestMsg::LayerMade { request }) {
        requests.cancel(request);
        anyhow::bail!("the host channel closed before the new writable layer was kept");
    }
    match answer.recv_timeout(KEEP_LAYER_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(_) => {
            requests.cancel(request);
            anyhow::bail!(
                "the host did not finish reading the new writable layer within {} s",
                KEEP_LAYER_TIMEOUT.as_secs()
            )
        }
    }
}

/// Reports `failure` to the host and the console (the caller then powers off).
pub(crate) fn report_failure(chan: &Channel, failure: &StepError) {
    eprintln!(
        "a3s-guest-init: TEE step {} failed: {}; the workload will not start",
        failure.step, failure.message
    );
    chan.msg(
        WORKLOAD_SESSION,
        &GuestMsg::TeeFailed {
            step: failure.step.into(),
            message: failure.message.clone(),
        },
    );
}

/// How long the guest waits for the host's `PowerOff` after `TeeFailed`.
pub(crate) const FAILURE_GRACE: Duration = Duration::from_secs(2);

/// The workload's uid and gid, so its secrets are readable by it (0400, its own).
fn workload_owner(process: &ProcessSpec) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    crate::process::resolve_user(process.user.as_deref(), &passwd, &group)
        .ok()
        .map(|u| (u.uid, u.gid))
}

/// Takes the frames that belong to the agent: answers to its requests and the byte streams of
/// RA-TLS sessions (`ratls` is `None` outside TEE boxes). Every other frame is handed back.
pub(crate) fn route(
    frame: Frame,
    chan: &Channel,
    requests: &Requests,
    ratls: Option<&RatlsService>,
) -> Option<Frame> {
    match frame.kind {
        Kind::Control => {
            let Ok(msg) = frame.message::<HostMsg>() else {
                return Some(frame);
            };
            match requests.deliver(msg)? {
                HostMsg::RatlsOpen => {
                    let session = frame.session;
                    let Some(ratls) = ratls else {
                        return Some(frame);
                    };
                    let refused = if session == WORKLOAD_SESSION {
                        Err("RA-TLS needs a session number above 0".to_owned())
                    } else {
                        ratls.open(session)
                    };
                    if let Err(message) = refused {
                        chan.msg(session, &GuestMsg::Error { message });
                        chan.msg(session, &GuestMsg::Exited { code: 1 });
                    }
                    None
                }
                _ => Some(frame),
            }
        }
        Kind::Stdin if ratls.is_some_and(|r| r.owns(frame.session)) => {
            if let Some(r) = ratls {
                r.data(frame.session, frame.payload);
            }
            None
        }
        Kind::StdinClosed if ratls.is_some_and(|r| r.owns(frame.session)) => {
            if let Some(r) = ratls {
                r.close(frame.session);
            }
            None
        }
        _ => Some(frame),
    }
}

/// `e` and its causes, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
