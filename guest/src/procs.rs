//! The guest's processes and resource use, read from `/proc` (the images need no `ps`): `stats`,
//! the pause of `commit --pause`, and what `top` ([`crate::top`]) reads.
//!
//! The workload is every user-space process but guest-init (PID 1) and kernel threads, i.e.
//! the workload, its children and exec sessions, as Docker's `top` shows a container's.

use std::path::Path;

use a3s_vmm::proto::GuestStats;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on x86_64 Linux).
pub(crate) const HZ: u64 = 100;
/// Largest `/proc` file read (a process's `cmdline` can be long; the rest are small).
const MAX_PROC_FILE: u64 = 256 << 10;
/// Resource use from `/proc`.
///
/// # Errors
/// An unreadable `/proc/meminfo` or `/proc/stat`.
pub(crate) fn stats() -> Result<GuestStats, String> {
    let proc = Path::new("/proc");
    let mut s = GuestStats::default();
    let meminfo = read(&proc.join("meminfo"))?;
    let kib = |k: &str| meminfo_kib(&meminfo, k);
    let total = kib("MemTotal:").ok_or("no MemTotal in /proc/meminfo")?;
    let available = kib("MemAvailable:").ok_or("no MemAvailable in /proc/meminfo")?;
    (s.mem_used_bytes, s.mem_limit_bytes) = crate::workload_cgroup::memory()
        .unwrap_or((total.saturating_sub(available) * 1024, total * 1024));
    let stat = read(&proc.join("stat"))?;
    (s.cpu_busy_ticks, s.cpu_total_ticks, s.online_cpus) =
        cpu_ticks(&stat).ok_or("no cpu line in /proc/stat")?;
    for pid in pids(proc)? {
        let dir = proc.join(pid.to_string());
        let Some(st) = read(&dir.join("stat")).ok().and_then(|t| Stat::parse(&t)) else {
            continue;
        };
        if is_workload(pid, &st) {
            s.pids += st.threads;
        }
    }
    (s.net_rx_bytes, s.net_tx_bytes) = net_bytes(&read(&proc.join("net/dev")).unwrap_or_default());
    (s.block_read_bytes, s.block_write_bytes) =
        disk_bytes(&read(&proc.join("diskstats")).unwrap_or_default());
    Ok(s)
}

pub(crate) fn read(path: &Path) -> Result<String, String> {
    read_bytes(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PROC_FILE).read_to_end(&mut out))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(out)
}

pub(crate) fn pids(proc: &Path) -> Result<Vec<u32>, String> {
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map_err(|e| format!("reading /proc: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Neither guest-init nor a kernel thread (kthreadd is 2, its children have parent 2).
pub(crate) fn is_workload(pid: u32, st: &Stat) -> bool {
    pid > 2 && st.ppid != 2
}

/// The workload's processes, stopped with SIGSTOP (`commit --pause`) until this is dropped,
/// which continues them. Processes that were stopped already stay stopped.
pub(crate) struct Paused(Vec<nix::unistd::Pid>);

/// Stops every workload process except this one and its parent (the exec session reading the
/// layer). Two passes catch children forked while the first pass ran.
pub(crate) fn pause_workload() -> Paused {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::{getpid, getppid, Pid};
    let proc = Path::new("/proc");
    let mut stopped: Vec<Pid> = Vec::new();
    for _ in 0..2 {
        for pid in pids(proc).unwrap_or_default() {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            let target = Pid::from_raw(raw);
            if target == getpid() || target == getppid() || stopped.contains(&target) {
                continue;
            }
            let Some(st) = read(&proc.join(pid.to_string()).join("stat"))
                .ok()
                .and_then(|t| Stat::parse(&t))
            else {
                continue;
            };
            if is_workload(pid, &st)
                && !matches!(st.state, 'T' | 'Z')
                && kill(target, Signal::SIGSTOP).is_ok()
            {
                stopped.push(target);
            }
        }
    }
    Paused(stopped)
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGCONT);
        }
    }
}

/// The fields of `/proc/PID/stat` that `top` and `stats` use.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub(crate) comm: String,
    /// `R`, `S`, `T` (stopped), `Z`, ...
    pub(crate) state: char,
    pub(crate) ppid: u32,
    pub(crate) tty_nr: u32,
    /// utime + stime, in ticks.
    pub(crate) cpu_ticks: u64,
    pub(crate) threads: u64,
    /// Ticks after boot.
    pub(crate) start_ticks: u64,
    pub(crate) vsize_bytes: u64,
    pub(crate) rss_pages: u64,
}

