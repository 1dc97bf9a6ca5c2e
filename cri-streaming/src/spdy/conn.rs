//! One SPDY connection: a reader task that parses client frames and routes stream data, and a
//! writer task that serialises everything the server sends.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::frame::{
    Frame, FrameReader, FrameWriter, Headers, GOAWAY_OK, GOAWAY_PROTOCOL_ERROR, RST_PROTOCOL_ERROR,
    RST_REFUSED_STREAM,
};
use crate::io::{OutChannel, Outgoing, INBOUND_QUEUE};
use crate::limits::Limits;

/// Read and write buffer of a connection.
const IO_BUFFER_BYTES: usize = 64 * 1024;

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
                // Buffered: every frame is an 8-byte head and a payload, two reads otherwise.
                FrameReader::new(BufReader::with_capacity(IO_BUFFER_BYTES, read), limits),
                limits,
                out_for_reader,
                incoming_tx,
            )
            .await;
            drop(gone_tx);
        });
        // Buffered: frames are flushed together whenever the queue runs empty.
        let writer = tokio::spawn(write_loop(
            BufWriter::with_capacity(IO_BUFFER_BYTES, write),
            out_rx,
        ));
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
                    let _ = out.send(Outgoing::Abort).await;
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
                    let _ = out.send(Outgoing::Abort).await;
                    return;
                }
                last_id = stream_id;
                // Bound the streams open at once (from the client's side), not their total:
                // a long port-forward session opens two per forwarded connection.
                if streams.len() >= limits.max_streams_per_connection {
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
            Outgoing::Abort => {
                let _ = io
                    .write_all(&FrameWriter::goaway(last_reply, GOAWAY_PROTOCOL_ERROR))
                    .await;
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn limits(max_streams: usize) -> Limits {
        Limits {
            max_streams_per_connection: max_streams,
            ..Limits::default()
        }
    }

    /// Reads one frame the server wrote: (control type or None for DATA, stream id, flags).
    async fn next_frame(client: &mut DuplexStream) -> (Option<u16>, u32, u8, Vec<u8>) {
        let mut head = [0u8; 8];
        client.read_exact(&mut head).await.unwrap();
        let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return (None, id, head[4], payload);
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        (Some(kind), id, head[4], payload)
    }

    #[tokio::test]
    async fn opens_streams_routes_data_and_answers_pings() {
        let (server_io, mut client) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::start(server_io, limits(8));
        let mut peer = FrameWriter::new();
        client
            .write_all(&peer.syn_stream(1, false, &[("streamtype", "stdin")]))
            .await
            .unwrap();
        let mut stream = conn.accept().await.unwrap();
        assert_eq!(
            (stream.id, stream.headers.get("streamtype")),
            (1, Some("stdin"))
        );
        assert_eq!(
            next_frame(&mut client).await.0,
            Some(TYPE_SYN_REPLY_FOR_TESTS)
        );

        client
            .write_all(&FrameWriter::data_head(1, false, 3))
            .await
            .unwrap();
        client.write_all(b"abc").await.unwrap();
        client
            .write_all(&FrameWriter::data_head(1, true, 0))
            .await
            .unwrap();
        assert_eq!(&stream.inbound.recv().await.unwrap()[..], b"abc");
        assert_eq!(stream.inbound.recv().await, None, "FIN ends the stream");

        client.write_all(&FrameWriter::ping(7)).await.unwrap();
        assert_eq!(
            next_frame(&mut client).await,
            (Some(0x6), 7, 0, vec![0, 0, 0, 7])
        );

        conn.channel(1).send(Bytes::from_static(b"out")).await;
        assert_eq!(next_frame(&mut client).await, (None, 1, 0, b"out".to_vec()));
        conn.close().await;
        let (kind, _, _, payload) = next_frame(&mut client).await;
        assert_eq!(
            (kind, &payload[4..]),
            (Some(0x7), &[0u8, 0, 0, 0][..]),
            "GOAWAY OK"
        );
    }

    #[tokio::test]
    async fn refuses_streams_beyond_the_open_stream_limit() {
        let (server_io, mut client) = tokio::io::duplex(1 << 16);
        let mut conn = Connection::start(server_io, limits(2));
        let mut peer = FrameWriter::new();
        for id in [1, 3, 5] {
            client
                .write_all(&peer.syn_stream(id, false, &[("streamtype", "data")]))
                .await
                .unwrap();
        }
        assert_eq!(conn.accept().await.unwrap().id, 1);
        assert_eq!(conn.accept().await.unwrap().id, 3);
        assert_eq!(
            next_frame(&mut client).await.0,
            Some(TYPE_SYN_REPLY_FOR_TESTS)
        );
        assert_eq!(
            next_frame(&mut client).await.0,
            Some(TYPE_SYN_REPLY_FOR_TESTS)
        );
        let (kind, id, _, payload) = next_frame(&mut client).await;
        assert_eq!(
            (kind, id, &payload[4..]),
            (Some(0x3), 5, &RST_REFUSED_STREAM.to_be_bytes()[..])
        );
        // Once the client ends a stream, a new one fits again.
        client
            .write_all(&FrameWriter::data_head(1, true, 0))
            .await
            .unwrap();
        client
            .write_all(&peer.syn_stream(7, false, &[("streamtype", "data")]))
            .await
            .unwrap();
        assert_eq!(conn.accept().await.unwrap().id, 7);
    }

    #[tokio::test]
    async fn rejects_reused_or_even_stream_ids_with_goaway() {
        let (server_io, mut client) = tokio::io::duplex(1 << 16);
        let conn = Connection::start(server_io, limits(8));
        let mut peer = FrameWriter::new();
        client
            .write_all(&peer.syn_stream(2, false, &[("streamtype", "data")]))
            .await
            .unwrap();
        let (kind, _, _, payload) = next_frame(&mut client).await;
        assert_eq!(
            (kind, &payload[4..]),
            (Some(0x7), &GOAWAY_PROTOCOL_ERROR.to_be_bytes()[..])
        );
        conn.gone().await;
    }

    const TYPE_SYN_REPLY_FOR_TESTS: u16 = 0x2;
}
