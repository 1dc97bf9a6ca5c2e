//! Where the guest's part of a boot goes: each step's length, sent to the host with `Ready`
//! (`inspect` shows them under `boot.guest_steps`, bench/coldstart.sh prints their medians).

use std::sync::Mutex;
use std::time::Instant;

use a3s_vmm::proto::BootStep;

static STEPS: Mutex<Steps> = Mutex::new(Steps {
    last: None,
    done: Vec::new(),
});

struct Steps {
    last: Option<Instant>,
    done: Vec<BootStep>,
}

/// Starts timing: the first step, `kernel`, is the kernel's boot up to now (its uptime).
pub(crate) fn start() {
    let kernel_ms = crate::init::uptime_ms();
    let mut s = lock();
    s.done.clear();
    s.done.push(BootStep {
        name: "kernel".into(),
        ms: kernel_ms,
    });
    s.last = Some(Instant::now());
}

/// Starts timing after a restore (the template's boot is not this box's).
pub(crate) fn restart() {
    let mut s = lock();
    s.done.clear();
    s.last = Some(Instant::now());
}

/// Ends step `name`, begun when the previous one ended.
pub(crate) fn mark(name: &str) {
    let mut s = lock();
    let now = Instant::now();
    let ms = s.last.map_or(0, |t| {
        u64::try_from(now.duration_since(t).as_millis()).unwrap_or(u64::MAX)
    });
    s.done.push(BootStep {
        name: name.into(),
        ms,
    });
    s.last = Some(now);
}

/// The steps so far, for `Ready`.
pub(crate) fn take() -> Vec<BootStep> {
    std::mem::take(&mut lock().done)
}

fn lock() -> std::sync::MutexGuard<'static, Steps> {
    STEPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_in_order_after_the_kernel() {
        start();
        mark("modules");
        mark("root");
        let steps = take();
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kernel", "modules", "root"]);
        assert!(steps[0].ms > 0, "the host has been up for a while");
        assert!(take().is_empty(), "taken once");
        restart();
        mark("resume");
        assert_eq!(take()[0].name, "resume");
    }
}
