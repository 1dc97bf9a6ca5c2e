//! `top` and `stats` inside the VM: the workload's processes and the guest's resource use,
//! read from `/proc` (the images need no `ps`).
//!
//! Processes shown are every user-space process but guest-init (PID 1) and kernel threads,
//! i.e. the workload, its children and exec sessions, as Docker's `top` shows a container's.

use std::collections::HashMap;
use std::path::Path;

use a3s_vmm::proto::GuestStats;

/// Docker's default `top` columns (`ps -ef`).
pub(crate) const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];
/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on x86_64 Linux).
const HZ: u64 = 100;
/// Largest `/proc` file read (a process's `cmdline` can be long; the rest are small).
const MAX_PROC_FILE: u64 = 256 << 10;

/// The rows of `top` with `ps_args`; only `ps -ef` style options are understood.
///
/// # Errors
/// Options other than `-e`, `-f`, `-ef` (with the reason), or an unreadable `/proc`.
pub(crate) fn top(ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    for a in ps_args {
        let a = a.trim_start_matches('-');
        if a.is_empty() || !a.chars().all(|c| c == 'e' || c == 'f' || c == 'A') {
            return Err(format!(
                "ps option {a:?} is not supported: top shows `ps -ef` columns ({})",
                TITLES.join(" ")
            ));
        }
    }
    let proc = Path::new("/proc");
    let boot = boot_time(&read(&proc.join("stat"))?).ok_or("no btime in /proc/stat")?;
    let uptime = read(&proc.join("uptime"))?;
    // Whole seconds are enough for STIME and C.
    let uptime_secs: u64 = uptime
        .split(['.', ' '])
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("unreadable /proc/uptime")?;
    let users = users(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    let now = boot + uptime_secs;
    let mut rows = Vec::new();
    for pid in pids(proc)? {
        let dir = proc.join(pid.to_string());
        // A process may end while we read it: skip it.
        let (Ok(stat), Ok(status)) = (read(&dir.join("stat")), read(&dir.join("status"))) else {
            continue;
        };
        let Some(st) = Stat::parse(&stat) else {
            continue;
        };
        if !is_workload(pid, &st) {
            continue;
        }
        let cmdline = read_bytes(&dir.join("cmdline")).unwrap_or_default();
        let uid = status_field(&status, "Uid:").unwrap_or(0);
        rows.push(row(pid, &st, uid, &cmdline, &users, boot, now));
    }
    Ok((TITLES.iter().map(|t| (*t).to_owned()).collect(), rows))
}

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
    s.mem_limit_bytes = total * 1024;
    s.mem_used_bytes = total.saturating_sub(available) * 1024;
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

fn read(path: &Path) -> Result<String, String> {
    read_bytes(path).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PROC_FILE).read_to_end(&mut out))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(out)
}

