//! The guest end of the host channel: one locked writer shared by every thread that sends
//! frames (the read loop, output pumps, the attestation agent).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use a3s_vmm::proto::{self, Frame, GuestMsg};

/// A cloneable handle that writes whole frames to the channel.
#[derive(Clone)]
pub(crate) struct Channel(Arc<Mutex<Box<dyn Write + Send>>>);

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Channel")
    }
}

impl Channel {
    /// Frames go to `writer` (the virtio-serial port; a socket in tests).
    pub(crate) fn new(writer: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(writer))))
    }

    /// Sends one frame; `false` when the channel is gone.
    pub(crate) fn send(&self, frame: &Frame) -> bool {
        match self.0.lock() {
            Ok(mut w) => proto::write_frame(&mut *w, frame).is_ok(),
            Err(_) => false,
        }
    }

    /// Sends one control message on `session`; `false` when the channel is gone.
    pub(crate) fn msg(&self, session: u32, msg: &GuestMsg) -> bool {
        Frame::control(session, msg).is_ok_and(|f| self.send(&f))
    }
}
