//! SPDY/3.1 as Kubernetes uses it (moby/spdystream): the client opens streams with SYN_STREAM,
//! the server answers each with SYN_REPLY, data flows in DATA frames, FIN half-closes. No flow
//! control is enforced by either peer; the server bounds what it buffers instead.

mod conn;
mod frame;

pub(crate) use conn::{Connection, Stream};

use hyper::header::{HeaderMap, HeaderValue, CONNECTION, UPGRADE};
use hyper::{Response, StatusCode};

use crate::http::{text_response, Body, SPDY_UPGRADE_TOKEN};

/// Header carrying the stream protocol versions (client: offered, server: chosen).
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Header listing what the server accepts when negotiation fails.
const ACCEPTED_HEADER: &str = "x-accepted-stream-protocol-versions";

/// Picks the first protocol the client offers that the server supports (kubelet's
/// `httpstream.Handshake`). `Ok(None)`: the client offered none (legacy clients).
///
/// # Errors
/// The client offered protocols, none of them supported: the response to send.
#[allow(clippy::result_large_err)]
pub(crate) fn negotiate(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<Option<&'static str>, Response<Body>> {
    let offered: Vec<&str> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    if let Some(chosen) = offered
        .iter()
        .find_map(|o| supported.iter().find(|s| *s == o))
    {
        return Ok(Some(*chosen));
    }
    let mut response = text_response(
        StatusCode::FORBIDDEN,
        &format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
        ),
    );
    if let Ok(value) = HeaderValue::from_str(&supported.join(", ")) {
        response.headers_mut().insert(ACCEPTED_HEADER, value);
    }
    Err(response)
}

/// The `101 Switching Protocols` answer to a SPDY upgrade.
pub(crate) fn upgrade_response(protocol: Option<&'static str>) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static(SPDY_UPGRADE_TOKEN));
    if let Some(protocol) = protocol {
        headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(protocol));
    }
    response
}
