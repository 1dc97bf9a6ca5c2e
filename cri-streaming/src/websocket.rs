//! The WebSocket transports:
//! - remote command with Kubernetes' channel protocols (`wsstream`): every message is one
//!   channel's data, prefixed by the channel number (0 stdin, 1 stdout, 2 stderr, 3 error,
//!   4 resize; `v5.channel.k8s.io` adds 255 = "close channel N"), in binary, or as a digit plus
//!   base64 text for the `base64.` variants;
//! - port forwarding tunnelled as SPDY inside binary messages (`SPDY/3.1+portforward.k8s.io`,
//!   client-go's `NewSPDYOverWebsocketDialer`).

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::io::{OutChannel, Outgoing, INBOUND_QUEUE, PIPE_BYTES};
use crate::remotecommand::{self, Channels, Target};
use crate::request::PortForwardRequest;
use crate::server::{text_response, Body, Inner, SessionFuture};
use crate::status::StatusFormat;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V4_BASE64: &str = "v4.base64.channel.k8s.io";
const V1: &str = "channel.k8s.io";
const V1_BASE64: &str = "base64.channel.k8s.io";
const REMOTE_COMMAND_PROTOCOLS: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64];
const PORT_FORWARD_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: "the channel in the next byte is closed" (client-go sends it when stdin ends).
const CLOSE: u8 = 255;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Validates the WebSocket handshake and picks the subprotocol; on success the `101` response.
/// `Ok((_, None))`: the client offered no subprotocol.
#[allow(clippy::result_large_err)]
fn handshake(
    req: &Request<Incoming>,
    supported: &[&'static str],
) -> Result<(Response<Body>, Option<&'static str>), Response<Body>> {
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).filter(|_| version_ok) else {
        return Err(text_response(
            StatusCode::BAD_REQUEST,
            "websocket upgrade needs Sec-WebSocket-Version 13 and a Sec-WebSocket-Key",
        ));
    };
    let offered: Vec<&str> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let protocol = offered
        .iter()
        .find_map(|o| supported.iter().find(|s| *s == o).copied());
    if protocol.is_none() && !offered.is_empty() {
        return Err(text_response(
            StatusCode::BAD_REQUEST,
            &format!("unable to negotiate a websocket subprotocol: client offers {offered:?}, server accepts {supported:?}"),
        ));
    }
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(p) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    Ok((response, protocol))
}

/// Runs `session` on the upgraded connection once the `101` has gone out.
fn start(
    inner: Arc<Inner>,
    mut req: Request<Incoming>,
    spawn: impl FnOnce(SessionFuture),
    session: impl FnOnce(Arc<Inner>, Ws) -> SessionFuture + Send + 'static,
) {
    let upgrade = hyper::upgrade::on(&mut req);
    spawn(Box::pin(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(err) => {
                tracing::debug!("websocket upgrade failed: {err}");
                return;
            }
        };
        let max = inner.config.limits.max_websocket_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session(inner, ws).await;
    }));
}

/// Upgrades an exec or attach request to a channel-protocol WebSocket.
pub(crate) fn upgrade_remote_command(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    target: Target,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let (response, protocol) = match handshake(&req, REMOTE_COMMAND_PROTOCOLS) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    // No subprotocol: kubelet's default is the binary v1 channel protocol.
    let protocol = protocol.unwrap_or(V1);
    start(inner, req, spawn, move |inner, ws| {
        Box::pin(remote_command(inner, ws, protocol, target))
    });
    response
}

async fn remote_command(inner: Arc<Inner>, ws: Ws, protocol: &'static str, target: Target) {
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
    let idle = inner.config.limits.idle_timeout;
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
    remotecommand::run(inner.backend.as_ref(), &target, channels, format, gone).await;
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

/// Upgrades a port-forward request to SPDY tunnelled through a WebSocket.
pub(crate) fn upgrade_port_forward(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    request: PortForwardRequest,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let (response, protocol) = match handshake(&req, &[PORT_FORWARD_TUNNEL]) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    if protocol.is_none() {
        return text_response(
            StatusCode::BAD_REQUEST,
            "websocket port forwarding needs the SPDY/3.1+portforward.k8s.io subprotocol",
        );
    }
    start(inner, req, spawn, move |inner, ws| {
        Box::pin(async move {
            // SPDY runs on one end of an in-memory pipe; the other end is bridged to the
            // WebSocket, one binary message per write.
            let (spdy_end, bridge_end) = tokio::io::duplex(PIPE_BYTES);
            let bridge = tokio::spawn(bridge(ws, bridge_end));
            let conn = crate::spdy::Connection::start(spdy_end, inner.config.limits);
            crate::portforward::serve(&inner, conn, &request).await;
            let _ = bridge.await;
        })
    });
    response
}

async fn bridge(ws: Ws, pipe: tokio::io::DuplexStream) {
    let (mut sink, mut source) = ws.split();
    let (mut pipe_read, mut pipe_write) = tokio::io::split(pipe);
    let inbound = async {
        while let Some(Ok(message)) = source.next().await {
            if let Message::Binary(data) = message {
                if pipe_write.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        let _ = pipe_write.shutdown().await;
    };
    let outbound = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match pipe_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await;
    };
    tokio::join!(inbound, outbound);
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
}
