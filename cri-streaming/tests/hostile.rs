//! Hostile clients on raw sockets: bounded HTTP heads, SPDY frames and header blocks.

use std::sync::Arc;

use a3s_cri_streaming::ExecRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{serve, HostBackend};

fn request() -> ExecRequest {
    ExecRequest {
        container_id: "host".into(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    }
}

/// Opens an upgraded SPDY connection for a fresh exec URL; returns the socket after the 101.
async fn upgraded(url: &str) -> TcpStream {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    while !response.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "server closed before answering"
        );
        response.push(byte[0]);
    }
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 101"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{response}"
    );
    tcp
}

/// Reads until the server closes; the bytes it sent.
async fn until_closed(tcp: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = tcp.read_to_end(&mut all).await;
    all
}

/// A GOAWAY control frame head (SPDY/3, type 7) anywhere in `bytes`.
fn has_goaway(bytes: &[u8]) -> bool {
    bytes.windows(4).any(|w| w == [0x80, 0x03, 0x00, 0x07])
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_data_frame_ends_the_connection() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let mut tcp = upgraded(&server.get_exec(&request()).unwrap()).await;
    // DATA on stream 1 claiming 16 MiB - 1: refused from the length field alone.
    tcp.write_all(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let answer = until_closed(&mut tcp).await;
    assert!(has_goaway(&answer), "{answer:02x?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_header_block_ends_the_connection() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let mut tcp = upgraded(&server.get_exec(&request()).unwrap()).await;
    // SYN_STREAM whose length (1 MiB) exceeds any allowed header block.
    let mut frame = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x10, 0x00, 0x00];
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    tcp.write_all(&frame).await.unwrap();
    let answer = until_closed(&mut tcp).await;
    assert!(has_goaway(&answer), "{answer:02x?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_header_block_ends_the_connection() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let mut tcp = upgraded(&server.get_exec(&request()).unwrap()).await;
    let mut frame = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 26];
    frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(b"this is not zlib at all!");
    frame.truncate(8 + 26);
    tcp.write_all(&frame).await.unwrap();
    let answer = until_closed(&mut tcp).await;
    assert!(has_goaway(&answer), "{answer:02x?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_http_head_is_refused() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let url = server.get_exec(&request()).unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(256 * 1024)
    );
    // The server may stop reading and close before all of it is written.
    let _ = tcp.write_all(head.as_bytes()).await;
    let answer = until_closed(&mut tcp).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_protocol_version_is_refused_with_the_accepted_list() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let url = server.get_exec(&request()).unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 403"), "{answer}");
    assert!(
        answer.contains("x-accepted-stream-protocol-versions: v5.channel.k8s.io"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_connection_is_closed_after_the_idle_timeout() {
    let server = serve(Arc::new(HostBackend::default()), |c| {
        c.limits.idle_timeout = std::time::Duration::from_millis(200);
    });
    let mut tcp = upgraded(&server.get_exec(&request()).unwrap()).await;
    // Send nothing: the server says GOAWAY and closes instead of waiting forever.
    let answer = until_closed(&mut tcp).await;
    assert!(has_goaway(&answer), "{answer:02x?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let server = serve(Arc::new(HostBackend::default()), |c| {
        c.limits.max_connections = 1
    });
    // Holds the only slot for as long as it is open.
    let _first = upgraded(&server.get_exec(&request()).unwrap()).await;
    let mut second = TcpStream::connect(server.local_addr()).await.unwrap();
    let _ = second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        until_closed(&mut second).await.is_empty(),
        "no answer, just a close"
    );
}

/// Sends `head` on a fresh connection and returns the status line of the answer.
async fn status_line(server: &a3s_cri_streaming::Server, head: &str) -> String {
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_refuse_unknown_paths_plain_requests_and_misused_tokens() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let upgrade = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n";
    let line = status_line(
        &server,
        &format!("POST /shell/abc HTTP/1.1\r\nHost: x\r\n{upgrade}"),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 404"), "{line}");

    // No upgrade: nothing to stream over, and the token is not spent.
    let url = server.get_exec(&request()).unwrap();
    let path = url.split_once("/exec/").unwrap().1;
    let line = status_line(
        &server,
        &format!("GET /exec/{path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 400"), "{line}");

    // An exec token presented as an attach: refused, and spent.
    let line = status_line(
        &server,
        &format!("POST /attach/{path} HTTP/1.1\r\nHost: x\r\n{upgrade}"),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 404"), "{line}");
    let line = status_line(
        &server,
        &format!("POST /exec/{path} HTTP/1.1\r\nHost: x\r\n{upgrade}"),
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 404"), "{line}");
}
