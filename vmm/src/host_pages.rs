//! Guest RAM in the host's base pages: QEMU runs with transparent huge pages disabled.
//!
//! QEMU asks for huge pages on guest RAM (`MADV_HUGEPAGE`), and a host whose THP setting is
//! `madvise` (Debian's default) or `always` then backs it in 2 MiB pages. That defeats what
//! gives an idle box's memory back:
//! - a box restored from a saved VM ([`crate::template`]) loads only the guest's non-zero
//!   pages, but each 4 KiB page it writes faults in a whole 2 MiB page;
//! - khugepaged collapses any 2 MiB range with a single page present (its default
//!   `max_ptes_none` is 511) back into a huge page, refilling what free page reporting
//!   ([`crate::balloon`]) returned in smaller blocks.
//!
//! `prctl(PR_SET_THP_DISABLE)` before QEMU's exec (it survives exec) keeps both off for that
//! process only; the host's setting is not touched. Measured (TCG, 512 MiB guests, idle
//! busybox): a restored box's guest RAM 104 → 80 MiB resident; a cold box's barely changes
//! (the guest touched those pages while booting either way). What it costs is more page
//! faults and TLB misses for guests that use much memory, which matters under KVM:
//! `A3S_BOX_THP=on` keeps QEMU's huge pages for such hosts. Firecracker backs guests with base
//! pages by default for the same reason.

use std::process::Command;

use crate::qemu::ConfigError;

/// `on` lets QEMU back guest RAM with transparent huge pages (the host's setting decides).
pub const THP_ENV: &str = "A3S_BOX_THP";

/// Whether QEMU may use transparent huge pages, from [`THP_ENV`] (default: no).
///
/// # Errors
/// [`ConfigError::Thp`] for a value other than `on` or `off`.
pub fn huge_pages_from_env() -> Result<bool, ConfigError> {
    parse(std::env::var(THP_ENV).ok().as_deref()).map_err(ConfigError::Thp)
}

fn parse(v: Option<&str>) -> Result<bool, String> {
    match v.map(str::trim) {
        None | Some("") | Some("off") => Ok(false),
        Some("on") => Ok(true),
        Some(s) => Err(format!(
            "{THP_ENV}={s:?} is not understood: use on (guest RAM in transparent huge pages) or \
             off (the default)"
        )),
    }
}

/// Makes the child `cmd` spawns run without transparent huge pages.
#[allow(unsafe_code)]
pub(crate) fn disable_thp(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_thp_disable(true).map_err(std::io::Error::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_are_off_unless_asked_for() {
        assert_eq!(parse(None), Ok(false));
        assert_eq!(parse(Some("")), Ok(false));
        assert_eq!(parse(Some("off")), Ok(false));
        assert_eq!(parse(Some(" on ")), Ok(true));
        let e = parse(Some("yes")).unwrap_err();
        assert!(e.contains(THP_ENV) && e.contains("\"yes\""), "{e}");
    }

    #[test]
    fn a_child_runs_without_transparent_huge_pages() {
        // The flag is inherited across exec: the child's own /proc/self/status shows it.
        let mut cmd = Command::new("grep");
        cmd.args(["^THP_enabled:", "/proc/self/status"]);
        disable_thp(&mut cmd);
        let out = cmd.output().expect("grep runs");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "THP_enabled:\t0"
        );
        let plain = Command::new("grep")
            .args(["^THP_enabled:", "/proc/self/status"])
            .output()
            .expect("grep runs");
        assert_eq!(
            String::from_utf8_lossy(&plain.stdout).trim(),
            "THP_enabled:\t1"
        );
    }
}
