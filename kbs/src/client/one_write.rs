//! Each request leaves in one write: the client's transport holds what ureq transmits (the
//! request head, then the body, each a separate `transmit_output`) and sends it all when ureq
//! starts waiting for the response.
//!
//! Why: a box reaches its KBS through a user-mode forwarder, and an old passt's host-side
//! sockets keep Nagle's algorithm on (A3S Box then defaults to slirp, but passt can be named). A head and a body that reach it as two segments leave it as two
//! sends, and the second, smaller than a segment, waits until the server acknowledges the
//! first. From its second request on, a connection's server delays that acknowledgement (up to
//! 40 ms on Linux), expecting to send it with its answer. So every attestation stalled ~40 ms
//! on its `/attest` POST (measured with strace: the body sat in passt's socket from the
//! guest's send until the broker's delayed ACK). One write leaves nothing for Nagle to hold.
//!
//! Nothing is reordered or dropped: held bytes go out, in order, before any read, and a
//! transport that closes with bytes held only loses a request whose answer nobody awaited.

use std::fmt;

use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, NextTimeout, RustlsConnector,
    TcpConnector, Transport,
};
use ureq::Error;

/// Above this many held bytes (a large upload), they are sent without waiting for the rest.
const HOLD_LIMIT: usize = 256 * 1024;

/// ureq's default chain (CONNECT proxy, TCP, rustls) with [`OneWrite`] between TCP and TLS,
/// so TLS records are held too.
pub(crate) fn connector() -> impl Connector {
    ().chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(OneWrite)
        .chain(RustlsConnector::default())
}

/// Wraps the transport below it in [`Held`].
#[derive(Debug)]
pub(crate) struct OneWrite;

impl<In: Transport> Connector<In> for OneWrite {
    type Out = Held<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, Error> {
        Ok(chained.map(Held::new))
    }
}

/// A transport that sends what was transmitted only when input is awaited.
pub(crate) struct Held<T> {
    inner: T,
    held: Vec<u8>,
}

impl<T> fmt::Debug for Held<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("held", &self.held.len())
            .finish()
    }
}

impl<T: Transport> Held<T> {
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            held: Vec::new(),
        }
    }

    /// Sends the held bytes through the inner transport's output buffer, as few writes as
    /// that buffer's size allows (one for any request that fits in it).
    fn release(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        let mut sent = 0;
        while sent < self.held.len() {
            let output = self.inner.buffers().output();
            let n = output.len().min(self.held.len() - sent);
            if n == 0 {
                return Err(Error::Io(std::io::Error::other(
                    "the transport's output buffer is empty",
                )));
            }
            output[..n].copy_from_slice(&self.held[sent..sent + n]);
            self.inner.transmit_output(n, timeout)?;
            sent += n;
        }
        self.held.clear();
        Ok(())
    }
}

impl<T: Transport> Transport for Held<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
        let output = self.inner.buffers().output();
        let Some(bytes) = output.get(..amount) else {
            return Err(Error::Io(std::io::Error::other(format!(
                "asked to transmit {amount} bytes of a {}-byte output buffer",
                output.len()
            ))));
        };
        self.held.extend_from_slice(bytes);
        if self.held.len() >= HOLD_LIMIT {
            self.release(timeout)?;
        }
        Ok(())
    }

    // Both ways of waiting release first: the default `maybe_await_input` skips
    // `await_input` when input is already buffered.
    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.release(timeout)?;
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        self.release(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::LazyBuffers;

    /// The transport under [`Held`]: records each transmission, as a socket's writes.
    #[derive(Debug)]
    struct Recorder {
        buffers: LazyBuffers,
        writes: Vec<Vec<u8>>,
        awaited: usize,
    }

    impl Recorder {
        fn new(output: usize) -> Self {
            Self {
                buffers: LazyBuffers::new(1024, output),
                writes: Vec::new(),
                awaited: 0,
            }
        }
    }

    impl Transport for Recorder {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), Error> {
            let data = self.buffers.output()[..amount].to_vec();
            self.writes.push(data);
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, Error> {
            self.awaited += 1;
            Ok(false)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    /// What ureq does for one request: write into the output buffer, transmit, repeat.
    fn transmit(t: &mut Held<Recorder>, part: &[u8]) {
        t.buffers().output()[..part.len()].copy_from_slice(part);
        t.transmit_output(part.len(), NextTimeout::default())
            .unwrap();
    }

    #[test]
    fn a_head_and_its_body_leave_in_one_write_when_the_answer_is_awaited() {
        let mut t = Held::new(Recorder::new(64 * 1024));
        transmit(
            &mut t,
            b"POST /kbs/v0/attest HTTP/1.1\r\ncontent-length: 4\r\n\r\n",
        );
        transmit(&mut t, b"body");
        assert!(
            t.inner.writes.is_empty(),
            "nothing is sent before the answer is awaited"
        );
        t.await_input(NextTimeout::default()).unwrap();
        assert_eq!(
            t.inner.writes,
            vec![b"POST /kbs/v0/attest HTTP/1.1\r\ncontent-length: 4\r\n\r\nbody".to_vec()]
        );
        assert_eq!(t.inner.awaited, 1);
        // The next request starts empty.
        transmit(&mut t, b"GET / HTTP/1.1\r\n\r\n");
        t.maybe_await_input(NextTimeout::default()).unwrap();
        assert_eq!(t.inner.writes.len(), 2);
        assert_eq!(t.inner.writes[1], b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_large_upload_is_sent_in_order_without_holding_it_all() {
        // A 16-byte output buffer: the held bytes leave in buffer-sized writes.
        let mut t = Held::new(Recorder::new(16));
        let body: Vec<u8> = (0..HOLD_LIMIT + 40)
            .map(|i| (i % 251).to_le_bytes()[0])
            .collect();
        for chunk in body.chunks(16) {
            transmit(&mut t, chunk);
        }
        assert!(t.held.len() < HOLD_LIMIT, "held {}", t.held.len());
        assert!(!t.inner.writes.is_empty());
        t.await_input(NextTimeout::default()).unwrap();
        assert!(t.held.is_empty());
        assert_eq!(t.inner.writes.concat(), body);
    }

    #[test]
    fn transmitting_more_than_the_output_buffer_is_an_error_not_a_panic() {
        let mut t = Held::new(Recorder::new(16));
        assert!(t.transmit_output(17, NextTimeout::default()).is_err());
    }
}
