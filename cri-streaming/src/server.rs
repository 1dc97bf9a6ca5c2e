//! The HTTP front of the streaming server: binds the listener, hands out URLs, routes
//! `/{exec,attach,portforward}/<token>` and upgrades the connection to SPDY or WebSocket.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::Backend;
use crate::cache::{Parked, RequestCache};
use crate::http::{text_response, transport, Body, SessionContext, SessionFuture, Transport};
use crate::limits::Limits;
use crate::remotecommand::Target;
use crate::request::{AttachRequest, ExecRequest, PortForwardRequest, RequestError};
use crate::{portforward, remotecommand};

/// How the server is set up. [`Config::new`] gives kubelet's defaults.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port). kubelet and crictl connect from the
    /// node itself, so `127.0.0.1:0` (containerd's default) is the safe choice; the one-time
    /// tokens are the only credential, and the listener has no TLS.
    pub listen: SocketAddr,
    /// Base of the returned URLs, e.g. `http://10.0.0.5:10010`; by default `http://` and the
    /// bound address. Set it when `listen` is a wildcard address.
    pub base_url: Option<String>,
    /// How long a returned URL stays valid (kubelet: one minute).
    pub token_ttl: Duration,
    /// How many returned URLs may wait for their client at once (kubelet: 1000).
    pub max_in_flight: usize,
    /// How long a client may take to open all streams of a session (kubelet: 30 s).
    pub stream_creation_timeout: Duration,
    /// Bounds on what clients may send.
    pub limits: Limits,
}

impl Config {
    /// kubelet's defaults on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            base_url: None,
            token_ttl: Duration::from_secs(60),
            max_in_flight: 1000,
            stream_creation_timeout: Duration::from_secs(30),
            limits: Limits::default(),
        }
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}; is another process using it?")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The listener could not be handed to the async runtime.
    #[error("cannot serve the streaming listener")]
    Accept(#[source] std::io::Error),
    /// [`Server::serve`] was called twice.
    #[error("the streaming server is already serving")]
    AlreadyServing,
}

