//! port-forward through client-go's portforward package (SPDY, and SPDY tunnelled in a
//! WebSocket), to a real TCP server on 127.0.0.1.

use std::sync::Arc;

use a3s_cri_streaming::PortForwardRequest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::support::{serve, streamclient, text, HostBackend};

const BANNER: &[u8] = b"hello from the pod\n";

/// A "pod" service: greets, then echoes everything until the client half-closes.
async fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                conn.write_all(BANNER).await.unwrap();
                let (mut r, mut w) = conn.split();
                tokio::io::copy(&mut r, &mut w).await.unwrap();
            });
        }
    });
    port
}

/// Starts the client forwarding to `port`; returns it and the local port it listens on.
async fn forward(url: &str, port: u16, transport: &str) -> (Child, u16) {
    let mut child = Command::new(streamclient())
        .args([
            "portforward",
            "-url",
            url,
            "-port",
            &port.to_string(),
            "-transport",
            transport,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().unwrap_or_default();
    let local = line.strip_prefix("ready ").and_then(|p| p.parse().ok());
    let Some(local) = local else {
        let out = child.wait_with_output().await.unwrap();
        panic!(
            "{transport}: client did not start: {line:?} {}",
            text(&out.stderr)
        );
    };
    (child, local)
}

async fn stop(mut child: Child) -> String {
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    text(&out.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_real_bytes_both_ways() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let pod_port = echo_server().await;
    let payload: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    for transport in ["spdy", "websocket"] {
        let url = server
            .get_port_forward(&PortForwardRequest {
                pod_sandbox_id: "pod".into(),
                port: vec![i32::from(pod_port)],
            })
            .unwrap();
        let (child, local) = forward(&url, pod_port, transport).await;
        // Two connections through one session, one after the other.
        for _ in 0..2 {
            let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
            let (mut r, mut w) = conn.split();
            let send = async {
                w.write_all(&payload).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut received = Vec::new();
            let recv = r.read_to_end(&mut received);
            let (_, n) = tokio::join!(send, recv);
            n.unwrap();
            assert_eq!(&received[..BANNER.len()], BANNER, "{transport}");
            assert!(
                received[BANNER.len()..] == payload[..],
                "{transport}: {} bytes back",
                received.len()
            );
        }
        stop(child).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_ports_outside_the_request_and_reports_failures() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let pod_port = echo_server().await;
    // A port nothing listens on: bind, note the port, close.
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for transport in ["spdy", "websocket"] {
        for (allowed, target, expect) in [
            (vec![i32::from(pod_port)], closed_port, "was not requested"),
            (vec![], closed_port, "connecting to port"),
        ] {
            let url = server
                .get_port_forward(&PortForwardRequest {
                    pod_sandbox_id: "pod".into(),
                    port: allowed,
                })
                .unwrap();
            let (child, local) = forward(&url, target, transport).await;
            let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
            let mut received = Vec::new();
            let _ = conn.read_to_end(&mut received).await;
            assert!(received.is_empty(), "{transport}: got {received:?}");
            let stderr = stop(child).await;
            assert!(stderr.contains(expect), "{transport}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ending_the_session_closes_the_pod_side_connection() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod_port = listener.local_addr().unwrap().port();
    for transport in ["spdy", "websocket"] {
        let url = server
            .get_port_forward(&PortForwardRequest {
                pod_sandbox_id: "pod".into(),
                port: vec![],
            })
            .unwrap();
        let (mut child, local) = forward(&url, pod_port, transport).await;
        let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        conn.write_all(b"x").await.unwrap();
        let (mut pod_side, _) = listener.accept().await.unwrap();
        let mut first = [0u8; 1];
        pod_side.read_exact(&mut first).await.unwrap();
        // The client vanishes without closing anything: the server must let go of the pod.
        child.kill().await.unwrap();
        let mut rest = Vec::new();
        pod_side.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pod_closing_its_side_reaches_the_client_at_once() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    // A service that greets and hangs up without waiting for the client.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            conn.write_all(BANNER).await.unwrap();
        }
    });
    for transport in ["spdy", "websocket"] {
        let url = server
            .get_port_forward(&PortForwardRequest {
                pod_sandbox_id: "pod".into(),
                port: vec![],
            })
            .unwrap();
        let (child, local) = forward(&url, pod_port, transport).await;
        // The client keeps its own side open and reads to the end, as with a direct connection.
        let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
        let mut received = Vec::new();
        conn.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, BANNER, "{transport}");
        stop(child).await;
    }
}
