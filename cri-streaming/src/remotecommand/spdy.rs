//! Remote command over SPDY/3.1 (kubelet's `createHTTPStreamStreams`): the client opens one
//! stream per channel, tagged with a `streamtype` header, and the session starts once all the
//! streams the request selected are open.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

use super::{run, Channels, Target};
use crate::http::{Body, SessionContext, SessionFuture};
use crate::spdy::{negotiate, upgrade_response, Connection};
use crate::status::StatusFormat;

/// Protocols in kubelet's order of preference. v5 over SPDY is v4 (its CLOSE signal is a
/// WebSocket feature).
const PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

pub(crate) fn upgrade(
    ctx: Arc<SessionContext>,
    mut req: Request<Incoming>,
    target: Target,
    spawn: impl FnOnce(SessionFuture),
) -> Response<Body> {
    let protocol = match negotiate(req.headers(), PROTOCOLS) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    spawn(Box::pin(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(err) => {
                tracing::debug!("spdy upgrade failed: {err}");
                return;
            }
        };
        let conn = Connection::start(TokioIo::new(upgraded), ctx.limits);
        serve(&ctx, conn, protocol.unwrap_or("channel.k8s.io"), &target).await;
    }));
    upgrade_response(protocol)
}

async fn serve(ctx: &SessionContext, mut conn: Connection, protocol: &str, target: &Target) {
    let resizable = !matches!(protocol, "v2.channel.k8s.io" | "channel.k8s.io");
    let format = match protocol {
        "v5.channel.k8s.io" | "v4.channel.k8s.io" => StatusFormat::Json,
        _ => StatusFormat::Text,
    };
    let expected = 1
        + usize::from(target.stdin)
        + usize::from(target.stdout)
        + usize::from(target.stderr)
        + usize::from(target.tty && resizable);
    let mut channels = Channels::default();
    let mut received = 0;
    let deadline = tokio::time::sleep(ctx.stream_creation_timeout);
    tokio::pin!(deadline);
    while received < expected {
        let stream = tokio::select! {
            s = conn.accept() => match s {
                Some(s) => s,
                None => return,
            },
            () = &mut deadline => {
                tracing::debug!("timed out waiting for the client to create streams");
                conn.close().await;
                return;
            }
        };
        let slot_free = match stream.headers.get("streamtype") {
            Some("error") if channels.error.is_none() => {
                channels.error = Some(conn.channel(stream.id));
                true
            }
            Some("stdin") if target.stdin && channels.stdin.is_none() => {
                channels.stdin = Some(stream.inbound);
                true
            }
            Some("stdout") if target.stdout && channels.stdout.is_none() => {
                channels.stdout = Some(conn.channel(stream.id));
                true
            }
            Some("stderr") if target.stderr && channels.stderr.is_none() => {
                channels.stderr = Some(conn.channel(stream.id));
                true
            }
            Some("resize") if target.tty && resizable && channels.resize.is_none() => {
                channels.resize = Some(stream.inbound);
                true
            }
            other => {
                tracing::debug!(streamtype = ?other, "unexpected stream refused");
                conn.reset(stream.id).await;
                false
            }
        };
        if slot_free {
            received += 1;
        }
    }
    if protocol == "channel.k8s.io" {
        // v1 clients expect stdin to be closed right away (kubelet 1.0 behaviour).
        channels.stdin = None;
    }
    let gone = conn.gone();
    run(ctx.backend.as_ref(), target, channels, format, gone).await;
    conn.close().await;
}
