//! The tonic server: RuntimeService and ImageService on the Unix socket, until SIGTERM or
//! SIGINT; the socket file is removed on the way out.

use a3s_image::registry::RegistryOptions;
use a3s_runtime::engine::Engine;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;

use crate::image_service::Images;
use crate::listen::{ListenAddr, ListenError};
use crate::runtime_service::Runtime;

/// gRPC messages larger than this are refused (kubelet's own limit is 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The socket address.
    pub listen: ListenAddr,
    /// Registries (`host[:port]`) pulls may reach over plain HTTP besides loopback ones,
    /// and registry mirrors (no credentials here: they come with each pull).
    pub registries: RegistryOptions,
    /// Where the streaming server (exec, attach, port-forward URLs) listens; port 0 picks a
    /// free port.
    pub streaming: std::net::SocketAddr,
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The socket could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The gRPC server failed.
    #[error("the CRI gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
    /// The streaming server could not listen or failed.
    #[error(transparent)]
    Streaming(#[from] a3s_cri_streaming::ServerError),
    /// Signal handlers or the listener could not be set up.
    #[error("{0}")]
    Setup(String, #[source] std::io::Error),
}

/// Serves the CRI on `opts.listen` (and its streaming server on `opts.streaming`) until
/// SIGTERM or SIGINT; `ready` is called with the socket and the streaming base URL once both
/// accept connections.
///
/// # Errors
/// [`ServeError`].
pub async fn serve(
    engine: Engine,
    opts: ServeOptions,
    ready: impl FnOnce(&ListenAddr, std::net::SocketAddr),
) -> Result<(), ServeError> {
    let streaming = a3s_cri_streaming::Server::new(
        a3s_cri_streaming::Config::new(opts.streaming),
        crate::streaming::EngineBackend::new(engine.clone()),
    )?;
    let streaming_addr = streaming.local_addr();
    // Containers outlive a restart of this server: take their sessions back before serving.
    let recovering = engine.clone();
    match tokio::task::spawn_blocking(move || recovering.recover_containers()).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!("re-attached {n} running containers"),
        Ok(Err(e)) => tracing::warn!("re-attaching running containers: {e}"),
        Err(e) => tracing::warn!("re-attaching running containers: {e}"),
    }
    let serving = streaming.clone();
    let streaming_task = tokio::spawn(async move { serving.serve().await });
    let listener = opts.listen.bind()?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| ServeError::Setup("registering the socket".into(), e))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| ServeError::Setup("installing the SIGTERM handler".into(), e))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| ServeError::Setup("installing the SIGINT handler".into(), e))?;
    let runtime = RuntimeServiceServer::new(Runtime::new(engine.clone(), streaming))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let images = ImageServiceServer::new(Images::new(engine, opts.registries))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    ready(&opts.listen, streaming_addr);
    let result = tonic::transport::Server::builder()
        .layer(crate::deadline::DeadlineLayer)
        .add_service(runtime)
        .add_service(images)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await;
    let _ = std::fs::remove_file(opts.listen.path());
    streaming_task.abort();
    result.map_err(ServeError::Transport)
}
