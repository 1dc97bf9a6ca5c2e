//! Port forwarding sessions. Protocol handlers land in the next commits.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::request::PortForwardRequest;
use crate::server::{text_response, Inner};

pub(crate) fn upgrade_spdy<S>(
    _inner: Arc<Inner>,
    _req: Request<Incoming>,
    _request: PortForwardRequest,
    _spawn: S,
) -> Response<http_body_util::Full<bytes::Bytes>> {
    text_response(
        StatusCode::NOT_IMPLEMENTED,
        "port forwarding is not wired yet",
    )
}
