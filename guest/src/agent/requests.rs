//! Guest→host requests waiting for their answer.
//!
//! The channel's read loop never blocks on the agent: it hands every `Report`, `DerivedKey`,
//! `LayerKept` and `RequestFailed` to [`Requests::deliver`], which passes it to the thread waiting for that
//! request id. Answers nobody waits for (a request that timed out) are dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Mutex;

use a3s_vmm::proto::{HostMsg, ReportCert};
use zeroize::Zeroizing;

/// The host's answer to one request.
#[derive(Debug)]
pub(crate) enum Reply {
    /// A signed report and the chip's certificates.
    Report {
        /// The report, hex.
        report_hex: String,
        /// ARK, ASK, VCEK (or VLEK).
        certs: Vec<ReportCert>,
    },
    /// A derived key, hex (wiped when dropped).
    Key(Zeroizing<String>),
    /// The host is done reading the just-made writable layer.
    LayerKept,
    /// The host refused the request.
    Failed(String),
}

/// The table of requests in flight.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, SyncSender<Reply>>>,
}

impl Requests {
    /// A fresh request id and the receiver its answer will arrive on.
    pub(crate) fn register(&self) -> (u64, Receiver<Reply>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::sync_channel(1);
        self.lock().insert(id, tx);
        (id, rx)
    }

    /// Forgets request `id` (it timed out or could not be sent).
    pub(crate) fn cancel(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Routes an answer to its waiter. Returns `msg` back when it is not an answer at all.
    pub(crate) fn deliver(&self, msg: HostMsg) -> Option<HostMsg> {
        let (id, reply) = match msg {
            HostMsg::Report {
                request,
                report_hex,
                certs,
            } => (request, Reply::Report { report_hex, certs }),
            HostMsg::DerivedKey { request, key_hex } => (request, Reply::Key(key_hex.into())),
            HostMsg::LayerKept { request } => (request, Reply::LayerKept),
            HostMsg::RequestFailed { request, message } => (request, Reply::Failed(message)),
            other => return Some(other),
        };
        if let Some(tx) = self.lock().remove(&id) {
            // The waiter may have given up just now; the answer is then dropped (and wiped).
            let _ = tx.try_send(reply);
        }
        None
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SyncSender<Reply>>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_answers_by_request_id_and_passes_other_messages_through() {
        let requests = Requests::default();
        let (a, rx_a) = requests.register();
        let (b, rx_b) = requests.register();
        assert_ne!(a, b);
        assert!(requests
            .deliver(HostMsg::RequestFailed {
                request: b,
                message: "no".into()
            })
            .is_none());
        assert!(requests
            .deliver(HostMsg::DerivedKey {
                request: a,
                key_hex: "00".into()
            })
            .is_none());
        assert!(matches!(rx_a.try_recv(), Ok(Reply::Key(k)) if k.as_str() == "00"));
        assert!(matches!(rx_b.try_recv(), Ok(Reply::Failed(m)) if m == "no"));
        let (c, rx_c) = requests.register();
        assert!(requests
            .deliver(HostMsg::LayerKept { request: c })
            .is_none());
        assert!(matches!(rx_c.try_recv(), Ok(Reply::LayerKept)));
        // Not an answer: handed back to the caller.
        assert_eq!(
            requests.deliver(HostMsg::Ping { nonce: 1 }),
            Some(HostMsg::Ping { nonce: 1 })
        );
    }

    #[test]
    fn answers_to_unknown_or_cancelled_requests_are_dropped() {
        let requests = Requests::default();
        let (id, rx) = requests.register();
        requests.cancel(id);
        assert!(requests
            .deliver(HostMsg::RequestFailed {
                request: id,
                message: "late".into()
            })
            .is_none());
        assert!(rx.try_recv().is_err());
        assert!(requests
            .deliver(HostMsg::RequestFailed {
                request: 999,
                message: "stray".into()
            })
            .is_none());
    }
}
