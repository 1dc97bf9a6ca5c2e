//! `ADD <http(s) URL>`: the build host fetches the file (as Docker does), bounded in size,
//! checked against `--checksum`, with the server's `Last-Modified` time as its mtime (zero when
//! absent, as Docker's builder). The bytes end up in the layer, so the step's cache key covers
//! the content: a changed file at the same URL is a cache miss, an unchanged one a hit.

use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest as _, Sha256, Sha512};

/// Largest file one `ADD <url>` fetches (the layer is built in memory).
pub const MAX_REMOTE_BYTES: u64 = 512 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// A fetched file.
#[derive(Debug)]
pub struct Fetched {
    /// The body.
    pub bytes: Vec<u8>,
    /// `Last-Modified` in seconds since the epoch; 0 without one.
    pub mtime: u64,
    /// Its name when the destination is a directory: the URL path's last segment, else the
    /// `Content-Disposition` filename; `None` when neither gives one.
    pub name: Option<String>,
}

/// True for the sources ADD fetches; other URL forms are refused by [`refusal`].
pub fn is_http(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Why a non-http source that looks remote cannot be added (`git@…`, `git://`, `ftp://`);
/// `None` for local paths.
pub fn refusal(src: &str) -> Option<String> {
    if is_http(src) {
        return None;
    }
    (src.contains("://") || src.starts_with("git@")).then(|| {
        "only http:// and https:// URLs can be fetched (git and other schemes are not supported)"
            .to_owned()
    })
}

/// A `--checksum=ALGO:HEX` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    algo: &'static str,
    hex: String,
}

impl Checksum {
    /// Parses `sha256:<64 hex>` or `sha512:<128 hex>`.
    ///
    /// # Errors
    /// The accepted forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("--checksum={s}: expected sha256:<64 hex digits> or sha512:<128 hex digits>")
        };
        let (algo, hex) = s.split_once(':').ok_or_else(bad)?;
        let (algo, len) = match algo {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ => return Err(bad()),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Self {
            algo,
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// `Err(actual)` when `bytes` do not have this checksum.
    fn check(&self, bytes: &[u8]) -> Result<(), String> {
        let actual = match self.algo {
            "sha256" => hex::encode(Sha256::digest(bytes)),
            _ => hex::encode(Sha512::digest(bytes)),
        };
        if actual == self.hex {
            Ok(())
        } else {
            Err(format!("{}:{actual}", self.algo))
        }
    }
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algo, self.hex)
    }
}

/// GETs `url` (at most [`MAX_REMOTE_BYTES`]) and checks `checksum`.
///
/// # Errors
/// The reason, for the user: unreachable (with the cause), an HTTP error status, too large,
/// a checksum mismatch.
pub fn fetch(url: &str, checksum: Option<&Checksum>) -> Result<Fetched, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("not a valid URL: {e}"))?;
    let agent = agent(&uri);
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("not reachable from the build host: {e}"))?;
    let status = response.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(format!("the server answered HTTP {status}"));
    }
    let too_large = || {
        format!(
            "larger than the {} MiB an ADD may fetch",
            MAX_REMOTE_BYTES >> 20
        )
    };
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if header("content-length")
        .and_then(|l| l.trim().parse::<u64>().ok())
        .is_some_and(|l| l > MAX_REMOTE_BYTES)
    {
        return Err(too_large());
    }
    let mtime = header("last-modified")
        .and_then(|v| httpdate::parse_http_date(&v).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let name = url_file_name(uri.path())
        .or_else(|| header("content-disposition").and_then(|v| disposition_file_name(&v)));
    let bytes = response
        .body_mut()
        .with_config()
        .limit(MAX_REMOTE_BYTES)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => too_large(),
            e => format!("reading the response: {e}"),
        })?;
    if let Some(c) = checksum {
        c.check(&bytes)
            .map_err(|actual| format!("checksum mismatch: expected {c}, got {actual}"))?;
    }
    Ok(Fetched { bytes, mtime, name })
}

