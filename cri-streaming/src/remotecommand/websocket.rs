//! Remote command over WebSocket with Kubernetes' channel protocols (`wsstream`): every message
//! is one channel's data, prefixed by the channel number (0 stdin, 1 stdout, 2 stderr, 3 error,
//! 4 resize; `v5.channel.k8s.io` adds 255 = "close channel N"), in binary, or as a digit plus
//! base64 text for the `base64.` variants.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::{run, Channels, Target};
use crate::http::{Body, SessionContext, SessionFuture};
use crate::io::{OutChannel, Outgoing, INBOUND_QUEUE};
use crate::status::StatusFormat;
use crate::ws::{handshake, start, Ws};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V4_BASE64: &str = "v4.base64.channel.k8s.io";
const V1: &str = "channel.k8s.io";
const V1_BASE64: &str = "base64.channel.k8s.io";
const PROTOCOLS: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: "the channel in the next byte is closed" (client-go sends it when stdin ends).
const CLOSE: u8 = 255;

/// Upgrades an exec or attach request to a channel-protocol WebSocket.
pub(crate) fn upgrade(
    ctx: Arc<SessionContext>,
    req: Request<Incoming>,
    target: Target,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let (response, protocol) = match handshake(&req, PROTOCOLS) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    // No subprotocol: kubelet's default is the binary v1 channel protocol.
    let protocol = protocol.unwrap_or(V1);
    start(ctx, req, spawn, move |ctx, ws| {
        Box::pin(remote_command(ctx, ws, protocol, target))
    });
    response
}

async fn remote_command(ctx: Arc<SessionContext>, ws: Ws, protocol: &'static str, target: Target) {
    let base64 = matches!(protocol, V4_BASE64 | V1_BASE64);
    let format = if matches!(protocol, V5 | V4 | V4_BASE64) {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let (sink, mut source) = ws.split();
    let (out, out_rx) = mpsc::channel(64);
    let writer = tokio::spawn(write_channels(sink, out_rx, base64));

    // Tell the client the session is up: an empty message on the lowest writable channel.
    let first = if target.stdout {
        STDOUT
    } else if target.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out
        .send(Outgoing::Data {
            id: u32::from(first),
            data: Bytes::new(),
            fin: false,
        })
        .await;

    let (stdin_tx, stdin_rx) = mpsc::channel(INBOUND_QUEUE);
    let (resize_tx, resize_rx) = mpsc::channel(INBOUND_QUEUE);
    let v5 = protocol == V5;
    let idle = ctx.limits.idle_timeout;
    let (gone_tx, mut gone) = tokio::sync::watch::channel(());
    let reader = tokio::spawn(async move {
        let _gone_tx = gone_tx;
        let mut stdin_tx = Some(stdin_tx);
        while let Ok(Some(Ok(message))) = tokio::time::timeout(idle, source.next()).await {
            let Some((channel, data)) = decode(message, base64) else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(tx) = &stdin_tx {
                        if tx.send(data).await.is_err() {
                            stdin_tx = None;
                        }
                    }
                }
                RESIZE => {
                    let _ = resize_tx.send(data).await;
                }
                CLOSE if v5 && data.first() == Some(&STDIN) => stdin_tx = None,
                _ => {}
            }
        }
    });
    let channels = Channels {
        stdin: target.stdin.then_some(stdin_rx),
        stdout: target
            .stdout
            .then(|| OutChannel::new(u32::from(STDOUT), out.clone())),
        stderr: target
            .stderr
            .then(|| OutChannel::new(u32::from(STDERR), out.clone())),
        resize: target.tty.then_some(resize_rx),
        error: Some(OutChannel::new(u32::from(ERROR), out.clone())),
    };
    let gone = async move { while gone.changed().await.is_ok() {} };
    run(ctx.backend.as_ref(), &target, channels, format, gone).await;
    let _ = out.send(Outgoing::Close).await;
    let _ = writer.await;
    reader.abort();
}

/// Splits a client message into channel and data; `None` for control and malformed messages.
fn decode(message: Message, base64: bool) -> Option<(u8, Bytes)> {
    match message {
        Message::Binary(data) if !base64 => {
            let channel = *data.first()?;
            Some((channel, data.slice(1..)))
        }
        Message::Text(text) if base64 => {
            // One ASCII digit, then base64; work on bytes so no input can split a character.
            let (digit, encoded) = text.as_bytes().split_first()?;
            let channel = digit.checked_sub(b'0').filter(|c| *c <= 9)?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            Some((channel, data.into()))
        }
        _ => None,
    }
}

async fn write_channels(
    mut sink: futures_util::stream::SplitSink<Ws, Message>,
    mut queue: mpsc::Receiver<Outgoing>,
    base64: bool,
) {
    while let Some(message) = queue.recv().await {
        let message = match message {
            // WebSocket channels have no half-close; the end of the connection ends them all.
            Outgoing::Data { fin: true, .. } => continue,
            Outgoing::Data { id, data, .. } => {
                let channel = u8::try_from(id).unwrap_or(ERROR);
                if base64 {
                    let mut text = String::from(char::from(b'0' + channel));
                    base64::engine::general_purpose::STANDARD.encode_string(&data, &mut text);
                    Message::text(text)
                } else {
                    let mut framed = Vec::with_capacity(data.len() + 1);
                    framed.push(channel);
                    framed.extend_from_slice(&data);
                    Message::binary(framed)
                }
            }
            Outgoing::Close | Outgoing::Abort => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                break;
            }
            Outgoing::Reply { .. } | Outgoing::Reset { .. } | Outgoing::Ping { .. } => continue,
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_binary_and_base64_channel_messages() {
        let binary = Message::binary(vec![STDIN, b'h', b'i']);
        assert_eq!(
            decode(binary, false),
            Some((STDIN, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(Message::text("0aGk="), true),
            Some((STDIN, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(Message::text("4e30="), true),
            Some((RESIZE, Bytes::from_static(b"{}")))
        );
    }

    #[test]
    fn rejects_malformed_messages_without_panicking() {
        assert_eq!(decode(Message::binary(Vec::new()), false), None);
        assert_eq!(decode(Message::text(""), true), None);
        // A multi-byte first character must not be sliced through.
        assert_eq!(decode(Message::text("é"), true), None);
        assert_eq!(decode(Message::text("0not base64!"), true), None);
        // Text in binary mode and binary in base64 mode are ignored.
        assert_eq!(decode(Message::text("0aGk="), false), None);
        assert_eq!(decode(Message::binary(vec![0]), true), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_messages_never_panic(text in ".{0,64}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(Message::text(text.clone()), true);
            let _ = decode(Message::text(text), false);
            let _ = decode(Message::binary(bytes.clone()), false);
            let _ = decode(Message::binary(bytes), true);
        }
    }
}
