//! The KDS client: cache first, then the network.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::kds::validate::{self, Invalid};
use crate::kds::{CertSource, KdsCache, KdsError, KdsResource, VcekId, VekKind, DEFAULT_BASE_URL};
use crate::Product;

/// Largest body accepted from the KDS; real documents are a few KiB.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Fetches certificates and CRLs from an AMD KDS (or anything serving the same paths, such as
/// the simulator), through an optional on-disk cache.
///
/// Order for every request: a valid cached copy is returned without touching the network (CRLs
/// only while fresh, see the [module documentation](crate::kds)); otherwise, unless the client
/// is offline, the document is fetched, checked, cached atomically and returned.
///
/// Built with [`KdsClient::new`] and the `with_*` methods:
///
/// ```no_run
/// use a3s_attestation::kds::{CertSource, KdsCache, KdsClient, VekKind};
/// use a3s_attestation::Product;
///
/// let kds = KdsClient::new().with_cache(KdsCache::new("/home/me/.a3s/cache/kds"));
/// let chain_pem = kds.cert_chain(Product::Milan, VekKind::Vcek)?;
/// # Ok::<(), a3s_attestation::kds::KdsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct KdsClient {
    base_url: String,
    cache: Option<KdsCache>,
    offline: bool,
    agent: ureq::Agent,
    crl_max_age: Duration,
}

impl KdsClient {
    /// Time allowed to establish a connection to the KDS.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Time allowed for a whole request, body included.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Age after which a cached CRL is refetched when online.
    pub const CRL_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

