//! `a3s-box audit` arguments.

use clap::{Args, Subcommand};

use crate::args::FormatArgs;

/// Query the host audit log, or verify its hash chain.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AuditCommand>,
    #[command(flatten)]
    pub(crate) query: QueryArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Verify the hash chain across every rotated file; exit 1 and name the first broken line.
    Verify(VerifyArgs),
    /// Print a signed checkpoint (C2SP signed note: entry count and Merkle root) of the log.
    /// Store it off this host; `audit verify --checkpoint FILE` then detects any later
    /// truncation or deletion of the entries it covers.
    Checkpoint,
}

/// Arguments of `audit verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Also prove that the log still holds every entry of this checkpoint (from
    /// `audit checkpoint`), unchanged.
    #[arg(long, value_name = "FILE")]
    pub(crate) checkpoint: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}

/// Filters for `a3s-box audit` (events print oldest first, newest last).
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Only this action (`box.start`), or a family (`box.*`).
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Only events about this box (id or id prefix).
    #[arg(long = "box", value_name = "BOX")]
    pub(crate) box_id: Option<String>,
    /// Only events with this outcome: success, failure or denied.
    #[arg(long)]
    pub(crate) outcome: Option<String>,
    /// Only events at or after this time (RFC 3339, or a duration ago: 30s, 10m, 2h, 7d).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Only events at or before this time (RFC 3339, or a duration ago).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// Only the newest N matching events.
    #[arg(short = 'n', long = "tail", value_name = "N")]
    pub(crate) last: Option<usize>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}
