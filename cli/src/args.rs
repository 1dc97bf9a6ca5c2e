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
    /// Verify a report: AMD certificate chain, VEK extensions, signature, then the appraisal policy.
    ///
    /// Exit status: 0 verified, 1 evidence invalid or policy failed (stderr names the check),
    /// 2 unusable input (unreadable files, missing certificates).
    Verify(VerifyArgs),
    /// Fetch a report's VCEK, the ASK/ARK chain and the CRL from AMD KDS into the cache.
    FetchCerts(FetchCertsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The report: 1184 raw bytes, hex text, or trustee SNP evidence JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: PathBuf,
    /// The VCEK or VLEK (DER or PEM). Default: from the evidence, else the KDS cache or KDS.
    #[arg(long, value_name = "FILE")]
    pub(crate) vcek: Option<PathBuf>,
    /// ASK (or ASVK) and ARK, DER or PEM. Default: the built-in AMD certificates.
    #[arg(long, value_name = "FILE")]
    pub(crate) cert_chain: Option<PathBuf>,
    /// Appraisal policy (TOML or JSON). Default: no debug, no migration agent, VMPL 0.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Check certificate validity as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    pub(crate) at: Option<String>,
    /// Use only cached certificates; never contact KDS.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Accept evidence from this A3S home's simulator (always reported as simulated).
    #[arg(long)]
    pub(crate) allow_simulated: bool,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FetchCertsArgs {
    /// The report whose VCEK to fetch.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: PathBuf,
    /// Also copy the certificates here (vcek.der, cert_chain.pem, crl.der).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The report: 1184 raw bytes, hex text, or trustee SNP evidence JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: PathBuf,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
}