/// The streaming server. Cheap to clone; all clones share the listener and the parked requests.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    session: Arc<SessionContext>,
    cache: RequestCache,
    base_url: String,
    local_addr: SocketAddr,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen` and prepares to serve `backend`. Nothing is served until
    /// [`Server::serve`] runs, but URLs can be handed out right away.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn new(config: Config, backend: Arc<dyn Backend>) -> Result<Self, ServerError> {
        let bind_err = |source| ServerError::Bind {
            addr: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let base_url = config
            .base_url
            .clone()
            .map(|u| u.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let cache = RequestCache::new(config.token_ttl, config.max_in_flight);
        Ok(Self {
            inner: Arc::new(Inner {
                session: Arc::new(SessionContext {
                    backend,
                    limits: config.limits,
                    stream_creation_timeout: config.stream_creation_timeout,
                }),
                config,
                cache,
                base_url,
                local_addr,
                listener: Mutex::new(Some(listener)),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Parks an exec request and returns the one-time URL for it (CRI `ExecResponse.url`).
    ///
    /// # Errors
    /// The request is invalid, or too many requests are in flight.
    pub fn get_exec(&self, request: &ExecRequest) -> Result<String, RequestError> {
        request.validate()?;
        self.park("exec", Parked::Exec(request.clone()))
    }

    /// Parks an attach request and returns the one-time URL for it (CRI `AttachResponse.url`).
    ///
    /// # Errors
    /// The request is invalid, or too many requests are in flight.
    pub fn get_attach(&self, request: &AttachRequest) -> Result<String, RequestError> {
        request.validate()?;
        self.park("attach", Parked::Attach(request.clone()))
    }

    /// Parks a port-forward request and returns the one-time URL for it
    /// (CRI `PortForwardResponse.url`).
    ///
    /// # Errors
    /// The request is invalid, or too many requests are in flight.
    pub fn get_port_forward(&self, request: &PortForwardRequest) -> Result<String, RequestError> {
        request.validate()?;
        self.park("portforward", Parked::PortForward(request.clone()))
    }

    fn park(&self, kind: &str, request: Parked) -> Result<String, RequestError> {
        let token = self.inner.cache.insert(request, Instant::now())?;
        Ok(format!("{}/{kind}/{token}", self.inner.base_url))
    }

    /// Serves connections until dropped. Dropping the future stops the server and ends every
    /// session it started. Failed accepts (e.g. out of file descriptors) are logged and retried.
    ///
    /// # Errors
    /// The server is already serving, or the listener cannot be registered with the runtime.
    pub async fn serve(&self) -> Result<(), ServerError> {
        let listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or(ServerError::AlreadyServing)?;
        let listener = tokio::net::TcpListener::from_std(listener).map_err(ServerError::Accept)?;
        let slots = Arc::new(Semaphore::new(self.inner.config.limits.max_connections));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(accepted) => accepted,
                        Err(err) => {
                            // Out of file descriptors or a connection reset before accept:
                            // keep serving; back off briefly so a persistent error does not spin.
                            tracing::warn!("accepting a streaming connection failed: {err}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                        tracing::warn!(%peer, "too many streaming connections; refused");
                        continue;
                    };
                    let inner = Arc::clone(&self.inner);
                    connections.spawn(async move {
                        serve_connection(inner, stream, peer).await;
                        drop(slot);
                    });
                }
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    }
}

async fn serve_connection(inner: Arc<Inner>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let limits = inner.config.limits;
    let sessions = Arc::new(Mutex::new(JoinSet::new()));
    let service_sessions = Arc::clone(&sessions);
    let service = hyper::service::service_fn(move |req| {
        let inner = Arc::clone(&inner);
        let sessions = Arc::clone(&service_sessions);
        async move { Ok::<_, Infallible>(route(inner, req, &sessions)) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(limits.max_http_head_bytes.max(8192))
        .max_headers(100)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(err) = conn.await {
        tracing::debug!(%peer, "streaming connection ended: {err}");
    }
    // The upgraded session outlives the HTTP exchange; wait for it so that dropping the server
    // (which drops this task) ends it.
    let mut set = std::mem::take(&mut *sessions.lock().unwrap_or_else(|e| e.into_inner()));
    while set.join_next().await.is_some() {}
}

const EXPIRED: &str = "unknown or expired streaming token; ask the runtime for a new URL";

fn route(
    inner: Arc<Inner>,
    req: Request<Incoming>,
    sessions: &Mutex<JoinSet<()>>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !matches!(kind, "exec" | "attach" | "portforward") || token.is_empty() || token.contains('/')
    {
        return text_response(
            StatusCode::NOT_FOUND,
            "not found: expected /exec/, /attach/ or /portforward/ and a token",
        );
    }
    let Some(transport) = transport(req.headers()) else {
        return text_response(
            StatusCode::BAD_REQUEST,
            "this endpoint needs a connection upgrade to SPDY/3.1 or websocket",
        );
    };
    let Some(parked) = inner.cache.consume(token, Instant::now()) else {
        return text_response(StatusCode::NOT_FOUND, EXPIRED);
    };
    let spawn = |fut: SessionFuture| {
        sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spawn(fut);
    };
    let ctx = Arc::clone(&inner.session);
    match (kind, parked, transport) {
        ("exec", Parked::Exec(r), Transport::Spdy) => {
            remotecommand::spdy::upgrade(ctx, req, Target::exec(r), spawn)
        }
        ("exec", Parked::Exec(r), Transport::WebSocket) => {
            remotecommand::websocket::upgrade(ctx, req, Target::exec(r), spawn)
        }
        ("attach", Parked::Attach(r), Transport::Spdy) => {
            remotecommand::spdy::upgrade(ctx, req, Target::attach(r), spawn)
        }
        ("attach", Parked::Attach(r), Transport::WebSocket) => {
            remotecommand::websocket::upgrade(ctx, req, Target::attach(r), spawn)
        }
        ("portforward", Parked::PortForward(r), Transport::Spdy) => {
            portforward::spdy::upgrade(ctx, req, r, spawn)
        }
        ("portforward", Parked::PortForward(r), Transport::WebSocket) => {
            portforward::websocket::upgrade(ctx, req, r, spawn)
        }
        // A token used on another kind's path: as unknown as a forged one.
        _ => text_response(StatusCode::NOT_FOUND, EXPIRED),
    }
}
