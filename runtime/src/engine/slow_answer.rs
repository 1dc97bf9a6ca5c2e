//! A warning, with the pod VM's last console lines, when a pod VM is slow to answer the start
//! of a container. The wait itself has no deadline of its own (the client's request has one),
//! so without this a VM that never answers leaves no trace of why.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a start may go unanswered before the warning: a container start takes well under
/// a second, a few seconds on a loaded TCG host.
pub(super) const SLOW_ANSWER: Duration = Duration::from_secs(60);

/// Armed for one wait; dropping it (the answer came) disarms it.
pub(super) struct SlowAnswerWatch {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SlowAnswerWatch {
    /// Runs `on_timeout` unless dropped within `after`.
    pub(super) fn arm(after: Duration, on_timeout: impl FnOnce() + Send + 'static) -> Self {
        let (disarm, armed) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("slow-answer".into())
            .spawn(move || {
                if armed.recv_timeout(after) == Err(RecvTimeoutError::Timeout) {
                    on_timeout();
                }
            })
            // Without the thread there is only no warning.
            .ok();
        Self {
            disarm: Some(disarm),
            thread,
        }
    }
}

impl Drop for SlowAnswerWatch {
    fn drop(&mut self) {
        // Disconnecting wakes the thread at once.
        self.disarm.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The warning for `what` unanswered for `after`, with the last lines of the VM's `console`.
pub(super) fn warning(what: &str, after: Duration, console: &Path) -> String {
    format!(
        "{what}: the pod VM has not answered for {} s; its console ends: {}",
        after.as_secs(),
        a3s_vmm::qemu::log_tail(console, 20)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn an_unanswered_wait_fires_and_an_answered_one_does_not() {
        let (fired, seen) = mpsc::channel();
        let _watch = SlowAnswerWatch::arm(Duration::from_millis(10), move || {
            let _ = fired.send(());
        });
        assert!(seen.recv_timeout(Duration::from_secs(30)).is_ok());

        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        let watch = SlowAnswerWatch::arm(Duration::from_secs(3600), move || {
            set.store(true, Ordering::SeqCst);
        });
        drop(watch); // joins the thread, which ended without firing
        assert!(!flag.load(Ordering::SeqCst));
    }

    #[test]
    fn the_warning_names_the_wait_and_ends_with_the_console() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&console, text).unwrap();
        let w = warning("starting container c1", SLOW_ANSWER, &console);
        assert!(w.starts_with("starting container c1: "), "{w}");
        assert!(w.contains("60 s"), "{w}");
        assert!(w.ends_with("line 98 / line 99"), "{w}");
        assert!(!w.contains("line 79 "), "only the last 20 lines: {w}");
    }
}
