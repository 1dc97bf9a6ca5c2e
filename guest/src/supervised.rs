//! Supervised pod containers: a container's main process belongs to guest-init, not to the
//! host session that started it. Its output goes to whichever host session is attached; while
//! none is (the CRI server restarted), the output is kept, bounded, and its exit status is kept
//! until a new session attaches (`ContainerAttach`) and receives both.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use a3s_vmm::proto::{Frame, GuestMsg, Kind};

/// Output kept per container while no host session is attached.
pub(crate) const MAX_KEPT: usize = 1 << 20;
/// Exited containers remembered (their exit codes), oldest forgotten first.
const MAX_EXITED: usize = 1024;

/// Where a supervised container's output and exit go.
#[derive(Debug)]
pub(crate) struct Sink {
    /// The attached host session.
    session: Option<u32>,
    /// The key its stdin and pumps are kept under in the control server's sessions (the
    /// session that started it, then the last one attached).
    pub(crate) key: u32,
    /// The container's root directory in the VM.
    pub(crate) root: String,
    pid: i32,
    kept: VecDeque<(Kind, Vec<u8>)>,
    kept_bytes: usize,
    dropped: u64,
    exit: Option<i32>,
    /// The OOM killer killed a process of the container's cgroup.
    oom_killed: bool,
}

impl Sink {
    pub(crate) fn new(session: u32, pid: i32, root: String) -> Self {
        Self {
            session: Some(session),
            key: session,
            root,
            pid,
            kept: VecDeque::new(),
            kept_bytes: 0,
            dropped: 0,
            exit: None,
            oom_killed: false,
        }
    }

    /// The attached session, if any.
    pub(crate) fn session(&self) -> Option<u32> {
        self.session
    }

    /// The main process's pid.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    /// Output from the process: to the attached session, else kept (oldest dropped first).
    pub(crate) fn output(&mut self, kind: Kind, data: Vec<u8>, send: &mut impl FnMut(Frame)) {
        if let Some(s) = self.session {
            send(Frame::data(kind, s, data));
            return;
        }
        self.kept_bytes += data.len();
        self.kept.push_back((kind, data));
        while self.kept_bytes > MAX_KEPT {
            let Some((_, old)) = self.kept.pop_front() else {
                break;
            };
            self.kept_bytes -= old.len();
            self.dropped += old.len() as u64;
        }
    }

    /// The process ended (`oom_killed`: the OOM killer acted in its cgroup): its code goes to
    /// the attached session, else it is kept.
    pub(crate) fn exited(&mut self, code: i32, oom_killed: bool, send: &mut impl FnMut(Frame)) {
        self.exit = Some(code);
        self.oom_killed = oom_killed;
        if let Some(s) = self.session {
            self.send_exit(s, send);
        }
    }

    fn send_exit(&self, session: u32, send: &mut impl FnMut(Frame)) {
        let Some(code) = self.exit else { return };
        if self.oom_killed {
            if let Ok(f) = Frame::control(session, &GuestMsg::OomKilled) {
                send(f);
            }
        }
        if let Ok(f) = Frame::control(session, &GuestMsg::Exited { code }) {
            send(f);
        }
    }

    /// The session went away (only the attached one detaches).
    pub(crate) fn detach(&mut self, session: u32) {
        if self.session == Some(session) {
            self.session = None;
        }
    }

    /// `session` takes over: `Started`, what was kept (with a note of what was dropped), and
    /// the exit when the process ended meanwhile.
    pub(crate) fn attach(&mut self, session: u32, send: &mut impl FnMut(Frame)) {
        self.session = Some(session);
        if let Ok(f) = Frame::control(
            session,
            &GuestMsg::Started {
                pid: self.pid,
                user: None,
            },
        ) {
            send(f);
        }
        if self.dropped > 0 {
            let note = format!(
                "a3s-guest-init: {} bytes of this container's output were dropped while no \
                 runtime was attached\n",
                self.dropped
            );
            send(Frame::data(Kind::Stderr, session, note.into_bytes()));
            self.dropped = 0;
        }
        for (kind, data) in self.kept.drain(..) {
            send(Frame::data(kind, session, data));
        }
        self.kept_bytes = 0;
        self.send_exit(session, send);
    }

    pub(crate) fn has_exited(&self) -> bool {
        self.exit.is_some()
    }
}

/// A shared sink.
pub(crate) type SharedSink = Arc<Mutex<Sink>>;

/// Locks a sink (a panicked pump leaves it usable).
pub(crate) fn lock(sink: &SharedSink) -> MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The supervised containers of this VM, by container id.
#[derive(Debug, Default)]
pub(crate) struct Supervised {
    sinks: HashMap<String, SharedSink>,
    /// Exited ids, oldest first (to bound what is remembered).
    exited: VecDeque<String>,
}

impl Supervised {
    /// Registers a started container's main process.
    pub(crate) fn insert(&mut self, id: &str, sink: SharedSink) {
        self.sinks.insert(id.to_owned(), sink);
    }

    pub(crate) fn get(&self, id: &str) -> Option<SharedSink> {
        self.sinks.get(id).cloned()
    }

