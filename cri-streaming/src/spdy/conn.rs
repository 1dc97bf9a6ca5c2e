//! One SPDY connection: a reader task that parses client frames and routes stream data, and a
//! writer task that serialises everything the server sends.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::frame::{
    Frame, FrameReader, FrameWriter, Headers, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, RST_PROTOCOL_ERROR,
    RST_REFUSED_STREAM,
};
use crate::io::{OutChannel, Outgoing, INBOUND_QUEUE};
use crate::server::Limits;

/// A stream the client opened.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) id: u32,
    pub(crate) headers: Headers,
    /// The client's data on this stream; ends at the client's FIN or reset.
    pub(crate) inbound: mpsc::Receiver<Bytes>,
}

/// A running SPDY connection.
#[derive(Debug)]
pub(crate) struct Connection {
    incoming: mpsc::Receiver<Stream>,
    /// Never sent on; its sender drops when the reader stops, i.e. the client is gone.
    gone: watch::Receiver<()>,
    out: mpsc::Sender<Outgoing>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connection {
    /// Starts serving SPDY on `io` (an upgraded HTTP connection).
    pub(crate) fn start<T>(io: T, limits: Limits) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(64);
        let out_for_reader = out.clone();
        let (incoming_tx, incoming) = mpsc::channel(16);
        let (gone_tx, gone) = watch::channel(());
        let reader = tokio::spawn(async move {
            read_loop(
                FrameReader::new(read, limits),
                limits,
                out_for_reader,
                incoming_tx,
            )
            .await;
            drop(gone_tx);
        });
        let writer = tokio::spawn(write_loop(write, out_rx));
        Self {
            incoming,
            gone,
            out,
            reader,
            writer,
        }
    }

    /// The next stream the client opens; `None` once the client is gone.
    pub(crate) async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves once the client has closed the connection (or broken the protocol).
    pub(crate) fn gone(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut gone = self.gone.clone();
        async move { while gone.changed().await.is_ok() {} }
    }

    /// A sender for the server's half of stream `id`.
    pub(crate) fn channel(&self, id: u32) -> OutChannel {
        OutChannel::new(id, self.out.clone())
    }

    /// Refuses stream `id` (for streams the session has no use for).
    pub(crate) async fn reset(&self, id: u32) {
        let _ = self
            .out
            .send(Outgoing::Reset {
                id,
                status: RST_PROTOCOL_ERROR,
            })
            .await;
    }

    /// Sends GOAWAY after everything queued so far, waits until it is written, and stops
    /// reading.
    pub(crate) async fn close(mut self) {
        let _ = self.out.send(Outgoing::Close).await;
        let _ = (&mut self.writer).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut frames: FrameReader<R>,
    limits: Limits,
    out: mpsc::Sender<Outgoing>,
    incoming: mpsc::Sender<Stream>,
) {
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut last_id = 0u32;
    let mut opened = 0usize;
    loop {
        let Ok(frame) = tokio::time::timeout(limits.idle_timeout, frames.read()).await else {
            tracing::debug!(
                "spdy connection idle for {:?}; closing",
                limits.idle_timeout
            );
            let _ = out.send(Outgoing::Close).await;
            return;
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                tracing::debug!("spdy connection ends: {err}");
                if !matches!(
                    err,
                    super::frame::FrameError::Closed | super::frame::FrameError::Io(_)
                ) {
                    let _ = out
                        .send(Outgoing::Reset {
                            id: 0,
                            status: GOAWAY_PROTOCOL_ERROR,
                        })
                        .await;
                }
                return;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                // Client streams have odd, strictly increasing ids (§2.3.2).
                if stream_id % 2 == 0 || stream_id <= last_id {
                    tracing::debug!(stream_id, "spdy: bad client stream id");
                    let _ = out
                        .send(Outgoing::Reset {
                            id: 0,
                            status: GOAWAY_PROTOCOL_ERROR,
                        })
                        .await;
                    return;
                }
                last_id = stream_id;
                opened += 1;
                if opened > limits.max_streams_per_connection {
                    let _ = out
                        .send(Outgoing::Reset {
                            id: stream_id,
                            status: RST_REFUSED_STREAM,
                        })
                        .await;
                    continue;
                }
                let (tx, inbound) = mpsc::channel(INBOUND_QUEUE);
                if !fin {
                    streams.insert(stream_id, tx);
                }
                if out.send(Outgoing::Reply { id: stream_id }).await.is_err() {
                    return;
                }
                if incoming
                    .try_send(Stream {
                        id: stream_id,
                        headers,
                        inbound,
                    })
                    .is_err()
                {
                    streams.remove(&stream_id);
                    let _ = out
                        .send(Outgoing::Reset {
                            id: stream_id,
                            status: RST_REFUSED_STREAM,
                        })
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(tx) = streams.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        streams.remove(&stream_id);
                    }
                }
                if fin {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id } => {
                streams.remove(&stream_id);
            }
            Frame::Ping { id } => {
                if out.send(Outgoing::Ping { id }).await.is_err() {
                    return;
                }
            }
            Frame::GoAway => return,
            Frame::Ignored => {}
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, mut queue: mpsc::Receiver<Outgoing>) {
    let mut writer = FrameWriter::new();
    let mut last_reply = 0u32;
    while let Some(message) = queue.recv().await {
        let result = match message {
            Outgoing::Data { id, data, fin } => write_data(&mut io, id, &data, fin).await,
            Outgoing::Reply { id } => {
                last_reply = id;
                io.write_all(&writer.syn_reply(id, &[])).await
            }
            // Stream id 0 stands for the whole connection: a protocol error ends it.
            Outgoing::Reset { id: 0, status } => {
                let _ = io.write_all(&FrameWriter::goaway(last_reply, status)).await;
                break;
            }
            Outgoing::Reset { id, status } => {
                io.write_all(&FrameWriter::rst_stream(id, status)).await
            }
            Outgoing::Ping { id } => io.write_all(&FrameWriter::ping(id)).await,
            Outgoing::Close => {
                let _ = io
                    .write_all(&FrameWriter::goaway(last_reply, GOAWAY_OK))
                    .await;
                break;
            }
        };
        if result.is_err() {
            return;
        }
        if queue.is_empty() && io.flush().await.is_err() {
            return;
        }
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

async fn write_data<W: AsyncWrite + Unpin>(
    io: &mut W,
    id: u32,
    data: &[u8],
    fin: bool,
) -> std::io::Result<()> {
    // Pumps send at most 32 KiB at a time, far below the 24-bit length limit.
    io.write_all(&FrameWriter::data_head(id, fin, data.len()))
        .await?;
    io.write_all(data).await
}
