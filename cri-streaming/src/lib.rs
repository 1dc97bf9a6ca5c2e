//! The Kubernetes CRI streaming server: the HTTP endpoint that kubelet, crictl and kubectl talk to
//! after the CRI `Exec`, `Attach` and `PortForward` calls have returned a URL.
//!
//! It is this project's counterpart of kubelet's `k8s.io/kubelet/pkg/cri/streaming` package:
//!
//! 1. The CRI server validates a request and calls [`Server::get_exec`], [`Server::get_attach`] or
//!    [`Server::get_port_forward`]. The request is parked in a cache under a random one-time token
//!    that expires (one minute by default) and the URL `http://<addr>/exec/<token>` is returned.
//! 2. The client connects to the URL and upgrades the connection to one of the protocols kubelet
//!    speaks:
//!    - remote command (exec, attach) over SPDY/3.1 with `X-Stream-Protocol-Version`
//!      `v5.channel.k8s.io`, `v4.channel.k8s.io`, `v3.channel.k8s.io`, `v2.channel.k8s.io` or
//!      `channel.k8s.io`;
//!    - remote command over WebSocket with the subprotocols `v5.channel.k8s.io`,
//!      `v4.channel.k8s.io`, `channel.k8s.io` (and their `base64.` variants);
//!    - port forwarding over SPDY/3.1 (`portforward.k8s.io`), directly or tunnelled through a
//!      WebSocket (`SPDY/3.1+portforward.k8s.io`, client-go's `NewSPDYOverWebsocketDialer`).
//! 3. The token is consumed and the [`Backend`] runs the command, attaches to the container or
//!    connects to the pod's port, with the client's streams handed over as async byte streams.
//!
//! Wiring it into a CRI server (the runtime implements [`Backend`]):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use a3s_cri_streaming::{Backend, Config, ExecRequest, Server};
//!
//! async fn start(runtime: Arc<dyn Backend>) -> Result<(), Box<dyn std::error::Error>> {
//!     let server = Server::new(Config::new("127.0.0.1:0".parse()?), runtime)?;
//!     let serving = server.clone();
//!     tokio::spawn(async move { serving.serve().await });
//!     // In the CRI `Exec` handler, after checking the container exists and may be exec'd into:
//!     let request = ExecRequest {
//!         container_id: "c1".into(),
//!         cmd: vec!["sh".into()],
//!         tty: true,
//!         stdin: true,
//!         stdout: true,
//!         stderr: false,
//!     };
//!     let url = server.get_exec(&request)?; // ExecResponse { url }
//!     # let _ = url;
//!     Ok(())
//! }
//! ```
//!
//! Protocol details, the bounds and the reasons for them are in the crate's `README.md`.
//!
//! Every read from the network is bounded (see [`Limits`]): frame lengths, compressed and
//! decompressed SPDY header blocks, header counts, WebSocket messages, resize messages, the number
//! of streams per connection and the number of parked requests.
#![warn(missing_docs)]

mod backend;
mod cache;
mod http;
mod io;
mod limits;
mod portforward;
mod remotecommand;
mod request;
mod server;
mod spdy;
mod status;
mod ws;

pub use backend::{
    Backend, BackendError, ExitCode, InputStream, OutputStream, PortStream, Streams, TerminalSize,
};
pub use limits::Limits;
pub use request::{AttachRequest, ExecRequest, PortForwardRequest, RequestError};
pub use server::{Config, Server, ServerError};
