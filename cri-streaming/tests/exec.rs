//! exec and attach through client-go's SPDY and WebSocket executors.

use std::sync::Arc;
use std::time::Duration;

use a3s_cri_streaming::{AttachRequest, ExecRequest, Server, TerminalSize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::support::{client, serve, streamclient, text, Attachable, HostBackend};

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

fn exec(cmd: &[&str], stdin: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "host".into(),
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

async fn run_exec(
    server: &Server,
    transport: &str,
    req: &ExecRequest,
    extra: &[&str],
    stdin: &[u8],
) -> std::process::Output {
    let url = server.get_exec(req).unwrap();
    let mut args = vec!["exec", "-url", &url, "-transport", transport];
    if req.stdin {
        args.push("-stdin");
    }
    args.extend_from_slice(extra);
    client(&args, stdin).await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_separates_stdout_and_stderr_and_reports_exit_codes() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    for transport in TRANSPORTS {
        let out = run_exec(
            &server,
            transport,
            &exec(
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                false,
                false,
            ),
            &[],
            b"",
        )
        .await;
        assert_eq!(text(&out.stdout), "out\n", "{transport}");
        assert_eq!(text(&out.stderr), "err\n", "{transport}");
        assert_eq!(out.status.code(), Some(3), "{transport}");

        let out = run_exec(&server, transport, &exec(&["true"], false, false), &[], b"").await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{transport}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_streams_stdin_to_the_process_and_its_output_back() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    // 1 MiB of varied bytes: many frames each way, and stdin EOF must reach the process.
    let payload: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for transport in TRANSPORTS {
        let out = run_exec(
            &server,
            transport,
            &exec(&["sh", "-c", "cat; echo eof >&2"], true, false),
            &[],
            &payload,
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{transport}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout == payload,
            "{transport}: stdout differs ({} bytes)",
            out.stdout.len()
        );
        assert_eq!(text(&out.stderr), "eof\n", "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_tty_gets_the_initial_terminal_size() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    for transport in TRANSPORTS {
        let req = exec(
            &["sh", "-c", "stty size; tty >/dev/null && echo on-a-tty"],
            false,
            true,
        );
        let out = run_exec(&server, transport, &req, &["-tty", "-size", "123x45"], b"").await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{transport}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "45 123\r\non-a-tty\r\n", "{transport}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_tty_applies_resizes() {
    let backend = Arc::new(HostBackend::default());
    let server = serve(Arc::clone(&backend), |_| {});
    for transport in TRANSPORTS {
        let mut sizes = backend.sizes();
        backend.clear_sizes();
        let req = exec(&["sh", "-c", "read line; stty size; exit 7"], true, true);
        let url = server.get_exec(&req).unwrap();
        let mut child = Command::new(streamclient())
            .args([
                "exec",
                "-url",
                &url,
                "-transport",
                transport,
                "-stdin",
                "-tty",
                "-size",
                "80x24",
                "-size",
                "100x40",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        // Only once both sizes have reached the pty does the process go on to `stty size`.
        let seen = sizes.wait_for(|v| v.len() >= 2).await.unwrap().clone();
        assert_eq!(
            seen,
            vec![
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ],
            "{transport}"
        );
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(
            out.status.code(),
            Some(7),
            "{transport}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).ends_with("40 100\r\n"),
            "{transport}: {:?}",
            text(&out.stdout)
        );
        drop(stdin);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_connects_to_the_running_process() {
    let backend = Arc::new(HostBackend::default());
    let server = serve(Arc::clone(&backend), |_| {});
    for transport in TRANSPORTS {
        let mut process = Command::new("sh")
            .args([
                "-c",
                "while read l; do echo \"attached: $l\"; done; echo bye",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let id = format!("main-{transport}");
        backend.containers.lock().unwrap().insert(
            id.clone(),
            Attachable {
                stdin: process.stdin.take().unwrap(),
                stdout: process.stdout.take().unwrap(),
            },
        );
        let url = server
            .get_attach(&AttachRequest {
                container_id: id,
                stdin: true,
                stdout: true,
                ..Default::default()
            })
            .unwrap();
        let out = client(
            &["exec", "-url", &url, "-transport", transport, "-stdin"],
            b"a\nb\n",
        )
        .await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{transport}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            "attached: a\nattached: b\nbye\n",
            "{transport}"
        );
        assert!(process.wait().await.unwrap().success());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_failure_reaches_the_client_as_an_error() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    for transport in TRANSPORTS {
        let mut req = exec(&["true"], false, false);
        req.container_id = "nope".into();
        let out = run_exec(&server, transport, &req, &[], b"").await;
        assert_eq!(out.status.code(), Some(125), "{transport}");
        assert!(
            text(&out.stderr).contains("no such container nope"),
            "{transport}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_reused_and_expired_tokens_are_rejected() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    for transport in TRANSPORTS {
        let url = server.get_exec(&exec(&["true"], false, false)).unwrap();
        let out = client(&["exec", "-url", &url, "-transport", transport], b"").await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{transport}: {}",
            text(&out.stderr)
        );
        // The same URL a second time.
        let out = client(&["exec", "-url", &url, "-transport", transport], b"").await;
        assert_eq!(out.status.code(), Some(125), "{transport}");
        // A made-up token.
        let forged = format!(
            "{}/exec/AAAAAAAAAAAAAAAAAAAAAA",
            url.rsplit_once("/exec/").unwrap().0
        );
        let out = client(&["exec", "-url", &forged, "-transport", transport], b"").await;
        assert_eq!(out.status.code(), Some(125), "{transport}");
    }
    // With a zero lifetime every URL has expired by the time a client uses it.
    let expiring = serve(Arc::new(HostBackend::default()), |c| {
        c.token_ttl = Duration::ZERO
    });
    let url = expiring.get_exec(&exec(&["true"], false, false)).unwrap();
    let out = client(&["exec", "-url", &url], b"").await;
    assert_eq!(out.status.code(), Some(125));
    let raw = reqwest_like_get(&url).await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains("unknown or expired streaming token"), "{raw}");
}

/// A minimal upgrade request over a raw socket, to read the server's exact answer.
async fn reqwest_like_get(url: &str) -> String {
    use tokio::io::AsyncReadExt;
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut tcp = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn client_disconnect_stops_the_exec_process() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    for transport in TRANSPORTS {
        let req = exec(&["sh", "-c", "echo $$; exec sleep 600"], false, false);
        let url = server.get_exec(&req).unwrap();
        let mut child = Command::new(streamclient())
            .args(["exec", "-url", &url, "-transport", transport])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let pid: u32 = lines
            .next_line()
            .await
            .unwrap()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(alive(pid), "{transport}: exec'd process should be running");
        child.kill().await.unwrap();
        // The backend's future is dropped when the connection goes; its guard kills the process.
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn older_protocol_versions_still_work() {
    let server = serve(Arc::new(HostBackend::default()), |_| {});
    let req = exec(
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        false,
    );
    for (transport, protocol) in [
        ("spdy", "v4.channel.k8s.io"),
        ("spdy", "v3.channel.k8s.io"),
        ("spdy", "v2.channel.k8s.io"),
        ("spdy", "channel.k8s.io"),
        ("websocket", "v4.channel.k8s.io"),
        ("websocket", "channel.k8s.io"),
    ] {
        let out = run_exec(&server, transport, &req, &["-protocols", protocol], b"").await;
        let stderr = text(&out.stderr);
        if protocol == "channel.k8s.io" {
            // client-go's v1 races its stdout/stderr copies against its error-stream reader and
            // returns on whichever finishes first (kubelet has the same race): either all output
            // and success, or the status message.
            let all_output = out.status.code() == Some(0) && text(&out.stdout) == "out\n";
            let status_seen = out.status.code() == Some(125)
                && stderr.contains("command terminated with non-zero exit code: exit status 3");
            assert!(all_output || status_seen, "{transport} {protocol}: {out:?}");
            continue;
        }
        assert_eq!(text(&out.stdout), "out\n", "{transport} {protocol}");
        assert!(
            stderr.starts_with("err\n"),
            "{transport} {protocol}: {stderr}"
        );
        if protocol.starts_with("v4") {
            // v4 carries the exit code itself.
            assert_eq!(
                out.status.code(),
                Some(3),
                "{transport} {protocol}: {stderr}"
            );
        } else {
            // Before v4 the error stream carries only the message.
            assert_eq!(out.status.code(), Some(125), "{transport} {protocol}");
            assert!(
                stderr.contains("command terminated with non-zero exit code: exit status 3"),
                "{transport} {protocol}: {stderr}"
            );
        }
    }
}
