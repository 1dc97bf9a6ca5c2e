//! `top` and `stats` inside the VM: the workload's processes and the guest's resource use,
//! read from `/proc` (the images need no `ps`).
//!
//! Processes shown are every user-space process but guest-init (PID 1) and kernel threads,
//! i.e. the workload, its children and exec sessions, as Docker's `top` shows a container's.

use std::collections::HashMap;
use std::path::Path;

use a3s_vmm::proto::GuestStats;

/// `ps aux` columns.
const AUX: [&str; 11] = [
    "user", "pid", "%cpu", "%mem", "vsz", "rss", "tty", "stat", "start", "bsdtime", "command",
];
/// `ps -o` keywords `top` understands, as procps spells them.
const KEYWORDS: &str = "pid, ppid, uid, user, comm, args, cmd, command, tty, stat, stime, start, time, etime, rss, vsz, %cpu, pcpu, %mem, pmem, nlwp, c";
/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`, 100 on x86_64 Linux).
const HZ: u64 = 100;
/// Largest `/proc` file read (a process's `cmdline` can be long; the rest are small).
const MAX_PROC_FILE: u64 = 256 << 10;
/// Page size of `/proc/*/stat`'s `rss` (x86_64).
const PAGE_KIB: u64 = 4;

/// The columns `ps_args` asks for: Docker's default and `-ef` (`UID PID PPID C STIME TTY TIME
/// CMD`), `aux` (BSD style), `-o LIST` (with or without `-e`/`-A`).
///
/// # Errors
/// Any other option, an unknown `-o` keyword, or a list without `pid` (Docker needs the PID
/// column to know the processes), each with what is understood.
fn columns(ps_args: &[String]) -> Result<Vec<&'static str>, String> {
    const EF: [&str; 8] = ["fuid", "pid", "ppid", "c", "stime", "tty", "time", "cmd"];
    let supported = "top understands no options (ps -ef), -ef, aux, and -o LIST (with -e or -A)";
    let mut cols: Option<Vec<&'static str>> = None;
    let mut args = ps_args.iter().map(String::as_str);
    while let Some(a) = args.next() {
        let (flags, list) = match a.strip_prefix('-') {
            // BSD options (no dash): only `aux`, in any order.
            None if a.len() == 3 && ["a", "u", "x"].iter().all(|c| a.contains(c)) => {
                cols = Some(AUX.to_vec());
                continue;
            }
            None => return Err(format!("ps option {a:?} is not supported: {supported}")),
            Some(rest) => match rest.find('o') {
                Some(at) => {
                    let list = match &rest[at + 1..] {
                        "" => args
                            .next()
                            .ok_or_else(|| "ps option -o needs a column list".to_owned())?,
                        inline => inline,
                    };
                    (&rest[..at], Some(list))
                }
                None => (rest, None),
            },
        };
        if flags.chars().any(|c| !"efA".contains(c)) || (flags.is_empty() && list.is_none()) {
            return Err(format!("ps option {a:?} is not supported: {supported}"));
        }
        match list {
            Some(list) => {
                let mut picked = Vec::new();
                for k in list.split([',', ' ']).filter(|k| !k.is_empty()) {
                    let k = k.split_once('=').map_or(k, |(k, _)| k);
                    let known = KEYWORDS.split(", ").find(|x| *x == k).ok_or_else(|| {
                        format!("ps -o keyword {k:?} is not supported: use {KEYWORDS}")
                    })?;
                    picked.push(known);
                }
                cols.get_or_insert_with(Vec::new).extend(picked);
            }
            None if flags.contains('f') => cols = Some(EF.to_vec()),
            None => {}
        }
    }
    let cols = cols.unwrap_or_else(|| EF.to_vec());
    if !cols.contains(&"pid") {
        return Err(
            "the ps options must show the PID column (Docker needs it): add pid to -o".into(),
        );
    }
    Ok(cols)
}

/// A column's title, as procps prints it.
fn title(col: &str) -> &'static str {
    match col {
        "pid" => "PID",
        "ppid" => "PPID",
        "uid" | "fuid" => "UID",
        "user" => "USER",
        "comm" | "args" | "command" => "COMMAND",
        "cmd" => "CMD",
        "tty" => "TTY",
        "stat" => "STAT",
        "stime" => "STIME",
        "start" => "START",
        "time" | "bsdtime" => "TIME",
        "etime" => "ELAPSED",
        "rss" => "RSS",
        "vsz" => "VSZ",
        "%cpu" | "pcpu" => "%CPU",
        "%mem" | "pmem" => "%MEM",
        "nlwp" => "NLWP",
        _ => "C",
    }
}

/// The rows of `top` with `ps_args` (see [`columns`]).
///
/// # Errors
/// Unsupported options (with what is supported), or an unreadable `/proc`.
pub(crate) fn top(ps_args: &[String]) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let cols = columns(ps_args)?;
    let proc = Path::new("/proc");
    let boot = boot_time(&read(&proc.join("stat"))?).ok_or("no btime in /proc/stat")?;
    let uptime = read(&proc.join("uptime"))?;
    // Whole seconds are enough for STIME and C.
    let uptime_secs: u64 = uptime
        .split(['.', ' '])
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("unreadable /proc/uptime")?;
    let mem_kib = meminfo_kib(&read(&proc.join("meminfo"))?, "MemTotal:").unwrap_or(0);
    let users = users(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
    let clock = Clock {
        boot,
        now: boot + uptime_secs,
        mem_kib,
    };
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
        let p = Proc {
            pid,
            uid: status_field(&status, "Uid:").unwrap_or(0),
            cmdline: read_bytes(&dir.join("cmdline")).unwrap_or_default(),
            st,
        };
        rows.push(cols.iter().map(|c| p.column(c, &users, &clock)).collect());
    }
    Ok((cols.iter().map(|c| title(c).to_owned()).collect(), rows))
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
struct Stat {
    comm: String,
    /// `R`, `S`, `T` (stopped), `Z`, ...
    state: char,
    ppid: u32,
    tty_nr: u32,
    /// utime + stime, in ticks.
    cpu_ticks: u64,
    threads: u64,
    /// Ticks after boot.
    start_ticks: u64,
    vsize_bytes: u64,
    rss_pages: u64,
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

/// What one process's columns are computed from.
struct Proc {
    pid: u32,
    uid: u32,
    cmdline: Vec<u8>,
    st: Stat,
}

/// The guest's clock and memory, shared by every row.
struct Clock {
    /// Boot time, Unix seconds.
    boot: u64,
    /// Now, Unix seconds.
    now: u64,
    /// `MemTotal`, KiB.
    mem_kib: u64,
}

impl Proc {
    /// The value of column `col` (a [`columns`] keyword).
    fn column(&self, col: &str, users: &HashMap<u32, String>, clock: &Clock) -> String {
        let st = &self.st;
        let started = clock.boot + st.start_ticks / HZ;
        let running_secs = clock.now.saturating_sub(started).max(1);
        let cpu_secs = st.cpu_ticks / HZ;
        let user = || {
            users
                .get(&self.uid)
                .cloned()
                .unwrap_or_else(|| self.uid.to_string())
        };
        let tenths = |num: u64, den: u64| {
            let t = num * 10 / den.max(1);
            format!("{}.{}", t / 10, t % 10)
        };
        match col {
            "pid" => self.pid.to_string(),
            "ppid" => st.ppid.to_string(),
            "uid" => self.uid.to_string(),
            // `ps -f` shows the name under UID.
            "user" | "fuid" => user(),
            "comm" => st.comm.clone(),
            "args" | "cmd" | "command" => self.args(),
            "tty" => tty(st.tty_nr),
            "stat" => st.state.to_string(),
            "stime" | "start" => stime(started, clock.now),
            "time" => format!(
                "{:02}:{:02}:{:02}",
                cpu_secs / 3600,
                cpu_secs / 60 % 60,
                cpu_secs % 60
            ),
            "bsdtime" => format!("{}:{:02}", cpu_secs / 60, cpu_secs % 60),
            "etime" => {
                let e = clock.now.saturating_sub(started);
                format!("{:02}:{:02}:{:02}", e / 3600, e / 60 % 60, e % 60)
            }
            "rss" => (st.rss_pages * PAGE_KIB).to_string(),
            "vsz" => (st.vsize_bytes / 1024).to_string(),
            "%cpu" | "pcpu" => tenths(st.cpu_ticks * 100 / HZ, running_secs),
            "%mem" | "pmem" => tenths(st.rss_pages * PAGE_KIB * 100, clock.mem_kib),
            "nlwp" => st.threads.to_string(),
            // ps's C: CPU time over running time, in whole percent.
            _ => ((st.cpu_ticks * 100 / HZ) / running_secs).to_string(),
        }
    }

    /// The command line, or `[comm]` for a process without one.
    fn args(&self) -> String {
        if self.cmdline.is_empty() {
            return format!("[{}]", self.st.comm);
        }
        let parts: Vec<String> = self
            .cmdline
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        parts.join(" ")
    }
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
        // 2 s of CPU, started 10 s after boot, 51200 KiB virtual, 256 pages resident.
        let st = Stat::parse(
            "77 (sleep) S 1 77 77 0 -1 0 0 0 0 0 100 100 0 0 20 0 1 0 1000 52428800 256 0",
        )
        .unwrap();
        let users = users("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n");
        let boot = 1_700_000_000;
        // Now 110 s after boot: 2 s of CPU over 100 s running is 2 %.
        let clock = Clock {
            boot,
            now: boot + 110,
            mem_kib: 10_240,
        };
        let p = Proc {
            pid: 77,
            uid: 65534,
            cmdline: b"sleep\x00300\x00".to_vec(),
            st,
        };
        let row = |cols: &[&str]| -> Vec<String> {
            cols.iter().map(|c| p.column(c, &users, &clock)).collect()
        };
        let ef = columns(&[]).unwrap();
        assert_eq!(
            ef.iter().map(|c| title(c)).collect::<Vec<_>>(),
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(
            row(&ef),
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
        let aux = columns(&["aux".into()]).unwrap();
        assert_eq!(
            aux.iter().map(|c| title(c)).collect::<Vec<_>>(),
            [
                "USER", "PID", "%CPU", "%MEM", "VSZ", "RSS", "TTY", "STAT", "START", "TIME",
                "COMMAND"
            ]
        );
        assert_eq!(
            row(&aux),
            [
                "nobody",
                "77",
                "2.0",
                "10.0",
                "51200",
                "1024",
                "?",
                "S",
                "22:13",
                "0:02",
                "sleep 300"
            ]
        );
        let o = columns(&["-o".into(), "pid,comm,uid,args".into()]).unwrap();
        assert_eq!(
            o.iter().map(|c| title(c)).collect::<Vec<_>>(),
            ["PID", "COMMAND", "UID", "COMMAND"]
        );
        assert_eq!(row(&o), ["77", "sleep", "65534", "sleep 300"]);
        assert_eq!(columns(&["-eopid,ppid".into()]).unwrap(), ["pid", "ppid"]);
        assert_eq!(columns(&["-e".into(), "-f".into()]).unwrap(), ef);
        assert_eq!(columns(&["xua".into()]).unwrap(), aux);
        let bare = Proc {
            cmdline: Vec::new(),
            ..p
        };
        assert_eq!(bare.column("args", &users, &clock), "[sleep]");
        assert_eq!(stime(boot, boot + 2 * 86_400), "Nov14");
        assert_eq!(stime(boot, boot + 400 * 86_400), "2023");
    }

    #[test]
    fn unsupported_ps_options_are_refused_with_what_works() {
        for (args, says) in [
            (vec!["-l"], "top understands"),
            (vec!["ax"], "top understands"),
            (
                vec!["-o", "pid,wchan"],
                "keyword \"wchan\" is not supported",
            ),
            (vec!["-o", "comm"], "PID column"),
            (vec!["-o"], "needs a column list"),
        ] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            let e = columns(&args).unwrap_err();
            assert!(e.contains(says), "{args:?}: {e}");
        }
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
    fn top_lists_this_process_from_the_real_proc() {
        // This test process is no kernel thread: the host's /proc lists it.
        let (titles, rows) = top(&["-ef".into()]).unwrap();
        assert_eq!(titles[..3], ["UID", "PID", "PPID"]);
        let me = std::process::id().to_string();
        assert!(rows.iter().any(|r| r[1] == me), "own pid {me} missing");
        let (titles, rows) = top(&["aux".into()]).unwrap();
        assert_eq!(titles.len(), 11);
        assert!(rows.iter().any(|r| r[1] == me && r.len() == 11));
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
