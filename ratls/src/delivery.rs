//! Delivering one secret over an RA-TLS session the relying party has just verified
//! (`a3s-box secret inject`).
//!
//! After the handshake and the freshness exchange the verifier either closes its side
//! (attestation only) or sends one request; the attested side answers it and closes:
//!
//! ```text
//! request  0x01 | name length (u8) | name | value length (u32, big-endian) | value
//! answer   status (u8: 0x00 placed, 0x01 refused) | length (u16, big-endian) | UTF-8 reason
//! ```
//!
//! The verifier sends only after its verdict passed, so the value reaches nothing but the
//! attested endpoint of this very connection. Both sides bound what they read.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// Largest secret value one request carries (the guest's secrets tmpfs is 16 MiB).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Longest secret name.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest reason in an answer (longer ones are cut).
pub const MAX_REASON_BYTES: usize = 1024;

const REQUEST_SECRET: u8 = 0x01;
const STATUS_PLACED: u8 = 0x00;
const STATUS_REFUSED: u8 = 0x01;

/// A secret on its way: its file name and value (wiped when dropped, never printed).
pub struct SecretDelivery {
    /// File name under the secrets directory.
    pub name: String,
    /// The value.
    pub value: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecretDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretDelivery")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// A delivery failed on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The name is empty or longer than [`MAX_NAME_BYTES`].
    #[error("secret name must be 1 to {MAX_NAME_BYTES} bytes")]
    NameLength,
    /// The value is longer than [`MAX_VALUE_BYTES`].
    #[error("secret value of {len} bytes exceeds the {MAX_VALUE_BYTES}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The peer sent something that is not a request or answer of this protocol.
    #[error("malformed delivery message: {0}")]
    Malformed(&'static str),
    /// The peer refused the secret.
    #[error("the box refused the secret: {0}")]
    Refused(String),
    /// Reading or writing the stream failed.
    #[error("delivery stream")]
    Io(#[from] std::io::Error),
}

/// Sends `secret` and waits for the answer.
///
/// # Errors
/// [`DeliveryError::Refused`] with the peer's reason; size and stream errors.
pub async fn send<S>(stream: &mut S, secret: &SecretDelivery) -> Result<(), DeliveryError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name_len = u8::try_from(secret.name.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or(DeliveryError::NameLength)?;
    if secret.value.len() > MAX_VALUE_BYTES {
        return Err(DeliveryError::TooLarge {
            len: secret.value.len(),
        });
    }
    let value_len = u32::try_from(secret.value.len()).map_err(|_| DeliveryError::TooLarge {
        len: secret.value.len(),
    })?;
    let mut msg = Zeroizing::new(Vec::with_capacity(
        6 + secret.name.len() + secret.value.len(),
    ));
    msg.push(REQUEST_SECRET);
    msg.push(name_len);
    msg.extend_from_slice(secret.name.as_bytes());
    msg.extend_from_slice(&value_len.to_be_bytes());
    msg.extend_from_slice(&secret.value);
    stream.write_all(&msg).await?;
    stream.flush().await?;

    let status = stream.read_u8().await?;
    let len = usize::from(stream.read_u16().await?);
    if len > MAX_REASON_BYTES {
        return Err(DeliveryError::Malformed("answer reason too long"));
    }
    let mut reason = vec![0u8; len];
    stream.read_exact(&mut reason).await?;
    let reason = String::from_utf8_lossy(&reason).into_owned();
    match status {
        STATUS_PLACED => Ok(()),
        STATUS_REFUSED => Err(DeliveryError::Refused(reason)),
        _ => Err(DeliveryError::Malformed("unknown answer status")),
    }
}

/// Reads the verifier's request: `None` when it closed without one (attestation only).
///
/// # Errors
/// A malformed or oversized request, stream errors.
pub async fn receive<S>(stream: &mut S) -> Result<Option<SecretDelivery>, DeliveryError>
where
    S: AsyncRead + Unpin,
{
    let mut kind = [0u8; 1];
    if stream.read(&mut kind).await? == 0 {
        return Ok(None);
    }
    if kind[0] != REQUEST_SECRET {
        return Err(DeliveryError::Malformed("unknown request"));
    }
    let name_len = usize::from(stream.read_u8().await?);
    if name_len == 0 {
        return Err(DeliveryError::NameLength);
    }
    let mut name = vec![0u8; name_len];
    stream.read_exact(&mut name).await?;
    let name = String::from_utf8(name).map_err(|_| DeliveryError::Malformed("name not UTF-8"))?;
    let len = usize::try_from(stream.read_u32().await?).unwrap_or(usize::MAX);
    if len > MAX_VALUE_BYTES {
        return Err(DeliveryError::TooLarge { len });
    }
    let mut value = Zeroizing::new(vec![0u8; len]);
    stream.read_exact(&mut value).await?;
    Ok(Some(SecretDelivery { name, value }))
}

/// Answers a request: placed (`Ok`) or refused with a reason.
///
/// # Errors
/// Stream errors.
pub async fn answer<S>(stream: &mut S, outcome: Result<(), &str>) -> Result<(), DeliveryError>
where
    S: AsyncWrite + Unpin,
{
    let (status, reason) = match outcome {
        Ok(()) => (STATUS_PLACED, ""),
        Err(r) => (STATUS_REFUSED, r),
    };
    let mut cut = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let reason = &reason.as_bytes()[..cut];
    let mut msg = vec![status];
    msg.extend_from_slice(
        &u16::try_from(reason.len())
            .expect("the reason is cut to MAX_REASON_BYTES")
            .to_be_bytes(),
    );
    msg.extend_from_slice(reason);
    stream.write_all(&msg).await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, value: &[u8]) -> SecretDelivery {
        SecretDelivery {
            name: name.into(),
            value: Zeroizing::new(value.to_vec()),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_request_round_trips_and_the_answer_reaches_the_sender() {
        rt().block_on(async {
            let (mut a, mut b) = tokio::io::duplex(4096);
            let server = async {
                let got = receive(&mut b).await.unwrap().unwrap();
                assert_eq!(got.name, "db");
                assert_eq!(&got.value[..], b"hunter2");
                answer(&mut b, Err("already present")).await.unwrap();
            };
            let db = secret("db", b"hunter2");
            let (sent, ()) = tokio::join!(send(&mut a, &db), server);
            match sent {
                Err(DeliveryError::Refused(r)) => assert_eq!(r, "already present"),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn a_closed_stream_is_no_request() {
        rt().block_on(async {
            let (a, mut b) = tokio::io::duplex(64);
            drop(a);
            assert!(receive(&mut b).await.unwrap().is_none());
        });
    }

    #[test]
    fn oversized_values_are_refused_on_both_sides() {
        rt().block_on(async {
            let (mut a, _b) = tokio::io::duplex(64);
            let big = secret("x", &vec![0u8; MAX_VALUE_BYTES + 1]);
            assert!(matches!(
                send(&mut a, &big).await,
                Err(DeliveryError::TooLarge { .. })
            ));
            // A hostile header announcing 4 GiB is refused before any allocation.
            let (mut c, mut d) = tokio::io::duplex(64);
            c.write_all(&[REQUEST_SECRET, 1, b'x', 0xff, 0xff, 0xff, 0xff])
                .await
                .unwrap();
            assert!(matches!(
                receive(&mut d).await,
                Err(DeliveryError::TooLarge { .. })
            ));
            let (mut e, mut f) = tokio::io::duplex(64);
            e.write_all(&[0x7f]).await.unwrap();
            assert!(matches!(
                receive(&mut f).await,
                Err(DeliveryError::Malformed(_))
            ));
        });
    }
}
