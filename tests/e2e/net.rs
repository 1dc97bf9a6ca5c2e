//! Networking end to end (issue 9): a published port answers on host loopback, port-form
//! validation, `--network none` has no interface. One booted box serves the tsi assertions.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::TestEnv;

fn env() -> &'static TestEnv {
    static ENV: OnceLock<TestEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        crate::support::build_guest_init();
        let env = TestEnv::new();
        // Import the embedded busybox once, before tests race to import it concurrently.
        let c = env.run(&["create", "--name", "net-warm", "busybox", "true"]);
        assert_eq!(c.code, 0, "{}", c.stderr);
        env.run(&["rm", "net-warm"]);
        env
    })
}

#[test]
fn unsupported_publish_forms_are_refused_before_boot() {
    for (spec, needle) in [
        ("8080:80/sctp", "sctp is not supported"),
        ("[::1]:8080:80", "IPv6 host addresses are not supported"),
        ("localhost:8080:80", "is not an IPv4 address"),
        ("8000-8010:80", "ranges must have the same length"),
    ] {
        let r = env().run(&["run", "--rm", "-p", spec, "busybox", "true"]);
        assert_eq!(r.code, 2, "{spec}: {}", r.stderr);
        assert!(r.stderr.contains(needle), "{spec}: {}", r.stderr);
        assert!(r.stderr.contains("hint:"), "{spec}: {}", r.stderr);
    }
    let r = env().run(&["run", "--rm", "--dns", "not-an-ip", "busybox", "true"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is not an IP address"), "{}", r.stderr);
}

#[test]
fn a_host_port_in_use_is_an_error_before_boot() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let r = env().run(&[
        "run",
        "--rm",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("127.0.0.1:{port}/tcp is not available")),
        "{}",
        r.stderr
    );
}

#[test]
fn a_published_port_answers_on_host_loopback_and_port_lists_it() {
    let r = env().run(&[
        "run",
        "-d",
        "--name",
        "net-web",
        "--hostname",
        "webhost",
        "-p",
        "127.0.0.1::80",
        "-p",
        "127.0.0.1::53/udp",
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/etc",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let p = env().run(&["port", "net-web"]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    let host_port: u16 = p
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("80/tcp -> 127.0.0.1:"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("port output: {:?}", p.stdout));
    assert!(
        p.stdout.contains("53/udp -> 127.0.0.1:"),
        "port output: {:?}",
        p.stdout
    );
    assert_ne!(host_port, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    let body = loop {
        let got = TcpStream::connect(("127.0.0.1", host_port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
                s.write_all(b"GET /hostname HTTP/1.0\r\n\r\n").ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                out.contains("200 OK").then_some(out)
            });
        if let Some(b) = got {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP answer on 127.0.0.1:{host_port}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.trim_end().ends_with("webhost"), "{body}");
    let e = env().run(&[
        "exec",
        "net-web",
        "cat",
        "/proc/net/dev",
        "/etc/resolv.conf",
    ]);
    assert!(e.stdout.contains("eth0:"), "{}", e.stdout);
    assert!(e.stdout.contains("nameserver 10.0.2.3"), "{}", e.stdout);
    env().run(&["rm", "-f", "net-web"]);
}

#[test]
fn network_none_has_no_interface_but_loopback() {
    let r = env().run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("lo:"), "{}", r.stdout);
    assert!(!r.stdout.contains("eth0"), "{}", r.stdout);
}
