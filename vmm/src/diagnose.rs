//! Why a boot failed: reads the guest console and QEMU's own log and names the cause.
//!
//! A guest that dies before it is ready only leaves text behind: the kernel's panic line, the
//! initramfs unpacker's complaint, guest-init's `fatal:` line, or QEMU's error. [`diagnose`]
//! is pure (unit-tested on console excerpts captured from real failing boots, see the tests) and
//! returns the decisive lines with what to change.

use std::fmt;

/// What killed the boot, in the order the checks are made (most specific first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// dm-verity found a block of the image's filesystem that does not match its hash tree.
    Verity,
    /// Guest memory ran out (the OOM killer, or the initramfs did not fit).
    OutOfMemory,
    /// QEMU refused to start the machine (for example `initrd is too large`).
    Qemu,
    /// guest-init printed `a3s-guest-init: fatal: ...` and powered off.
    GuestInit,
    /// The kernel panicked for another reason.
    KernelPanic,
}

/// The cause with the lines that show it and what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// What killed the boot.
    pub cause: Cause,
    /// The decisive lines, trimmed of kernel timestamps, oldest first.
    pub lines: Vec<String>,
    /// What the user can do.
    pub hint: String,
}

impl fmt::Display for Diagnosis {
    /// `<cause>: "<line>" / "<line>"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.cause {
            Cause::Verity => "the image's filesystem failed dm-verity verification",
            Cause::OutOfMemory => "the guest ran out of memory",
            Cause::Qemu => "QEMU refused to boot the VM",
            Cause::GuestInit => "guest-init failed",
            Cause::KernelPanic => "the guest kernel panicked",
        };
        f.write_str(what)?;
        for (i, l) in self.lines.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { " / " })?;
            write!(f, "{l:?}")?;
        }
        Ok(())
    }
}

/// Most decisive lines quoted per diagnosis.
const MAX_LINES: usize = 3;

/// Classifies the console log and QEMU's stderr of a failed boot; `None` when neither says why.
pub fn diagnose(console: &str, qemu_log: &str) -> Option<Diagnosis> {
    let console: Vec<&str> = console.lines().map(strip_timestamp).collect();
    let qemu: Vec<&str> = qemu_log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = |lines: &[&str], pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in lines.iter().filter(|l| pred(l)) {
            if !out.iter().any(|o| o == l) {
                out.push((*l).to_owned());
            }
        }
        out.truncate(MAX_LINES);
        out
    };
    let make = |cause, lines: Vec<String>, hint: &str| {
        (!lines.is_empty()).then(|| Diagnosis {
            cause,
            lines,
            hint: hint.to_owned(),
        })
    };
    make(
        Cause::Verity,
        pick(&console, &is_verity),
        "the image's filesystem image failed verification (corrupted or changed on disk): \
         remove the image with `a3s-box rmi` and pull it again",
    )
    .or_else(|| {
        make(
            Cause::OutOfMemory,
            pick(&console, &is_oom),
            "the image and the kernel do not fit in the box's memory: raise --memory \
             (for example --memory 1g)",
        )
    })
    .or_else(|| {
        let too_large = pick(&qemu, &|l| l.contains("initrd is too large"));
        make(
            Cause::OutOfMemory,
            too_large,
            "the initrd (image root filesystem) does not fit in the box's memory: raise --memory",
        )
    })
    .or_else(|| {
        make(
            Cause::Qemu,
            pick(&qemu, &|l| {
                l.starts_with("qemu-system-") || l.starts_with("qemu:")
            }),
            "QEMU's own error is quoted above; check the flags that map to it (--memory, --cpus, \
             A3S_BOX_MACHINE) and the host's QEMU installation (`a3s-box info`)",
        )
    })
    .or_else(|| {
        make(
            Cause::GuestInit,
            pick(&console, &|l| l.starts_with("a3s-guest-init: fatal:")),
            "guest-init could not set up the VM; a --kernel-arg that overrides A3S Box's own \
             arguments (a3s.*, rdinit=) causes this, otherwise report it with the console log",
        )
    })
    .or_else(|| {
        make(
            Cause::KernelPanic,
            pick(&console, &|l| {
                l.starts_with("Kernel panic - not syncing:")
                    || l.starts_with("Failed to execute")
                    || l.starts_with("Run ") && l.contains("as init process")
                    || l.starts_with("BUG:")
            }),
            "the guest kernel could not start guest-init: check --kernel-arg (rdinit=, init= and \
             panic_on_* override A3S Box's own arguments) and that the cached kernel and initrd \
             under A3S_HOME/cache are intact (delete them to rebuild)",
        )
    })
}

/// `[    1.234567] text` → `text`.
fn strip_timestamp(line: &str) -> &str {
    let t = line.trim();
    match t.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((stamp, rest)) if stamp.trim().parse::<f64>().is_ok() => rest.trim(),
        _ => t,
    }
}

fn is_verity(l: &str) -> bool {
    let l_low = l.to_ascii_lowercase();
    (l_low.contains("verity") && (l_low.contains("corrupt") || l_low.contains("mismatch")))
        || l.starts_with("a3s-guest-init: fatal:") && l_low.contains("verity")
}

fn is_oom(l: &str) -> bool {
    l.starts_with("Initramfs unpacking failed: write error")
        || l.starts_with("Out of memory")
        || l.contains("invoked oom-killer")
        || l.starts_with("oom-kill:")
        || l.contains("Kernel panic - not syncing: System is deadlocked on memory")
        || l.contains("Kernel panic - not syncing: Out of memory")
}

#[cfg(test)]
mod tests;