    /// An online client for AMD's KDS ([`DEFAULT_BASE_URL`]) without a cache.
    ///
    /// Proxies are taken from the usual environment variables (`HTTPS_PROXY`, `NO_PROXY`, ...),
    /// except for a loopback base URL (see [`KdsClient::with_base_url`]).
    pub fn new() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            cache: None,
            offline: false,
            agent: build_agent(DEFAULT_BASE_URL),
            crl_max_age: Self::CRL_MAX_AGE,
        }
    }

    /// Uses another KDS, e.g. the simulator's `http://127.0.0.1:PORT`. A trailing `/` is ignored.
    ///
    /// A loopback base (`localhost`, `127.0.0.0/8`, `::1`) is always reached directly, never
    /// through a proxy from the environment.
    #[must_use]
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self.agent = build_agent(&self.base_url);
        self
    }

    /// Reads from and writes to `cache`.
    #[must_use]
    pub fn with_cache(mut self, cache: KdsCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// When `true`, never touches the network: only cached documents are returned.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// Changes how old a cached CRL may be before it is refetched (default [`Self::CRL_MAX_AGE`]).
    #[must_use]
    pub fn with_crl_max_age(mut self, max_age: Duration) -> Self {
        self.crl_max_age = max_age;
        self
    }

    /// The KDS base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The cache, if any.
    pub fn cache(&self) -> Option<&KdsCache> {
        self.cache.as_ref()
    }

    /// Whether the client is offline.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// Returns `resource` from the cache or, if missing and online, from the KDS.
    ///
    /// # Errors
    ///
    /// - the resource cannot be named (masked chip id, FMC SPL mismatch);
    /// - offline and not cached ([`KdsError::OfflineMiss`], [`KdsError::OfflineNoCache`]) or the
    ///   cached copy is invalid ([`KdsError::InvalidCached`]);
    /// - the KDS answered an error status ([`KdsError::NotFound`], [`KdsError::RateLimited`],
    ///   [`KdsError::HttpStatus`]), could not be reached ([`KdsError::Network`]), or sent
    ///   something that is not the document ([`KdsError::InvalidResponse`]);
    /// - the cache could not be read or written ([`KdsError::CacheIo`]).
    pub fn fetch(&self, resource: &KdsResource) -> Result<Vec<u8>, KdsError> {
        let url = resource.url(&self.base_url)?;
        let Some(cache) = &self.cache else {
            if self.offline {
                return Err(KdsError::OfflineNoCache { url });
            }
            return self.download(resource, &url);
        };

        let Some(entry) = cache.read(resource)? else {
            if self.offline {
                return Err(KdsError::OfflineMiss {
                    path: cache.path_of(resource)?,
                    url,
                });
            }
            return self.download_and_store(cache, resource, &url);
        };

        let checked = match validate::check(resource, &entry.bytes) {
            Ok(checked) => checked,
            Err(Invalid { what, reason }) => {
                if self.offline {
                    return Err(KdsError::InvalidCached {
                        path: entry.path,
                        what,
                        reason,
                    });
                }
                tracing::warn!(path = %entry.path.display(), %reason, "cached KDS document is invalid; fetching it again");
                return self.download_and_store(cache, resource, &url);
            }
        };

        if !matches!(resource, KdsResource::Crl { .. }) {
            tracing::debug!(path = %entry.path.display(), "KDS document served from cache");
            return Ok(entry.bytes);
        }
        let written = entry.modified.unwrap_or(UNIX_EPOCH);
        if validate::crl_is_fresh(
            written,
            checked.next_update,
            SystemTime::now(),
            self.crl_max_age,
        ) {
            tracing::debug!(path = %entry.path.display(), "fresh CRL served from cache");
            return Ok(entry.bytes);
        }
        if self.offline {
            tracing::warn!(path = %entry.path.display(), "cached CRL is stale; using it because the client is offline");
            return Ok(entry.bytes);
        }
        match self.download_and_store(cache, resource, &url) {
            Ok(bytes) => Ok(bytes),
            Err(error) => {
                tracing::warn!(path = %entry.path.display(), %url, error = %error, "cannot refresh stale CRL; using the cached copy");
                Ok(entry.bytes)
            }
        }
    }

    fn download_and_store(
        &self,
        cache: &KdsCache,
        resource: &KdsResource,
        url: &str,
    ) -> Result<Vec<u8>, KdsError> {
        let bytes = self.download(resource, url)?;
        let path = cache.write(resource, &bytes)?;
        tracing::debug!(path = %path.display(), "cached KDS document");
        Ok(bytes)
    }

    /// GETs `url` and checks that the body is the document `resource` names.
    fn download(&self, resource: &KdsResource, url: &str) -> Result<Vec<u8>, KdsError> {
        tracing::info!(%url, "fetching from KDS");
        let network = |source: ureq::Error| KdsError::Network {
            url: url.to_owned(),
            source: Box::new(source),
        };
        let mut response = self.agent.get(url).call().map_err(network)?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => {
                return Err(KdsError::NotFound {
                    url: url.to_owned(),
                })
            }
            429 => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return Err(KdsError::RateLimited {
                    url: url.to_owned(),
                    retry_after,
                });
            }
            _ => {
                return Err(KdsError::HttpStatus {
                    url: url.to_owned(),
                    status,
                })
            }
        }
        let html = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                ct.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("text/html")
            });
        if html {
            return Err(KdsError::InvalidResponse {
                url: url.to_owned(),
                what: validate::expected(resource),
                reason: "served as text/html".to_owned(),
            });
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .map_err(network)?;
        validate::check(resource, &bytes).map_err(|Invalid { what, reason }| {
            KdsError::InvalidResponse {
                url: url.to_owned(),
                what,
                reason,
            }
        })?;
        Ok(bytes)
    }
}

/// An HTTP agent with the client's timeouts; no proxy for a loopback `base_url`.
fn build_agent(base_url: &str) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(KdsClient::CONNECT_TIMEOUT))
        .timeout_global(Some(KdsClient::REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .user_agent(concat!("a3s-attestation/", env!("CARGO_PKG_VERSION")));
    if is_loopback(base_url) {
        config = config.proxy(None);
    }
    ureq::Agent::new_with_config(config.build())
}

fn is_loopback(base_url: &str) -> bool {
    let Ok(uri) = base_url.parse::<ureq::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Default for KdsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl CertSource for KdsClient {
    fn cert_chain(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        self.fetch(&KdsResource::CertChain { product, kind })
    }

    fn vcek(&self, id: &VcekId) -> Result<Vec<u8>, KdsError> {
        self.fetch(&KdsResource::Vcek(id.clone()))
    }

    fn crl(&self, product: Product, kind: VekKind) -> Result<Vec<u8>, KdsError> {
        self.fetch(&KdsResource::Crl { product, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_loopback_base_urls() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3/",
            "http://localhost:1",
            "http://[::1]:8443",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [DEFAULT_BASE_URL, "http://10.0.0.1", "not a url"] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
