//! SPDY/3.1 frames (draft-mbelshe-httpbis-spdy-00 §2.2-2.6 and the SPDY/3.1 additions) and the
//! zlib-compressed name/value header blocks (§2.6.10). Only what a streaming server needs: the
//! frames a client may send are parsed, the frames a server sends are written.
//!
//! Every length comes from the peer, so each is checked against [`Limits`] before anything is
//! allocated, and decompression stops at the header block limit (no zlib bombs).

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::limits::Limits;

/// The zlib dictionary every SPDY/3 header block is compressed against (spec §2.6.10.1,
/// 1423 bytes, Adler-32 0xe3c6a7c2).
const HEADER_DICTIONARY: &[u8] = include_bytes!("header_dictionary.bin");

const VERSION: u16 = 3;
const CONTROL_BIT: u8 = 0x80;
const FLAG_FIN: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 0x1;
const TYPE_SYN_REPLY: u16 = 0x2;
const TYPE_RST_STREAM: u16 = 0x3;
const TYPE_SETTINGS: u16 = 0x4;
const TYPE_PING: u16 = 0x6;
const TYPE_GOAWAY: u16 = 0x7;
const TYPE_HEADERS: u16 = 0x8;
const TYPE_WINDOW_UPDATE: u16 = 0x9;

/// RST_STREAM status codes (§2.6.3).
pub(crate) const RST_PROTOCOL_ERROR: u32 = 0x1;
pub(crate) const RST_REFUSED_STREAM: u32 = 0x3;
/// GOAWAY status codes (§2.6.6).
pub(crate) const GOAWAY_OK: u32 = 0x0;
pub(crate) const GOAWAY_PROTOCOL_ERROR: u32 = 0x1;

/// Header name/value pairs of one stream. Names are lower case (SPDY requires it); a value with
/// several parts keeps its NUL separators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name` (case-insensitive).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// A frame received from the client.
#[derive(Debug)]
pub(crate) enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY and unknown control frames: nothing for a
    /// streaming server to do (the peers implement no flow control), but header blocks in them
    /// are still decompressed to keep the shared zlib stream in step.
    Ignored,
}

/// Why the connection must end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("reading frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("header block exceeds the {limit}-byte limit")]
    HeaderBlockTooLarge { limit: usize },
    #[error("header block has more than {limit} pairs")]
    TooManyHeaders { limit: usize },
    #[error("header block: {0}")]
    HeaderBlock(&'static str),
}

/// Reads client frames, keeping the client's header compression state.
pub(crate) struct FrameReader<R> {
    io: R,
    limits: Limits,
    inflate: HeaderDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, limits: Limits) -> Self {
        Self {
            io,
            limits,
            inflate: HeaderDecoder::new(limits),
        }
    }

    /// Reads the next frame.
    pub(crate) async fn read(&mut self) -> Result<Frame, FrameError> {
        let mut head = [0u8; 8];
        match self.io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(FrameError::Closed)
            }
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = usize::from(head[5]) << 16 | usize::from(head[6]) << 8 | usize::from(head[7]);
        let control = head[0] & CONTROL_BIT != 0;
        let limit = if control {
            // A control frame is a few fixed fields plus at most one header block.
            self.limits.max_header_block_bytes + 16
        } else {
            self.limits.max_frame_bytes
        };
        if len > limit {
            return Err(FrameError::TooLong { len, limit });
        }
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        if !control {
            let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload.into(),
            });
        }
        let version = u16::from_be_bytes([head[0] & !CONTROL_BIT, head[1]]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        match kind {
            TYPE_SYN_STREAM => {
                // stream id, associated stream id, priority and slot, then the header block
                let stream_id = be_u32(&payload, 0, "SYN_STREAM")? & 0x7fff_ffff;
                let block = payload
                    .get(10..)
                    .ok_or(FrameError::Malformed("SYN_STREAM"))?;
                let headers = self.inflate.decode(block)?;
                Ok(Frame::SynStream {
                    stream_id,
                    fin,
                    headers,
                })
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let block = payload.get(4..).ok_or(FrameError::Malformed("HEADERS"))?;
                self.inflate.decode(block)?;
                Ok(Frame::Ignored)
            }
            TYPE_RST_STREAM => Ok(Frame::RstStream {
                stream_id: be_u32(&payload, 0, "RST_STREAM")? & 0x7fff_ffff,
            }),
            TYPE_PING => Ok(Frame::Ping {
                id: be_u32(&payload, 0, "PING")?,
            }),
            TYPE_GOAWAY => Ok(Frame::GoAway),
            TYPE_SETTINGS | TYPE_WINDOW_UPDATE => Ok(Frame::Ignored),
            // §2.2.1: unknown control frames are ignored.
            _ => Ok(Frame::Ignored),
        }
    }
}

