//! The WebSocket upgrade shared by the WebSocket transports: the RFC 6455 handshake with
//! subprotocol negotiation, and the switch to a bounded WebSocket stream once the `101` is out.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::http::{text_response, Body, SessionContext, SessionFuture};

/// An upgraded WebSocket connection.
pub(crate) type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Validates the WebSocket handshake and picks the subprotocol; on success the `101` response.
/// `Ok((_, None))`: the client offered no subprotocol.
#[allow(clippy::result_large_err)]
pub(crate) fn handshake(
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
pub(crate) fn start(
    ctx: Arc<SessionContext>,
    mut req: Request<Incoming>,
    spawn: impl FnOnce(SessionFuture),
    session: impl FnOnce(Arc<SessionContext>, Ws) -> SessionFuture + Send + 'static,
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
        let max = ctx.limits.max_websocket_message_bytes;
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session(ctx, ws).await;
    }));
}