/// No proxy for loopback hosts (a proxy cannot reach the build host's 127.0.0.1).
fn agent(uri: &ureq::http::Uri) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("a3s-box-build/", env!("CARGO_PKG_VERSION")));
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        config = config.proxy(None);
    }
    ureq::Agent::new_with_config(config.build())
}

/// The last segment of a URL path (`/a/b.tar.gz` → `b.tar.gz`); none for `/` or `/dir/`.
fn url_file_name(path: &str) -> Option<String> {
    if path.ends_with('/') {
        return None;
    }
    safe_name(path.rsplit('/').next()?)
}

/// `attachment; filename="x.txt"` → `x.txt`.
fn disposition_file_name(v: &str) -> Option<String> {
    let value = v.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case("filename").then_some(v)
    })?;
    let value = value.trim().trim_matches('"');
    if value.ends_with('/') {
        return None;
    }
    safe_name(value.rsplit('/').next()?)
}

fn safe_name(n: &str) -> Option<String> {
    (!n.is_empty() && n != "." && n != ".." && !n.contains('\0')).then(|| n.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Serves one canned HTTP response on 127.0.0.1 and returns the URL base.
    fn serve_once(response: Vec<u8>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            s.write_all(&response).unwrap();
        });
        format!("http://{addr}")
    }

    #[test]
    fn fetches_with_last_modified_name_and_checksum() {
        let body = b"hello remote\n";
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut bytes = resp.into_bytes();
        bytes.extend_from_slice(body);
        let base = serve_once(bytes);
        let sum =
            Checksum::parse(&format!("sha256:{}", hex::encode(Sha256::digest(body)))).unwrap();
        let f = fetch(&format!("{base}/dir/hello.txt"), Some(&sum)).unwrap();
        assert_eq!(f.bytes, body);
        assert_eq!(f.mtime, 784_111_777);
        assert_eq!(f.name.as_deref(), Some("hello.txt"));
    }

    #[test]
    fn a_wrong_checksum_an_error_status_and_an_unreachable_host_are_refused_with_the_reason() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi".to_vec();
        let base = serve_once(ok);
        let wrong = Checksum::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let e = fetch(&format!("{base}/x"), Some(&wrong)).unwrap_err();
        assert!(e.contains("checksum mismatch"), "{e}");
        assert!(e.contains(&hex::encode(Sha256::digest(b"hi"))), "{e}");

        let base = serve_once(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
        );
        let e = fetch(&format!("{base}/x"), None).unwrap_err();
        assert!(e.contains("HTTP 404"), "{e}");

        // A port nobody listens on: bind one, then close it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("http://127.0.0.1:{port}/x"), None).unwrap_err();
        assert!(e.contains("not reachable"), "{e}");
    }

    #[test]
    fn a_declared_oversized_body_is_refused_before_reading() {
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            MAX_REMOTE_BYTES + 1
        );
        let base = serve_once(resp.into_bytes());
        let e = fetch(&format!("{base}/big"), None).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn names_come_from_the_path_then_content_disposition() {
        assert_eq!(url_file_name("/a/b.tgz").as_deref(), Some("b.tgz"));
        assert_eq!(url_file_name("/a/"), None);
        assert_eq!(url_file_name("/"), None);
        assert_eq!(
            disposition_file_name("attachment; filename=\"../x.txt\"").as_deref(),
            Some("x.txt")
        );
        assert_eq!(disposition_file_name("attachment; filename=\"..\""), None);
    }

    #[test]
    fn checksums_and_schemes() {
        assert!(Checksum::parse("md5:abc").is_err());
        assert!(Checksum::parse("sha256:abc").is_err());
        assert!(Checksum::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(refusal("git@github.com:a/b.git").is_some());
        assert!(refusal("ftp://h/x").is_some());
        assert!(refusal("HTTPS://h/x").is_none());
        assert!(refusal("dir/x").is_none());
    }
}
