//! How guest RAM sits in the host's pages: base pages, not transparent huge pages; and which
//! VMs' pages the host's KSM may merge.
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
//!
//! KSM (kernel same-page merging) is the host's choice (`/sys/kernel/mm/ksm/run`, off by
//! default): when it runs, the identical pages of plain boxes (their kernel's code and data,
//! guest-init, zeroed buffers) are kept once, and so is most of their passt's memory
//! ([`merge_any`]). Measured here with 4 idle busybox boxes of 512 MiB (TCG): the host's
//! available memory rose by 218 MiB once ksmd had scanned them, about 55 MiB a box. QEMU marks
//! guest RAM mergeable by default; a confidential box's is not (`mem-merge=off`, and its passt
//! is not offered either), since a merged page tells another tenant which pages this VM holds
//! and when it writes them. SEV-SNP memory is encrypted per VM and never merges anyway.

use std::path::Path;
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

/// The `-machine` option for a VM whose pages may (`""`: QEMU's default) or may not be
/// merged by KSM.
pub(crate) fn merge_option(mergeable: bool) -> &'static str {
    if mergeable {
        ""
    } else {
        ",mem-merge=off"
    }
}

/// Whether the host merges identical pages (KSM), from `<root>/sys/kernel/mm/ksm/run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ksm {
    /// ksmd runs: plain boxes' identical pages are merged.
    On,
    /// Present but not running (the kernel's default).
    Off,
    /// Not in this kernel.
    Unavailable,
}

impl Ksm {
    /// Reads the host's KSM state under `root` (`/` for this host).
    pub fn probe(root: &Path) -> Self {
        match std::fs::read_to_string(root.join("sys/kernel/mm/ksm/run")) {
            Ok(s) if s.trim() == "1" => Self::On,
            Ok(_) => Self::Off,
            Err(_) => Self::Unavailable,
        }
    }
}

/// `PR_SET_MEMORY_MERGE` (Linux 6.4; kept across exec since 6.10), not yet in nix.
const PR_SET_MEMORY_MERGE: nix::libc::c_int = 67;

/// Lets KSM merge all of the anonymous memory of the child `cmd` spawns, when the host runs
/// KSM. For a box's passt, measured with three idle boxes: 13.7 of the 19.6 MiB it holds are
/// pages it zeroed at start-up (buffers in its BSS), and once ksmd had scanned them 17.3 MiB
/// of each passt were merged (`ksm_process_profit` 17.0 MiB). A kernel without the option
/// leaves the child as it was.
#[allow(unsafe_code)]
pub(crate) fn merge_any(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            // An older kernel refuses the option (EINVAL): the child runs unmerged, as before.
            let _ = nix::libc::prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0);
            Ok(())
        });
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
    fn ksm_state_comes_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Ksm::probe(root.path()), Ksm::Unavailable);
        let dir = root.path().join("sys/kernel/mm/ksm");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("run"), "0\n").unwrap();
        assert_eq!(Ksm::probe(root.path()), Ksm::Off);
        std::fs::write(dir.join("run"), "1\n").unwrap();
        assert_eq!(Ksm::probe(root.path()), Ksm::On);
        assert_eq!(merge_option(true), "");
        assert_eq!(merge_option(false), ",mem-merge=off");
    }

    #[test]
    fn a_mergeable_child_offers_all_its_memory_to_ksm() {
        // Read from the child's own /proc/self/ksm_stat (kernels before 6.x have none).
        if !Path::new("/proc/self/ksm_stat").exists() {
            eprintln!("SKIP: this kernel has no /proc/<pid>/ksm_stat");
            return;
        }
        let stat = |merge: bool| {
            let mut cmd = Command::new("grep");
            cmd.args(["^ksm_merge_any:", "/proc/self/ksm_stat"]);
            if merge {
                merge_any(&mut cmd);
            }
            let out = cmd.output().expect("grep runs");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(stat(true), "ksm_merge_any: yes");
        assert_eq!(stat(false), "ksm_merge_any: no");
    }

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
