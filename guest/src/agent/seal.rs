//! Sealing for the workload, served by PID 1 on a unix socket.
//!
//! The derived key never leaves PID 1: `a3s-guest seal|unseal` sends the data, PID 1 asks the
//! TEE for the key (through the channel for a simulated TEE, `/dev/sev-guest` on SNP), seals or
//! unseals, wipes the key and answers. The key is bound to [`seal_fields`] (the launch
//! measurement and the guest policy) of the VCEK of this chip, so another measurement (say, a
//! changed kernel command line) derives another key and cannot unseal.
//!
//! # Socket protocol ([`SOCKET`], mode 0600: root in the box)
//!
//! One request per connection, integers big-endian:
//!
//! | offset | size | request | response |
//! |--------|------|---------|----------|
//! | 0 | 1 | op: `1` seal, `2` unseal | status: `0` ok, `1` error |
//! | 1 | 4 | payload length n (at most [`MAX_PAYLOAD`]) | payload length |
//! | 5 | n | plaintext or sealed envelope (raw bytes) | envelope / plaintext, or a UTF-8 error |

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use a3s_sealing::{
    seal, unseal, AttesterKeySource, GuestFieldSelect, KeyParams, SealError, UnsealError,
};
use anyhow::Context;
use zeroize::Zeroizing;

use super::attester::{Shared, SharedAttester};

/// Where PID 1 serves sealing.
pub(crate) const SOCKET: &str = "/run/a3s/agent.sock";
/// Largest plaintext or envelope accepted (16 MiB).
pub(crate) const MAX_PAYLOAD: usize = 16 << 20;
/// The guest fields every sealing key is bound to: the launch measurement and the guest
/// policy (so a debuggable launch of the same code cannot unseal either).
pub(crate) fn seal_fields() -> GuestFieldSelect {
    GuestFieldSelect::MEASUREMENT | GuestFieldSelect::POLICY
}

/// Request op: seal.
pub(crate) const OP_SEAL: u8 = 1;
/// Request op: unseal.
pub(crate) const OP_UNSEAL: u8 = 2;
const STATUS_OK: u8 = 0;
const STATUS_ERR: u8 = 1;
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// The message for an envelope that does not open with this VM's key.
pub(crate) const UNSEAL_AUTH_FAILED: &str =
    "the envelope was sealed by a different measurement or is corrupted";

/// Binds `path` (mode 0600) and serves it on a thread for the life of the VM.
///
/// # Errors
/// When the socket cannot be created.
pub(crate) fn serve(path: &Path, attester: SharedAttester) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    let keys = Arc::new(AttesterKeySource::new(Shared(attester)));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let keys = keys.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, keys.as_ref());
            });
        }
    });
    Ok(())
}

fn handle(mut conn: UnixStream, keys: &AttesterKeySource<Shared>) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let (op, payload) = match read_message(&mut conn) {
        Ok(m) => m,
        Err(e) => return write_message(&mut conn, STATUS_ERR, e.to_string().as_bytes()),
    };
    let params = KeyParams::new(seal_fields());
    let result: Result<Zeroizing<Vec<u8>>, String> = match op {
        OP_SEAL => seal(keys, &params, &payload)
            .map(Zeroizing::new)
            .map_err(|e| seal_error(&e)),
        OP_UNSEAL => unseal(keys, &payload).map_err(|e| unseal_error(&e)),
        other => Err(format!("unknown request {other}")),
    };
    match result {
        Ok(out) => write_message(&mut conn, STATUS_OK, &out),
        Err(message) => write_message(&mut conn, STATUS_ERR, message.as_bytes()),
    }
}

fn seal_error(e: &SealError) -> String {
    super::error_chain(e)
}

fn unseal_error(e: &UnsealError) -> String {
    match e {
        UnsealError::Authentication => UNSEAL_AUTH_FAILED.into(),
        other => super::error_chain(other),
    }
}

/// Reads one `op, length, payload` message.
///
/// # Errors
/// I/O errors, or [`io::ErrorKind::InvalidData`] for a payload over [`MAX_PAYLOAD`].
pub(crate) fn read_message(r: &mut impl Read) -> io::Result<(u8, Zeroizing<Vec<u8>>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes is more than the {MAX_PAYLOAD}-byte limit"),
        ));
    }
    let mut payload = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut payload)?;
    Ok((head[0], payload))
}

/// Writes one `op/status, length, payload` message.
///
/// # Errors
/// I/O errors, or [`io::ErrorKind::InvalidInput`] for a payload over [`MAX_PAYLOAD`].
pub(crate) fn write_message(w: &mut impl Write, code: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_PAYLOAD + 4096)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes is more than the {MAX_PAYLOAD}-byte limit",
                    payload.len()
                ),
            )
        })?;
    let mut head = [0u8; 5];
    head[0] = code;
    head[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&head)?;
    w.write_all(payload)?;
    w.flush()
}

