//! `stats`: Docker's columns (CPU %, MEM USAGE / LIMIT, MEM %, NET I/O, BLOCK I/O, PIDS) from
//! each guest's kernel, refreshed every second until Ctrl-C, or once with `--no-stream`.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use a3s_runtime::engine::{BoxStats, Engine};

use super::args::StatsArgs;
use crate::commands::EngineResult;
use crate::list_format::{print_rows, ListFormat};
use crate::{output, ExitStatus};

/// One box's row: Docker's `--format json` fields (strings as Docker prints them), then the
/// numbers behind them and the host-side figures `stats` showed before.
#[derive(Serialize)]
struct StatsView<'a> {
    #[serde(rename = "ID")]
    id_docker: &'a str,
    #[serde(rename = "Container")]
    container: &'a str,
    #[serde(rename = "Name")]
    name_docker: &'a str,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    #[serde(rename = "MemUsage")]
    mem_usage: String,
    #[serde(rename = "MemPerc")]
    mem_perc: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "PIDs")]
    pids_docker: String,
    /// Memory in use, bytes: the workload cgroup's with `--memory`, else the guest's
    /// `MemTotal - MemAvailable`.
    mem_used_bytes: Option<u64>,
    /// `--memory`, else the guest's `MemTotal`, bytes.
    mem_limit_bytes: Option<u64>,
    cpu_percent: Option<f64>,
    pids: Option<u64>,
    net_rx_bytes: Option<u64>,
    net_tx_bytes: Option<u64>,
    block_read_bytes: Option<u64>,
    block_write_bytes: Option<u64>,
    #[serde(flatten)]
    host: &'a BoxStats,
}

fn view(s: &BoxStats) -> StatsView<'_> {
    let g = s.guest.as_ref();
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "--".into());
    StatsView {
        id_docker: &s.id,
        container: &s.name,
        name_docker: &s.name,
        cpu_perc: or_dash(s.cpu_percent.map(|c| format!("{c:.2}%"))),
        mem_usage: or_dash(g.map(|g| {
            format!(
                "{} / {}",
                output::human(g.mem_used_bytes),
                output::human(g.mem_limit_bytes)
            )
        })),
        mem_perc: or_dash(g.filter(|g| g.mem_limit_bytes > 0).map(|g| {
            format!(
                "{:.2}%",
                g.mem_used_bytes as f64 / g.mem_limit_bytes as f64 * 100.0
            )
        })),
        net_io: or_dash(g.map(|g| format!("{} / {}", si(g.net_rx_bytes), si(g.net_tx_bytes)))),
        block_io: or_dash(
            g.map(|g| format!("{} / {}", si(g.block_read_bytes), si(g.block_write_bytes))),
        ),
        pids_docker: or_dash(g.map(|g| g.pids.to_string())),
        mem_used_bytes: g.map(|g| g.mem_used_bytes),
        mem_limit_bytes: g.map(|g| g.mem_limit_bytes),
        cpu_percent: s.cpu_percent,
        pids: g.map(|g| g.pids),
        net_rx_bytes: g.map(|g| g.net_rx_bytes),
        net_tx_bytes: g.map(|g| g.net_tx_bytes),
        block_read_bytes: g.map(|g| g.block_read_bytes),
        block_write_bytes: g.map(|g| g.block_write_bytes),
        host: s,
    }
}

/// Docker's decimal units for I/O, four significant digits (`1.2kB`, `3.457MB`, `648B`).
fn si(bytes: u64) -> String {
    let b = bytes as f64;
    for (unit, size) in [("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] {
        if b >= size {
            let v = b / size;
            let whole_digits = format!("{:.0}", v.trunc()).len();
            let mut n = format!("{v:.prec$}", prec = 4usize.saturating_sub(whole_digits));
            if n.contains('.') {
                n = n.trim_end_matches('0').trim_end_matches('.').to_owned();
            }
            return format!("{n}{unit}");
        }
    }
    format!("{bytes}B")
}

pub(super) fn stats(engine: &Engine, a: &StatsArgs) -> anyhow::Result<ExitStatus> {
    let tty = std::io::stdout().is_terminal();
    loop {
        let samples = engine.stats(&a.boxes).engine()?;
        let views: Vec<StatsView<'_>> = samples.iter().map(view).collect();
        match &a.format.format {
            // Docker's: one object per box per line (each sample's lines when streaming), or a
            // template over that object.
            format @ (ListFormat::Json | ListFormat::Template { .. }) => {
                if tty && !a.no_stream && matches!(format, ListFormat::Template { .. }) {
                    print!("\x1b[2J\x1b[H");
                }
                let rows = views
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<Vec<_>, _>>()?;
                print_rows(format, &rows, HEADERS)?;
            }
            ListFormat::Table => {
                let mut out = std::io::stdout().lock();
                if tty && !a.no_stream {
                    // Docker redraws in place.
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                write!(out, "{}", table(&views))?;
            }
        }
        std::io::stdout().flush()?;
        if a.no_stream {
            return Ok(ExitStatus::Success);
        }
        // The next sample itself takes the engine's interval (about one per second), unless
        // there was nothing to sample.
        if samples.is_empty() {
            std::thread::sleep(a3s_runtime::engine::STATS_INTERVAL);
        }
    }
}

/// The headers of `--format 'table {{.Name}}\t{{.MemUsage}}'`, as Docker's.
const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

fn table(views: &[StatsView<'_>]) -> String {
    let mut s = format!(
        "{:<12}   {:<20}   {:<7}   {:<21}   {:<7}   {:<15}   {:<15}   {}\n",
        "BOX ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"
    );
    for v in views {
        s.push_str(&format!(
            "{:<12}   {:<20}   {:<7}   {:<21}   {:<7}   {:<15}   {:<15}   {}\n",
            &v.id_docker[..v.id_docker.len().min(12)],
            v.name_docker,
            v.cpu_perc,
            v.mem_usage,
            v.mem_perc,
            v.net_io,
            v.block_io,
            v.pids_docker
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_figures_use_dockers_decimal_units() {
        assert_eq!(si(648), "648B");
        assert_eq!(si(1_200), "1.2kB");
        assert_eq!(si(3_456_789), "3.457MB");
        assert_eq!(si(2_000_000_000), "2GB");
        assert_eq!(si(123_456), "123.5kB");
    }

    #[test]
    fn a_paused_box_shows_dashes_and_a_running_one_guest_memory() {
        let mut s = BoxStats {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            qemu_pid: 1,
            cpu_seconds: 1.0,
            rss_kib: 600_000,
            vcpus: 1,
            mem_mib: 512,
            paused: true,
            guest: None,
            cpu_percent: None,
        };
        let v = view(&s);
        assert_eq!((v.mem_usage.as_str(), v.cpu_perc.as_str()), ("--", "--"));
        s.paused = false;
        s.cpu_percent = Some(12.345);
        s.guest = Some(a3s_vmm::proto::GuestStats {
            mem_used_bytes: 30 << 20,
            mem_limit_bytes: 480 << 20,
            pids: 2,
            ..Default::default()
        });
        let v = view(&s);
        assert_eq!(v.mem_usage, "30.0MiB / 480.0MiB");
        assert_eq!(v.mem_perc, "6.25%");
        assert_eq!(v.cpu_perc, "12.35%");
        assert_eq!(v.pids_docker, "2");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["MemUsage"], "30.0MiB / 480.0MiB");
        assert_eq!(json["mem_used_bytes"], 30 << 20);
        assert_eq!(json["rss_kib"], 600_000);
    }
}
