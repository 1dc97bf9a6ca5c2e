//! Port forwarding (`portforward.k8s.io`, kubelet's `portforward/httpstream.go`), over SPDY
//! directly or tunnelled in a WebSocket: for every connection the client accepts locally it
//! opens a pair of SPDY streams, `error` and `data`,
//! with the same `requestid` and `port` headers. Once both are open the backend connects to the
//! port in the pod and bytes flow on the data stream; a failure is written on the error stream.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::http::SessionContext;
use crate::io::{pump_in, pump_out, OutChannel, PIPE_BYTES};
use crate::request::PortForwardRequest;
use crate::spdy::{Connection, Stream};

pub(crate) mod spdy;
pub(crate) mod websocket;

/// A half-open stream pair waiting for its partner.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

/// Pairs streams and forwards each pair until the client goes away.
pub(crate) async fn serve(
    ctx: &Arc<SessionContext>,
    mut conn: Connection,
    request: &PortForwardRequest,
) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    while let Some(stream) = conn.accept().await {
        while forwards.try_join_next().is_some() {}
        let (Some(kind), Some(request_id)) = (
            stream.headers.get("streamtype"),
            stream.headers.get("requestid"),
        ) else {
            tracing::debug!("port-forward stream without streamtype or requestid refused");
            conn.reset(stream.id).await;
            continue;
        };
        let request_id = request_id.to_owned();
        let pair = pending.entry(request_id.clone()).or_default();
        let slot = match kind {
            "error" => &mut pair.error,
            "data" => &mut pair.data,
            _ => {
                conn.reset(stream.id).await;
                continue;
            }
        };
        if slot.is_some() {
            // A second stream of the same kind for one request is a protocol error.
            conn.reset(stream.id).await;
            continue;
        }
        *slot = Some(stream);
        if pair.error.is_some() && pair.data.is_some() {
            if let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&request_id)
            {
                let error_out = conn.channel(error.id);
                let data_out = conn.channel(data.id);
                forwards.spawn(forward(
                    Arc::clone(ctx),
                    request.clone(),
                    error,
                    data,
                    error_out,
                    data_out,
                ));
            }
        } else if pending.len() > ctx.limits.max_streams_per_connection {
            tracing::debug!("too many half-open port-forward requests; closing");
            break;
        }
    }
    // The client is gone: nothing more can be forwarded.
    forwards.abort_all();
    conn.close().await;
}

/// Forwards one connection: the backend connects to the port, the data stream carries the bytes.
async fn forward(
    ctx: Arc<SessionContext>,
    request: PortForwardRequest,
    error: Stream,
    data: Stream,
    error_out: OutChannel,
    data_out: OutChannel,
) {
    // The client never writes on the error stream; dropping its receiver keeps the connection's
    // reader from ever waiting on it.
    drop(error.inbound);
    let port = data
        .headers
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0);
    let refused = |message: String| async {
        data_out.finish().await;
        Err(message)
    };
    let result = match port {
        None => refused("invalid or missing port header".to_owned()).await,
        Some(port) if !request.allows(port) => {
            refused(format!(
                "port {port} was not requested for this port-forward session"
            ))
            .await
        }
        Some(port) => {
            let (backend_end, pump_end) = tokio::io::duplex(PIPE_BYTES);
            let (from_pod, to_pod) = tokio::io::split(pump_end);
            // All three run inside this task, so ending the session ends them.
            let mut inbound = std::pin::pin!(pump_in(data.inbound, to_pod));
            let mut inbound_done = false;
            let mut work = std::pin::pin!(async {
                let backend = ctx
                    .backend
                    .port_forward(&request.pod_sandbox_id, port, backend_end);
                // The pod closing its side reaches the client at once (a half-close), even if
                // the backend still waits for the client's side.
                let to_client = async {
                    pump_out(from_pod, &data_out).await;
                    data_out.finish().await;
                };
                tokio::join!(backend, to_client).0
            });
            // The backend and the pod-to-client copy decide the end; the client-to-pod copy
            // only runs alongside them.
            let result = loop {
                tokio::select! {
                    result = &mut work => break result,
                    () = &mut inbound, if !inbound_done => inbound_done = true,
                }
            };
            result.map_err(|e| {
                format!(
                    "error forwarding port {port} to pod {}: {e}",
                    request.pod_sandbox_id
                )
            })
        }
    };
    if let Err(message) = result {
        tracing::debug!("{message}");
        error_out.send(message.into_bytes().into()).await;
    }
    error_out.finish().await;
}