fn pids(proc: &Path) -> Result<Vec<u32>, String> {
    let mut pids: Vec<u32> = std::fs::read_dir(proc)
        .map_err(|e| format!("reading /proc: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Neither guest-init nor a kernel thread (kthreadd is 2, its children have parent 2).
fn is_workload(pid: u32, st: &Stat) -> bool {
    pid > 2 && st.ppid != 2
}

/// The fields of `/proc/PID/stat` that `top` and `stats` use.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    ppid: u32,
    tty_nr: u32,
    /// utime + stime, in ticks.
    cpu_ticks: u64,
    threads: u64,
    /// Ticks after boot.
    start_ticks: u64,
}

impl Stat {
    fn parse(text: &str) -> Option<Self> {
        // `comm` is in parentheses and may itself hold spaces and parentheses.
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_owned();
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        // rest[0] is field 3 (state).
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        Some(Self {
            comm,
            ppid: u32::try_from(field(4)?).ok()?,
            tty_nr: u32::try_from(field(7)?).ok()?,
            cpu_ticks: field(14)? + field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
        })
    }
}

fn row(
    pid: u32,
    st: &Stat,
    uid: u32,
    cmdline: &[u8],
    users: &HashMap<u32, String>,
    boot: u64,
    now: u64,
) -> Vec<String> {
    let started = boot + st.start_ticks / HZ;
    let running_secs = now.saturating_sub(started).max(1);
    let cpu_secs = st.cpu_ticks / HZ;
    // ps's C: CPU time over running time, in percent.
    let c = (st.cpu_ticks * 100 / HZ) / running_secs;
    let cmd = if cmdline.is_empty() {
        format!("[{}]", st.comm)
    } else {
        let parts: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        parts.join(" ")
    };
    vec![
        users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        pid.to_string(),
        st.ppid.to_string(),
        c.to_string(),
        stime(started, now),
        tty(st.tty_nr),
        format!(
            "{:02}:{:02}:{:02}",
            cpu_secs / 3600,
            cpu_secs / 60 % 60,
            cpu_secs % 60
        ),
        cmd,
    ]
}

/// ps's STIME: `HH:MM` within a day, else `MonDD` within a year, else the year (UTC).
fn stime(started: u64, now: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(started).unwrap_or(0))
    else {
        return "?".into();
    };
    let age = now.saturating_sub(started);
    if age < 86_400 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else if age < 365 * 86_400 {
        let month = format!("{:?}", t.month());
        format!("{}{:02}", &month[..3], t.day())
    } else {
        t.year().to_string()
    }
}

/// ps's TTY from `tty_nr`: `pts/N`, `ttySN`, `ttyN`, else `?`.
fn tty(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor >= 64 => format!("ttyS{}", minor - 64),
        4 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

fn status_field(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn users(passwd: &str) -> HashMap<u32, String> {
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_owned()))
        })
        .collect()
}

fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
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
        assert_eq!(tty(34816), "pts/0");
        assert_eq!(tty(0), "?");
        assert_eq!(tty((4 << 8) | 64), "ttyS0");
    }

    #[test]
    fn rows_have_dockers_columns_and_values() {
        let st = Stat::parse("77 (sleep) S 1 77 77 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0 1000 0 0 0")
            .unwrap();
        let users = users("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
        let boot = 1_700_000_000;
        // Started 10 s after boot, now 110 s after boot, 2 s of CPU: C is 2 %.
        let r = row(
            77,
            &st,
            65534,
            b"sleep\x00300\x00",
            &users,
            boot,
            boot + 110,
        );
        assert_eq!(r.len(), TITLES.len());
        assert_eq!(
            r,
            [
                "nobody",
                "77",
                "1",
                "2",
                "22:13",
                "?",
                "00:00:02",
                "sleep 300"
            ]
        );
        let kthread = row(77, &st, 5, b"", &users, boot, boot + 110);
        assert_eq!(kthread[0], "5");
        assert_eq!(kthread[7], "[sleep]");
        assert_eq!(stime(boot, boot + 2 * 86_400), "Nov14");
        assert_eq!(stime(boot, boot + 400 * 86_400), "2023");
    }

    #[test]
    fn kernel_threads_and_init_are_not_the_workload() {
        let st = |ppid| Stat {
            comm: String::new(),
            ppid,
            tty_nr: 0,
            cpu_ticks: 0,
            threads: 1,
            start_ticks: 0,
        };
        assert!(!is_workload(1, &st(0)));
        assert!(!is_workload(2, &st(0)));
        assert!(!is_workload(15, &st(2)));
        assert!(is_workload(90, &st(1)));
    }

    #[test]
    fn ps_options_other_than_ef_are_refused_with_the_columns() {
        let e = top(&["aux".into()]).unwrap_err();
        assert!(e.contains("UID PID PPID"), "{e}");
        // This test process is no kernel thread: the host's /proc lists it.
        let (titles, rows) = top(&["-ef".into()]).unwrap();
        assert_eq!(titles, TITLES);
        let me = std::process::id().to_string();
        assert!(rows.iter().any(|r| r[1] == me), "own pid {me} missing");
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