fn be_u32(buf: &[u8], at: usize, frame: &'static str) -> Result<u32, FrameError> {
    let bytes = buf.get(at..at + 4).ok_or(FrameError::Malformed(frame))?;
    Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// The receiving side of the connection's header compression (one zlib stream per direction).
struct HeaderDecoder {
    zlib: Decompress,
    limits: Limits,
}

impl HeaderDecoder {
    fn new(limits: Limits) -> Self {
        Self {
            zlib: Decompress::new(true),
            limits,
        }
    }

    fn decode(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let limit = self.limits.max_header_block_bytes;
        let mut out = Vec::with_capacity(1024);
        let mut input = compressed;
        loop {
            if out.len() > limit {
                return Err(FrameError::HeaderBlockTooLarge { limit });
            }
            // Room for at most one byte past the limit, so a bomb is caught without growing.
            out.reserve((limit + 1 - out.len()).min(4096));
            let (in_before, out_before) = (self.zlib.total_in(), out.len());
            let result = self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.zlib.total_in() - in_before)
                .map_err(|_| FrameError::HeaderBlock("zlib consumed more than it was given"))?;
            input = input.get(consumed..).unwrap_or_default();
            match result {
                Ok(Status::StreamEnd) => return Err(FrameError::HeaderBlock("zlib stream ended")),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(HEADER_DICTIONARY)
                        .map_err(|_| FrameError::HeaderBlock("wrong zlib dictionary"))?;
                    continue;
                }
                Err(_) => return Err(FrameError::HeaderBlock("corrupt zlib data")),
            }
            let room_left = out.len() < out.capacity();
            if input.is_empty() && room_left {
                break;
            }
            if consumed == 0 && out.len() == out_before && room_left {
                return Err(FrameError::HeaderBlock("truncated zlib data"));
            }
        }
        if out.len() > limit {
            return Err(FrameError::HeaderBlockTooLarge { limit });
        }
        parse_pairs(&out, self.limits.max_header_pairs)
    }
}

/// A cursor over a decompressed header block; every read is bounds-checked.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u32(&mut self, what: &'static str) -> Result<u32, FrameError> {
        let b = self.0.get(..4).ok_or(FrameError::HeaderBlock(what))?;
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        self.0 = &self.0[4..];
        Ok(n)
    }

    fn string(&mut self, what: &'static str) -> Result<&'a [u8], FrameError> {
        let len = usize::try_from(self.u32(what)?).map_err(|_| FrameError::HeaderBlock(what))?;
        let value = self.0.get(..len).ok_or(FrameError::HeaderBlock(what))?;
        self.0 = &self.0[len..];
        Ok(value)
    }
}

fn parse_pairs(block: &[u8], max_pairs: usize) -> Result<Headers, FrameError> {
    let mut cursor = Cursor(block);
    let count = cursor.u32("truncated pair count")?;
    if usize::try_from(count).map_or(true, |c| c > max_pairs) {
        return Err(FrameError::TooManyHeaders { limit: max_pairs });
    }
    let mut pairs = Vec::new();
    for _ in 0..count {
        let name = cursor.string("truncated header name")?;
        let name =
            std::str::from_utf8(name).map_err(|_| FrameError::HeaderBlock("name is not UTF-8"))?;
        if name.is_empty() {
            return Err(FrameError::HeaderBlock("empty header name"));
        }
        let value = cursor.string("truncated header value")?;
        pairs.push((
            name.to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Ok(Headers(pairs))
}

/// Writes server frames, keeping the server's header compression state.
pub(crate) struct FrameWriter {
    deflate: Compress,
}

impl FrameWriter {
    pub(crate) fn new() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh stream always accepts a dictionary; failing here would be a zlib bug.
        deflate
            .set_dictionary(HEADER_DICTIONARY)
            .expect("fresh zlib stream takes a dictionary");
        Self { deflate }
    }

    /// SYN_REPLY for `stream_id` with the given headers.
    pub(crate) fn syn_reply(&mut self, stream_id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let block = self.header_block(headers);
        let mut payload = stream_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&block);
        control(TYPE_SYN_REPLY, 0, &payload)
    }

    pub(crate) fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
        let mut payload = stream_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        control(TYPE_RST_STREAM, 0, &payload)
    }

    pub(crate) fn ping(id: u32) -> Vec<u8> {
        control(TYPE_PING, 0, &id.to_be_bytes())
    }

    pub(crate) fn goaway(last_good_stream_id: u32, status: u32) -> Vec<u8> {
        let mut payload = last_good_stream_id.to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        control(TYPE_GOAWAY, 0, &payload)
    }

    /// The 8-byte head of a DATA frame carrying `len` bytes (`len` < 2^24).
    pub(crate) fn data_head(stream_id: u32, fin: bool, len: usize) -> [u8; 8] {
        let id = (stream_id & 0x7fff_ffff).to_be_bytes();
        let len = len.to_be_bytes();
        let n = len.len();
        [
            id[0],
            id[1],
            id[2],
            id[3],
            if fin { FLAG_FIN } else { 0 },
            len[n - 3],
            len[n - 2],
            len[n - 1],
        ]
    }

    /// A SYN_STREAM as a client would send it (the tests play the client).
    #[cfg(test)]
    pub(crate) fn syn_stream(&mut self, id: u32, fin: bool, headers: &[(&str, &str)]) -> Vec<u8> {
        let block = self.header_block(headers);
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&block);
        control(TYPE_SYN_STREAM, u8::from(fin), &payload)
    }

    fn header_block(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&len_u32(headers.len()));
        for (name, value) in headers {
            raw.extend_from_slice(&len_u32(name.len()));
            raw.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&len_u32(value.len()));
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            // Our own small header blocks; compressing into a growing Vec cannot fail.
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .expect("zlib compresses into a growing buffer");
            let consumed = usize::try_from(self.deflate.total_in() - before).unwrap_or(input.len());
            input = &input[consumed.min(input.len())..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn len_u32(len: usize) -> [u8; 4] {
    // Header names and values written by this server are short constants.
    u32::try_from(len)
        .expect("header field shorter than 4 GiB")
        .to_be_bytes()
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(VERSION | u16::from(CONTROL_BIT) << 8).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    let len = payload.len().to_be_bytes();
    let n = len.len();
    frame.extend_from_slice(&len[n - 3..]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests;
