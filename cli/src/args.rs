//! Command-line arguments. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A3S Box runs each OCI workload in its own MicroVM and proves, with AMD SEV-SNP evidence,
/// what runs inside. Without SEV-SNP hardware, a simulator produces the same evidence, always
/// labelled simulated.
#[derive(Debug, Parser)]
#[command(
    name = "a3s-box",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print version information.
    Version(FormatArgs),
    /// Report what this host can do: SEV-SNP devices, KVM kind, QEMU, kernel.
    Info(FormatArgs),
    /// Inspect, verify and produce SEV-SNP attestation reports.
    #[command(subcommand)]
    Attest(AttestCommand),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// JSON (a stable contract: field names do not change).
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AttestCommand {
    /// Decode a report without verifying it (like `snpguest display report`).
    Show(ShowArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The report: 1184 raw bytes, hex text, or trustee SNP evidence JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: PathBuf,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}
