//! What the HTTP front and the protocol handlers share: response helpers, the upgrade kinds, and
//! the context a session runs with.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Response, StatusCode};

use crate::backend::Backend;
use crate::limits::Limits;

/// What a session needs from the server that started it.
pub(crate) struct SessionContext {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) limits: Limits,
    /// How long a client may take to open all streams of a session.
    pub(crate) stream_creation_timeout: Duration,
}

/// Bodies of the server's own (non-upgraded) answers: short, complete messages.
pub(crate) type Body = Full<Bytes>;

/// A session that runs on an upgraded connection, owned by its HTTP connection's task.
pub(crate) type SessionFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A plain-text answer whose message says what is wrong and what to do.
pub(crate) fn text_response(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Which upgrade the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Spdy,
    WebSocket,
}

/// The upgrade a request asks for, if any (`Connection: upgrade` plus a known `Upgrade`).
pub(crate) fn transport(headers: &HeaderMap) -> Option<Transport> {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let upgrade = headers.get(UPGRADE)?.to_str().ok()?.trim();
    if upgrade.eq_ignore_ascii_case("websocket") {
        Some(Transport::WebSocket)
    } else if upgrade.eq_ignore_ascii_case(SPDY_UPGRADE_TOKEN) {
        Some(Transport::Spdy)
    } else {
        None
    }
}

/// The `Upgrade` header value of a SPDY/3.1 connection upgrade.
pub(crate) const SPDY_UPGRADE_TOKEN: &str = "SPDY/3.1";