/// Asks the agent at `socket` to run `op` on `payload`.
///
/// # Errors
/// [`Failure::NotTee`] when no agent listens there, [`Failure::Io`] when talking to it fails,
/// [`Failure::Refused`] with the agent's message.
pub(crate) fn request(
    socket: &Path,
    op: u8,
    payload: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(Failure::NotTee)
        }
        Err(e) => return Err(Failure::Io(e)),
    };
    conn.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(Failure::Io)?;
    write_message(&mut conn, op, payload).map_err(Failure::Io)?;
    let (status, answer) = read_message(&mut conn).map_err(Failure::Io)?;
    match status {
        STATUS_OK => Ok(answer),
        _ => Err(Failure::Refused(
            String::from_utf8_lossy(&answer).into_owned(),
        )),
    }
}

/// Why a request to the agent failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// No agent: not a TEE box.
    #[error(
        "this box is not a TEE box: sealing needs the attestation agent of a box started with \
         --tee-simulate or --tee-enable (no agent at {SOCKET})"
    )]
    NotTee,
    /// The socket could not be used.
    #[error("talking to the attestation agent at {SOCKET}: {0}")]
    Io(#[source] io::Error),
    /// The agent refused.
    #[error("{0}")]
    Refused(String),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agent::testing::{SimHost, MEASUREMENT};

    fn serve_for(host: &SimHost, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("agent.sock");
        serve(&path, Arc::new(host.attester(Duration::from_secs(30)))).unwrap();
        path
    }

    #[test]
    fn seal_and_unseal_round_trip_through_the_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let host = SimHost::start(MEASUREMENT);
        let socket = serve_for(&host, tmp.path());
        assert_eq!(
            fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let envelope = request(&socket, OP_SEAL, b"the secret").unwrap();
        assert_ne!(envelope.as_slice(), b"the secret");
        assert_eq!(&envelope[..7], b"A3SSEAL");
        let params = a3s_sealing::envelope_params(&envelope).unwrap();
        assert!(params.field_select.contains(GuestFieldSelect::MEASUREMENT));
        let plain = request(&socket, OP_UNSEAL, &envelope).unwrap();
        assert_eq!(plain.as_slice(), b"the secret");

        // The same measurement in another VM (same simulated chip) unseals too.
        let again = SimHost::start(MEASUREMENT);
        let tmp2 = tempfile::tempdir().unwrap();
        let socket2 = serve_for(&again, tmp2.path());
        assert_eq!(
            request(&socket2, OP_UNSEAL, &envelope).unwrap().as_slice(),
            b"the secret"
        );
    }

    #[test]
    fn another_measurement_or_a_flipped_bit_cannot_unseal() {
        let tmp = tempfile::tempdir().unwrap();
        let host = SimHost::start(MEASUREMENT);
        let socket = serve_for(&host, tmp.path());
        let envelope = request(&socket, OP_SEAL, b"data").unwrap();

        let other = SimHost::start([0x22; 48]);
        let tmp2 = tempfile::tempdir().unwrap();
        let socket2 = serve_for(&other, tmp2.path());
        match request(&socket2, OP_UNSEAL, &envelope) {
            Err(Failure::Refused(m)) => assert_eq!(m, UNSEAL_AUTH_FAILED),
            other => panic!("unexpected {other:?}"),
        }
        let mut tampered = envelope.to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        match request(&socket, OP_UNSEAL, &tampered) {
            Err(Failure::Refused(m)) => assert_eq!(m, UNSEAL_AUTH_FAILED),
            other => panic!("unexpected {other:?}"),
        }
        match request(
            &socket,
            OP_UNSEAL,
            b"not an envelope at all, but long enough to parse",
        ) {
            Err(Failure::Refused(m)) => assert!(m.contains("magic"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_refused_key_request_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let host = SimHost::silent();
        let path = tmp.path().join("agent.sock");
        serve(&path, Arc::new(host.attester(Duration::from_millis(200)))).unwrap();
        match request(&path, OP_SEAL, b"x") {
            Err(Failure::Refused(m)) => assert!(m.contains("no answer"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn no_agent_means_not_a_tee_box() {
        let tmp = tempfile::tempdir().unwrap();
        let err = request(&tmp.path().join("agent.sock"), OP_SEAL, b"x").unwrap_err();
        assert!(matches!(err, Failure::NotTee));
        assert!(err.to_string().contains("not a TEE box"));
    }

    #[test]
    fn oversized_messages_are_refused_before_allocating() {
        let mut bytes = vec![OP_SEAL];
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = read_message(&mut bytes.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
