//! `top` inside the VM: the workload's processes ([`crate::procs`]) in the columns of the `ps`
//! options Docker users pass (`-ef`, `aux`, `-o LIST`); other options are refused.

use std::collections::HashMap;
use std::path::Path;

use crate::procs::{boot_time, is_workload, meminfo_kib, pids, read, read_bytes, Stat, HZ};

/// `ps aux` columns.
const AUX: [&str; 11] = [
    "user", "pid", "%cpu", "%mem", "vsz", "rss", "tty", "stat", "start", "bsdtime", "command",
];
/// `ps -o` keywords `top` understands, as procps spells them.
const KEYWORDS: &str = "pid, ppid, uid, user, comm, args, cmd, command, tty, stat, stime, start, time, etime, rss, vsz, %cpu, pcpu, %mem, pmem, nlwp, c";
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(tty(34816), "pts/0");
        assert_eq!(tty(0), "?");
        assert_eq!(tty((4 << 8) | 64), "ttyS0");
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
}
