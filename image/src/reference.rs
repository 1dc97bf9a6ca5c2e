//! Image references (`[registry[:port]/]repository[:tag][@sha256:<hex>]`) and content digests.
//!
//! Naming follows Docker's defaults: a first path component is a registry only if it contains
//! `.` or `:` or is `localhost`; otherwise the registry is `docker.io`, and a single-component
//! repository on Docker Hub lives under `library/`. Without a tag or digest the tag is `latest`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The default registry for references that do not name one.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// A content digest, always `sha256:<64 lowercase hex>`.
///
/// Invariant: the inner string is exactly `sha256:` followed by 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).into())
    }

    /// The digest with the given raw SHA-256 value.
    pub fn from_sha256(hash: [u8; 32]) -> Self {
        Self(format!("sha256:{}", hex::encode(hash)))
    }

    /// The 64 hex digits after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The whole digest, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The algorithm is not `sha256`.
    #[error("unsupported digest algorithm in {0:?} (only sha256 is supported)")]
    Algorithm(String),
    /// The hex part is not 64 lowercase hex digits.
    #[error("digest {0:?} must be sha256: followed by 64 lowercase hex digits")]
    Hex(String),
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::Hex(s.to_owned()));
        };
        if alg != "sha256" {
            return Err(DigestError::Algorithm(s.to_owned()));
        }
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DigestError::Hex(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.0
    }
}

/// A parsed image reference with Docker's defaults applied.
///
/// Invariant: `registry` and `repository` are non-empty and valid; at least one of `tag` and
/// `digest` is set (`latest` is filled in when neither was given).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefError {
    /// The reference is empty.
    #[error("image reference is empty")]
    Empty,
    /// The repository part is malformed.
    #[error("invalid repository name {name:?} in image reference {input:?} (lowercase letters, digits and . _ - separators)")]
    Repository {
        /// The whole reference.
        input: String,
        /// The offending repository.
        name: String,
    },
    /// The registry host is malformed.
    #[error("invalid registry {host:?} in image reference {input:?}")]
    Registry {
        /// The whole reference.
        input: String,
        /// The offending host.
        host: String,
    },
    /// The tag is malformed.
    #[error("invalid tag {tag:?} in image reference {input:?} (up to 128 of [A-Za-z0-9_.-], not starting with . or -)")]
    Tag {
        /// The whole reference.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// The `@digest` part is malformed.
    #[error("invalid digest in image reference {input:?}")]
    Digest {
        /// The whole reference.
        input: String,
        /// Why.
        #[source]
        source: DigestError,
    },
}

impl ImageRef {
    /// The registry host (with port if any), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference names one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, RefError> {
        check_tag(tag, &self.to_string())?;
        Ok(Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_owned()),
            digest: None,
        })
    }

    /// The same repository pinned to `digest` (and no tag).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The short form users type: Docker Hub's `docker.io/` and `library/` dropped.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let Some(rest) = full.strip_prefix("docker.io/") else {
            return full;
        };
        rest.strip_prefix("library/").unwrap_or(rest).to_owned()
    }

    /// True when the registry is on the loopback interface (plain HTTP is allowed there).
    pub fn is_loopback_registry(&self) -> bool {
        let host = host_without_port(&self.registry);
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

fn check_tag(tag: &str, input: &str) -> Result<(), RefError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RefError::Tag {
            input: input.to_owned(),
            tag: tag.to_owned(),
        })
    }
}

/// A path component: `[a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut prev_sep: Option<u8> = None;
    let mut run = 0usize;
    for &ch in b {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            prev_sep = None;
            run = 0;
        } else if matches!(ch, b'.' | b'_' | b'-') {
            run += 1;
            match (prev_sep, ch) {
                (None, _) => {}
                (Some(b'_'), b'_') if run == 2 => {}
                (Some(b'-'), b'-') => {}
                _ => return false,
            }
            prev_sep = Some(ch);
        } else {
            return false;
        }
    }
    true
}

fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || h.starts_with('[') => (host, Some(port)),
        _ => (h, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return false;
        }
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(RefError::Empty);
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                let digest = d.parse::<Digest>().map_err(|source| RefError::Digest {
                    input: input.to_owned(),
                    source,
                })?;
                (rest, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(&rest[at + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t, input)?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
            {
                if !valid_host(first) {
                    return Err(RefError::Registry {
                        input: input.to_owned(),
                        host: first.to_owned(),
                    });
                }
                let reg = if first == "index.docker.io" || first == "registry-1.docker.io" {
                    DEFAULT_REGISTRY
                } else {
                    first
                };
                (reg.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.len() > 255
            || !repository.split('/').all(valid_component)
        {
            return Err(RefError::Repository {
                input: input.to_owned(),
                name: repository,
            });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, None) => Some("latest".to_owned()),
            (None, Some(_)) => None,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn applies_docker_hub_defaults() {
        assert_eq!(r("busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(
            r("busybox:1.36").to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(r("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(
            r("index.docker.io/library/alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(r("busybox").familiar(), "busybox:latest");
        assert_eq!(r("user/app:1").familiar(), "user/app:1");
    }

    #[test]
    fn recognises_registry_hosts_and_ports() {
        let x = r("127.0.0.1:5000/test/busybox:1");
        assert_eq!(x.registry(), "127.0.0.1:5000");
        assert_eq!(x.repository(), "test/busybox");
        assert_eq!(x.tag(), Some("1"));
        assert!(x.is_loopback_registry());
        let y = r("localhost/app");
        assert_eq!(y.registry(), "localhost");
        assert!(y.is_loopback_registry());
        let z = r("ghcr.io/org/app");
        assert!(!z.is_loopback_registry());
        assert_eq!(z.tag(), Some("latest"));
        assert!(r("[::1]:5000/a").is_loopback_registry());
    }

    #[test]
    fn parses_digests_with_and_without_tags() {
        let x = r(&format!("busybox@sha256:{HEX}"));
        assert_eq!(x.tag(), None);
        assert_eq!(x.digest().unwrap().hex(), HEX);
        assert_eq!(
            x.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        let y = r(&format!("h.io:5000/a/b:v1@sha256:{HEX}"));
        assert_eq!(y.tag(), Some("v1"));
        assert_eq!(y.to_string().parse::<ImageRef>().unwrap(), y);
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "a//b",
            "a/",
            "-a",
            "a:",
            "a:-x",
            "a@sha256:123",
            "a@md5:0123",
            "bad_host:x/app",
            "a__-b",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn digest_requires_lowercase_sha256() {
        assert!(format!("sha256:{HEX}").parse::<Digest>().is_ok());
        assert!(format!("sha256:{}", HEX.to_uppercase())
            .parse::<Digest>()
            .is_err());
        assert!(format!("sha512:{HEX}").parse::<Digest>().is_err());
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