impl Stat {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        // `comm` is in parentheses and may itself hold spaces and parentheses.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        // rest[0] is field 3 (state).
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            comm,
            state: rest.first()?.chars().next()?,
            ppid: u32::try_from(field(4)?).ok()?,
            tty_nr: u32::try_from(field(7)?).ok()?,
            cpu_ticks: field(14)? + field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize_bytes: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

pub(crate) fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (busy, total) ticks of the `cpu` line and the number of `cpuN` lines.
fn cpu_ticks(stat: &str) -> Option<(u64, u64, u32)> {
    let mut lines = stat.lines();
    let cpu = lines.next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((total - idle, total, u32::try_from(cpus).unwrap_or(1)))
}

/// Received and sent bytes of every interface but loopback.
fn net_bytes(dev: &str) -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        rx += v.first().copied().unwrap_or(0);
        tx += v.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// Bytes read and written on the virtio disks (`vdX`, whole disks only: partitions and the
/// device-mapper layers above them would count the same bytes twice).
fn disk_bytes(diskstats: &str) -> (u64, u64) {
    let mut read = 0;
    let mut written = 0;
    for line in diskstats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = f.get(2) else { continue };
        let whole_vd = name.starts_with("vd") && name[2..].chars().all(|c| c.is_ascii_lowercase());
        if !whole_vd {
            continue;
        }
        let sectors = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        read += sectors(5) * 512;
        written += sectors(9) * 512;
    }
    (read, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 34816 4242 4194560 100 0 0 0 250 50 0 0 20 0 3 0 12345 10000 200 18446744073709551615";
        let st = Stat::parse(line).unwrap();
        assert_eq!(st.comm, "my (odd) cmd");
        assert_eq!(st.ppid, 1);
        assert_eq!(st.tty_nr, 34816);
        assert_eq!(st.cpu_ticks, 300);
        assert_eq!(st.threads, 3);
        assert_eq!(st.start_ticks, 12345);
    }

    #[test]
    fn kernel_threads_and_init_are_not_the_workload() {
        let st = |ppid| Stat {
            comm: String::new(),
            state: 'S',
            ppid,
            tty_nr: 0,
            cpu_ticks: 0,
            threads: 1,
            start_ticks: 0,
            vsize_bytes: 0,
            rss_pages: 0,
        };
        assert!(!is_workload(1, &st(0)));
        assert!(!is_workload(2, &st(0)));
        assert!(!is_workload(15, &st(2)));
        assert!(is_workload(90, &st(1)));
    }

    #[test]
    fn memory_cpu_net_and_disk_figures_come_from_proc_text() {
        let meminfo = "MemTotal:        8000 kB\nMemFree:  100 kB\nMemAvailable:    6000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal:"), Some(8000));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable:"), Some(6000));
        let stat = "cpu  10 2 30 400 5 1 1 0 0 0\ncpu0 5 1 15 200 2 1 0 0 0 0\ncpu1 5 1 15 200 3 0 1 0 0 0\nbtime 1700000000\n";
        assert_eq!(cpu_ticks(stat), Some((44, 449, 2)));
        assert_eq!(boot_time(stat), Some(1_700_000_000));
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 999 9 0 0 0 0 0 0 999 9 0 0 0 0 0 0\n  eth0: 1500 10 0 0 0 0 0 0 700 5 0 0 0 0 0 0\n";
        assert_eq!(net_bytes(dev), (1500, 700));
        let disks = " 254 0 vda 10 0 80 5 2 0 16 1 0 0 0\n 254 1 vda1 10 0 80 5 2 0 16 1 0 0 0\n 253 0 dm-0 10 0 80 5 0 0 0 0 0 0 0\n 254 16 vdb 1 0 8 0 4 0 32 0 0 0 0\n";
        assert_eq!(disk_bytes(disks), ((80 + 8) * 512, (16 + 32) * 512));
    }

    #[test]
    fn stats_of_this_host_are_consistent() {
        let s = stats().unwrap();
        assert!(s.mem_used_bytes > 0 && s.mem_used_bytes < s.mem_limit_bytes);
        assert!(s.cpu_busy_ticks <= s.cpu_total_ticks && s.online_cpus >= 1);
        assert!(s.pids >= 1);
    }
}
