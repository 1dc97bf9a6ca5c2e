//! The Kubernetes CRI v1 server of A3S Box (`a3s-box cri serve`).
//!
//! kubelet, crictl and critest speak gRPC over a Unix socket; this crate translates their
//! requests into [`a3s_runtime::engine::Engine`] operations and the answers back. It stays a
//! thin layer: what a pod or an image pull does is written once, in the engine.
//!
//! - [`listen`]: the `unix://` address and the socket file (stale sockets, permissions);
//! - [`server`]: the tonic server on that socket, until SIGTERM/SIGINT;
//! - `runtime_service`: CRI RuntimeService (version, status, pods and containers);
//! - `pods`: CRI pod sandbox messages from and to the engine's pods;
//! - `containers`: CRI container messages from and to the engine's pod containers;
//! - `image_service`: CRI ImageService over the engine's image store;
//! - `images`: CRI image records from the store (lookup by id, digest or reference);
//! - `stats`: CRI container and pod statistics from the engine's figures;
//! - `streaming`: the exec/attach/port-forward backend of `cri-streaming` over the engine;
//! - `deadline`: the client's `grpc-timeout` answered as DEADLINE_EXCEEDED;
//! - `error`: one mapping from engine errors to gRPC status codes.

mod containers;
mod deadline;
mod error;
mod image_service;
mod images;
pub mod listen;
mod pod_resources;
mod pods;
mod runtime_service;
mod seccomp;
mod security;
pub mod server;
mod stats;
mod streaming;

pub use listen::{ListenAddr, ListenError};
pub use server::{serve, ServeError, ServeOptions};

/// The CRI API version this server implements (what `crictl version` shows as
/// `RuntimeApiVersion`).
pub const CRI_API_VERSION: &str = "v1";

/// The runtime's name as CRI reports it.
pub const RUNTIME_NAME: &str = "a3s-box";
