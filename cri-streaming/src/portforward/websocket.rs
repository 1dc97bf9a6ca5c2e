//! Port forwarding tunnelled as SPDY inside binary WebSocket messages
//! (`SPDY/3.1+portforward.k8s.io`, client-go's `NewSPDYOverWebsocketDialer`, crictl
//! `port-forward --transport websocket`).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::http::{text_response, Body, SessionContext, SessionFuture};
use crate::io::PIPE_BYTES;
use crate::request::PortForwardRequest;
use crate::spdy::Connection;
use crate::ws::{handshake, start, Ws};

const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Upgrades a port-forward request to SPDY tunnelled through a WebSocket.
pub(crate) fn upgrade(
    ctx: Arc<SessionContext>,
    req: Request<Incoming>,
    request: PortForwardRequest,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let (response, protocol) = match handshake(&req, &[TUNNEL_PROTOCOL]) {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    if protocol.is_none() {
        return text_response(
            StatusCode::BAD_REQUEST,
            "websocket port forwarding needs the SPDY/3.1+portforward.k8s.io subprotocol",
        );
    }
    start(ctx, req, spawn, move |ctx, ws| {
        Box::pin(async move {
            // SPDY runs on one end of an in-memory pipe; the other end is bridged to the
            // WebSocket, one binary message per write.
            let (spdy_end, bridge_end) = tokio::io::duplex(PIPE_BYTES);
            let bridge = tokio::spawn(bridge(ws, bridge_end));
            let conn = Connection::start(spdy_end, ctx.limits);
            super::serve(&ctx, conn, &request).await;
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