    /// The container whose main process has `pid` (running ones only).
    pub(crate) fn by_pid(&self, pid: i32) -> Option<(String, SharedSink)> {
        self.sinks
            .iter()
            .find(|(_, s)| {
                let s = lock(s);
                s.pid() == pid && !s.has_exited()
            })
            .map(|(id, s)| (id.clone(), s.clone()))
    }

    /// The container attached to host `session`.
    pub(crate) fn by_session(&self, session: u32) -> Option<SharedSink> {
        self.sinks
            .values()
            .find(|s| lock(s).session() == Some(session))
            .cloned()
    }

    /// Notes that `id` exited, forgetting the oldest exited containers beyond the bound.
    pub(crate) fn note_exit(&mut self, id: &str) {
        self.exited.push_back(id.to_owned());
        while self.exited.len() > MAX_EXITED {
            if let Some(old) = self.exited.pop_front() {
                self.sinks.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_to_the_session_then_is_kept_and_replayed_on_attach() {
        let sent = std::cell::RefCell::new(Vec::new());
        let mut send = |f: Frame| sent.borrow_mut().push(f);
        let mut sink = Sink::new(3, 42, String::new());
        sink.output(Kind::Stdout, b"one\n".to_vec(), &mut send);
        sink.detach(9); // another session: no effect
        assert_eq!(sink.session(), Some(3));
        sink.detach(3);
        sink.output(Kind::Stdout, b"two\n".to_vec(), &mut send);
        sink.output(Kind::Stderr, b"err\n".to_vec(), &mut send);
        sink.exited(7, false, &mut send);
        assert_eq!(sent.borrow().len(), 1);
        assert_eq!(sent.borrow()[0].session, 3);
        sink.attach(5, &mut send);
        let kinds: Vec<_> = sent.borrow()[1..]
            .iter()
            .map(|f| (f.kind, f.session))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Control, 5),
                (Kind::Stdout, 5),
                (Kind::Stderr, 5),
                (Kind::Control, 5)
            ]
        );
        assert_eq!(
            sent.borrow()[1].message::<GuestMsg>().unwrap(),
            GuestMsg::Started {
                pid: 42,
                user: None
            }
        );
        assert_eq!(sent.borrow()[2].payload, b"two\n");
        assert_eq!(
            sent.borrow()[4].message::<GuestMsg>().unwrap(),
            GuestMsg::Exited { code: 7 }
        );
        // Replayed once: a second attach gets only the start and the exit.
        sink.attach(6, &mut send);
        assert_eq!(sent.borrow().len(), 7);
    }

    #[test]
    fn an_oom_kill_is_reported_before_the_exit_also_on_a_later_attach() {
        let sent = std::cell::RefCell::new(Vec::new());
        let mut send = |f: Frame| sent.borrow_mut().push(f);
        let mut sink = Sink::new(1, 2, String::new());
        sink.detach(1);
        sink.exited(137, true, &mut send);
        sink.attach(4, &mut send);
        let msgs: Vec<GuestMsg> = sent
            .borrow()
            .iter()
            .map(|f| f.message::<GuestMsg>().unwrap())
            .collect();
        assert_eq!(
            msgs,
            [
                GuestMsg::Started { pid: 2, user: None },
                GuestMsg::OomKilled,
                GuestMsg::Exited { code: 137 }
            ]
        );
    }

    #[test]
    fn kept_output_is_bounded_and_the_loss_is_reported() {
        let sent = std::cell::RefCell::new(Vec::new());
        let mut send = |f: Frame| sent.borrow_mut().push(f);
        let mut sink = Sink::new(1, 2, String::new());
        sink.detach(1);
        for _ in 0..3 {
            sink.output(Kind::Stdout, vec![b'x'; MAX_KEPT / 2], &mut send);
        }
        sink.output(Kind::Stdout, b"last".to_vec(), &mut send);
        assert!(sink.kept_bytes <= MAX_KEPT);
        sink.attach(2, &mut send);
        let note = String::from_utf8_lossy(&sent.borrow()[1].payload).into_owned();
        assert!(
            note.contains("bytes of this container's output were dropped"),
            "{note}"
        );
        assert_eq!(sent.borrow().last().unwrap().payload, b"last");
    }

    #[test]
    fn lookups_and_the_exited_bound() {
        let mut sup = Supervised::default();
        let a = Arc::new(Mutex::new(Sink::new(4, 100, String::new())));
        sup.insert("a", a.clone());
        assert!(sup.by_pid(100).is_some());
        assert!(sup.by_session(4).is_some());
        assert!(sup.by_session(5).is_none());
        lock(&a).exited(0, false, &mut |_| {});
        assert!(sup.by_pid(100).is_none(), "an exited pid may be reused");
        for i in 0..=MAX_EXITED {
            let id = format!("x{i}");
            sup.insert(&id, Arc::new(Mutex::new(Sink::new(0, 0, String::new()))));
            sup.note_exit(&id);
        }
        assert!(sup.get("x0").is_none());
        assert!(sup.get(&format!("x{MAX_EXITED}")).is_some());
        assert!(sup.get("a").is_some());
    }
}
