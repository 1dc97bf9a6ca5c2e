//! Port forwarding over a direct SPDY/3.1 upgrade (`portforward.k8s.io`).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use crate::http::{Body, SessionContext, SessionFuture};
use crate::request::PortForwardRequest;
use crate::spdy::{negotiate, upgrade_response, Connection};

const PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// Upgrades a port-forward request to SPDY.
pub(crate) fn upgrade(
    ctx: Arc<SessionContext>,
    mut req: Request<Incoming>,
    request: PortForwardRequest,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let protocol = match negotiate(req.headers(), PROTOCOLS) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    spawn(Box::pin(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let conn = Connection::start(TokioIo::new(upgraded), ctx.limits);
                super::serve(&ctx, conn, &request).await;
            }
            Err(err) => tracing::debug!("spdy upgrade failed: {err}"),
        }
    }));
    upgrade_response(protocol)
}
