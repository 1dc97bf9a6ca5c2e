//! Bytes through the streaming server against the same bytes without it, measured in one run:
//! - port-forward: 32 MiB up and 32 MiB down through client-go's portforward (SPDY, and SPDY
//!   tunnelled in a WebSocket) to a local TCP server, against a direct TCP connection to it;
//! - exec: 32 MiB through `cat` with client-go's executor (SPDY and WebSocket), against piping
//!   the same bytes through a local `cat`.
//!
//! `cargo bench -p a3s-cri-streaming --bench throughput` (release build; needs Go for the
//! client). Client, server and backend share the machine, so the ratios include the Go client's
//! own copying.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

#[allow(dead_code, unreachable_pub)]
#[path = "../tests/support.rs"]
mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_cri_streaming::{ExecRequest, PortForwardRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

use support::{serve, streamclient, HostBackend};

const BYTES: usize = 32 * 1024 * 1024;
const RUNS: usize = 5;

/// A "pod" service: a connection starting with `u` uploads until EOF and gets the byte count
/// back; one starting with `d` gets `BYTES` bytes.
async fn pod_service() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                conn.read_exact(&mut mode).await.unwrap();
                if mode[0] == b'u' {
                    let n = tokio::io::copy(&mut conn, &mut tokio::io::sink())
                        .await
                        .unwrap();
                    conn.write_all(&n.to_be_bytes()).await.unwrap();
                } else {
                    let chunk = vec![0x5a; 64 * 1024];
                    for _ in 0..BYTES / chunk.len() {
                        conn.write_all(&chunk).await.unwrap();
                    }
                }
            });
        }
    });
    port
}

async fn upload(port: u16) -> Duration {
    let start = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"u").await.unwrap();
    let chunk = vec![0xa5; 64 * 1024];
    for _ in 0..BYTES / chunk.len() {
        conn.write_all(&chunk).await.unwrap();
    }
    conn.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    conn.read_exact(&mut count).await.unwrap();
    assert_eq!(u64::from_be_bytes(count), BYTES as u64);
    start.elapsed()
}

async fn download(port: u16) -> Duration {
    let start = Instant::now();
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"d").await.unwrap();
    let n = tokio::io::copy(&mut conn, &mut tokio::io::sink())
        .await
        .unwrap();
    assert_eq!(n, BYTES as u64);
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_per_s(d: Duration) -> f64 {
    (BYTES as f64 / (1024.0 * 1024.0)) / d.as_secs_f64()
}

fn report(what: &str, baseline: Duration, measured: Duration) {
    println!(
        "{what:<34} {:>8.1} MiB/s   baseline {:>8.1} MiB/s   ratio {:.2}x slower",
        mib_per_s(measured),
        mib_per_s(baseline),
        measured.as_secs_f64() / baseline.as_secs_f64()
    );
}

async fn exec_cat(url: &str, transport: &str, payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(streamclient())
        .args(["exec", "-url", url, "-transport", transport, "-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let feed = async {
        stdin.write_all(payload).await.unwrap();
        drop(stdin);
    };
    let drain = async {
        tokio::io::copy(&mut stdout, &mut tokio::io::sink())
            .await
            .unwrap()
    };
    let ((), n) = tokio::join!(feed, drain);
    assert_eq!(n, payload.len() as u64);
    assert!(child.wait().await.unwrap().success());
    start.elapsed()
}

async fn local_cat(payload: &[u8]) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let feed = async {
        stdin.write_all(payload).await.unwrap();
        drop(stdin);
    };
    let drain = async {
        tokio::io::copy(&mut stdout, &mut tokio::io::sink())
            .await
            .unwrap()
    };
    let ((), n) = tokio::join!(feed, drain);
    assert_eq!(n, payload.len() as u64);
    child.wait().await.unwrap();
    start.elapsed()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let pod_port = pod_service().await;
    streamclient();

    for transport in ["spdy", "websocket"] {
        let url = server
            .get_port_forward(&PortForwardRequest {
                pod_sandbox_id: "bench".into(),
                port: vec![],
            })
            .unwrap();
        let mut client = Command::new(streamclient())
            .args([
                "portforward",
                "-url",
                &url,
                "-port",
                &pod_port.to_string(),
                "-transport",
                transport,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let line = BufReader::new(client.stdout.take().unwrap())
            .lines()
            .next_line()
            .await
            .unwrap()
            .unwrap();
        let local: u16 = line.strip_prefix("ready ").unwrap().parse().unwrap();
        let (mut up, mut up_base, mut down, mut down_base) = (vec![], vec![], vec![], vec![]);
        // Alternate measured and baseline runs so drift on a shared machine hits both.
        for _ in 0..RUNS {
            up_base.push(upload(pod_port).await);
            up.push(upload(local).await);
            down_base.push(download(pod_port).await);
            down.push(download(local).await);
        }
        report(
            &format!("port-forward {transport} upload"),
            median(up_base),
            median(up),
        );
        report(
            &format!("port-forward {transport} download"),
            median(down_base),
            median(down),
        );
        client.kill().await.unwrap();
    }

    let payload: Vec<u8> = (0..BYTES).map(|i| ((i * 31) >> 5) as u8).collect();
    for transport in ["spdy", "websocket"] {
        let (mut measured, mut baseline) = (vec![], vec![]);
        for _ in 0..RUNS {
            baseline.push(local_cat(&payload).await);
            let req = ExecRequest {
                container_id: "host".into(),
                cmd: vec!["cat".into()],
                stdin: true,
                stdout: true,
                ..Default::default()
            };
            measured.push(exec_cat(&server.get_exec(&req).unwrap(), transport, &payload).await);
        }
        report(
            &format!("exec cat {transport} (stdin->stdout)"),
            median(baseline),
            median(measured),
        );
    }
}
