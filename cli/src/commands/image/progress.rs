//! Per-layer progress bars on stderr (plain lines when stderr is not a terminal).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use a3s_image::registry::Progress;
use a3s_image::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
    tty: bool,
    verb: &'static str,
}

impl Bars {
    pub(crate) fn new(verb: &'static str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(HashMap::new()),
            tty,
            verb,
        }
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

impl Progress for Bars {
    fn start(&self, digest: &Digest, size: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template("{prefix} {msg:>11} [{bar:30}] {bytes}/{total_bytes}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(short(digest).to_owned());
        bar.set_message(self.verb);
        if let Ok(mut m) = self.bars.lock() {
            m.insert(digest.clone(), bar);
        }
    }

    fn advance(&self, digest: &Digest, bytes: u64) {
        if let Some(b) = self.bars.lock().ok().and_then(|m| m.get(digest).cloned()) {
            b.inc(bytes);
        }
    }

    fn done(&self, digest: &Digest, cached: bool) {
        let status = if cached { "exists" } else { "done" };
        if let Some(b) = self.bars.lock().ok().and_then(|mut m| m.remove(digest)) {
            b.set_message(status);
            b.finish();
        }
        if !self.tty {
            let _ = writeln!(std::io::stderr().lock(), "{}: {status}", short(digest));
        }
    }
}
