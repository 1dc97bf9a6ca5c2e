//! The engine under every front end, and the state, lifecycle and audit log it works on.
//!
//! [`engine`] is the one entry point: an [`engine::Engine`] with one method per operation
//! (create, run, start, stop, kill, restart, remove, exec, attach, logs, wait, inspect, list,
//! stats, attest, cp, networks, volumes, images, system df/prune). Front ends (the `a3s-box`
//! CLI, the CRI server, compose) build plain requests and format the results; the engine
//! records every audit event before it reports success, and never prints.
//!
//! Below it, layered without cycles (`tests/module_graph.rs` checks):
//! - [`boxes`]: box records and lifecycle (create, start through a per-box monitor, stop,
//!   exec, logs, remove), using
//! - [`network`], [`volumes`], [`tee`] (the host side of confidential boxes) and [`audit`]
//!   (the hash-chained log), which take plain values (ids, names, directories), never the
//!   box store, and sit on
//! - [`state`] (box ids, file locks, name checks, the state error) and [`home`] (the
//!   `A3S_HOME` layout).
//!
//! [`copy`] (`cp`) and [`disk`] (accounting and pruning) work on boxes and volumes for the
//! engine.

pub mod audit;
pub mod bounded;
pub mod boxes;
pub mod compose;
pub mod copy;
pub mod disk;
pub mod engine;
pub mod home;
pub mod layers;
pub mod network;
pub mod pod_containers;
pub mod pods;
pub mod record_dir;
pub mod state;
pub mod tee;
pub mod volumes;

pub use home::A3sHome;
