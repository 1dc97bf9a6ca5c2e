//! Remote command sessions (exec and attach). Protocol handlers land in the next commits.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::request::{AttachRequest, ExecRequest};
use crate::server::{text_response, Inner, Transport};

#[derive(Debug)]
pub(crate) enum Target {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

impl Target {
    pub(crate) fn exec(r: ExecRequest) -> Self {
        Self::Exec(r)
    }
    pub(crate) fn attach(r: AttachRequest) -> Self {
        Self::Attach(r)
    }
}

pub(crate) fn upgrade<S>(
    _inner: Arc<Inner>,
    _req: Request<Incoming>,
    _transport: Transport,
    _target: Target,
    _spawn: S,
) -> Response<http_body_util::Full<bytes::Bytes>> {
    text_response(
        StatusCode::NOT_IMPLEMENTED,
        "remote command protocols are not wired yet",
    )
}
