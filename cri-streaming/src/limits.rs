//! Bounds on what clients may send and hold: every read from the network is checked against
//! one of these before anything is allocated or waited for.

use std::time::Duration;

/// Bounds on what a client may send; each one protects the server from a hostile client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest HTTP request head (request line and headers) before the upgrade.
    pub max_http_head_bytes: usize,
    /// Largest SPDY frame payload (the 24-bit length field allows 16 MiB).
    pub max_frame_bytes: usize,
    /// Largest SPDY header block, compressed and after decompression.
    pub max_header_block_bytes: usize,
    /// Most name/value pairs in one SPDY header block.
    pub max_header_pairs: usize,
    /// Most connections served at once; more are closed right after accept.
    pub max_connections: usize,
    /// Most SPDY streams a client may have open at once on one connection.
    pub max_streams_per_connection: usize,
    /// Largest WebSocket message (and frame).
    pub max_websocket_message_bytes: usize,
    /// A connection on which the client sends nothing (not even the pings client-go sends
    /// every few seconds) for this long is closed (kubelet and containerd: 4 hours).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_http_head_bytes: 16 * 1024,
            max_frame_bytes: 1024 * 1024,
            max_header_block_bytes: 16 * 1024,
            max_header_pairs: 64,
            max_connections: 1024,
            max_streams_per_connection: 1024,
            max_websocket_message_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(4 * 60 * 60),
        }
    }
}
