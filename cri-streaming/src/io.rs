//! What the protocol handlers share: the outgoing message queue of a connection, per-channel
//! senders, and the pumps between client channels and the backend's async byte streams.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Size of the in-memory pipes between a channel and the backend, and of the chunks read from
/// the backend (client-go copies in 32 KiB chunks too).
pub(crate) const PIPE_BYTES: usize = 64 * 1024;
const CHUNK_BYTES: usize = 32 * 1024;

/// Inbound chunks queued per channel before the connection reader waits for the consumer.
pub(crate) const INBOUND_QUEUE: usize = 16;

/// One message for a connection's writer task. SPDY writes all of them; WebSocket writes `Data`
/// (as a channel-prefixed message) and `Close`.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Data {
        id: u32,
        data: Bytes,
        fin: bool,
    },
    Reply {
        id: u32,
    },
    Reset {
        id: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    /// Last message: say goodbye, flush and shut the connection down.
    Close,
    /// Last message: the client broke the protocol; say so and shut the connection down.
    Abort,
}

/// Sends one channel's bytes to the client.
#[derive(Debug, Clone)]
pub(crate) struct OutChannel {
    id: u32,
    tx: mpsc::Sender<Outgoing>,
}

impl OutChannel {
    pub(crate) fn new(id: u32, tx: mpsc::Sender<Outgoing>) -> Self {
        Self { id, tx }
    }

    /// Queues `data`; false once the connection is gone.
    pub(crate) async fn send(&self, data: Bytes) -> bool {
        self.tx
            .send(Outgoing::Data {
                id: self.id,
                data,
                fin: false,
            })
            .await
            .is_ok()
    }

    /// Ends the channel (SPDY: an empty DATA frame with FIN).
    pub(crate) async fn finish(&self) {
        let _ = self
            .tx
            .send(Outgoing::Data {
                id: self.id,
                data: Bytes::new(),
                fin: true,
            })
            .await;
    }
}

/// Copies what the backend writes into `from` to the client until EOF. Ending the channel is
/// left to the caller, which may first have to say something on another channel.
pub(crate) async fn pump_out(mut from: impl AsyncRead + Unpin, to: &OutChannel) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !to.send(Bytes::copy_from_slice(&buf[..n])).await {
                    return;
                }
            }
        }
    }
}

/// Copies the client's chunks into `to` until the client ends the channel, then shuts `to`
/// down so the backend reads EOF.
pub(crate) async fn pump_in(mut from: mpsc::Receiver<Bytes>, mut to: impl AsyncWrite + Unpin) {
    while let Some(chunk) = from.recv().await {
        if to.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
