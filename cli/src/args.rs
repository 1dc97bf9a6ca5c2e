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

// Parsed once per process: the size of the largest variant (`run`'s flags) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print version information.
    Version(FormatArgs),
    /// Report what this host can do: SEV-SNP devices, KVM kind, QEMU, kernel.
    Info(FormatArgs),
    /// Attest a running TEE box over RA-TLS (`attest BOX`), or inspect, verify and produce
    /// SEV-SNP reports (`attest show|verify|fetch-certs|report`).
    Attest(AttestArgs),
    /// Compute the SEV-SNP launch measurement (same flags and output as `sev-snp-measure --mode snp`).
    Measure(MeasureArgs),
    /// Images: pull, push, images, rmi, tag, save, load, login, logout, image ..., key ...
    #[command(flatten)]
    Images(crate::commands::image::args::ImageCommand),
    /// The simulated AMD secure processor of this A3S home.
    #[command(subcommand)]
    Simulator(SimulatorCommand),
    /// Query the tamper-evident host audit log, or verify its hash chain (`audit verify`).
    Audit(crate::commands::audit::args::AuditArgs),
    /// Box lifecycle: run, create, start, stop, restart, kill, rm, ps, logs, exec, wait, inspect, stats, import.
    #[command(flatten)]
    Box(crate::commands::boxes::args::BoxCommand),
    /// Key broker service (trustee KBS protocol): serve, get secrets, administer.
    #[command(subcommand)]
    Kbs(crate::commands::kbs::args::KbsCommand),
    /// Kubernetes CRI server (kubelet, crictl, critest): serve.
    #[command(subcommand)]
    Cri(crate::commands::cri::CriCommand),
    /// Multi-service projects from a Compose file: up, down, ps, logs, exec, start, stop,
    /// restart, pull, config.
    Compose(crate::commands::compose::ComposeArgs),
    /// List a box's published ports (GUEST/PROTO -> IP:HOST).
    Port(crate::commands::network::PortArgs),
    /// Bridge networks: create, ls, inspect, rm, connect, disconnect.
    #[command(subcommand)]
    Network(crate::commands::network::manage::NetworkCommand),
    /// Named volumes: create, ls, inspect, rm, prune.
    #[command(subcommand)]
    Volume(crate::commands::volume::VolumeCommand),
    /// Copy files or directories between a box and the host (BOX:/path HOSTPATH, or back).
    Cp(crate::commands::cp::CpArgs),
    /// Disk usage and cleanup of this A3S home: df, prune.
    #[command(subcommand)]
    System(crate::commands::system::SystemCommand),
    /// Build an image from a Dockerfile; RUN steps execute in MicroVMs.
    Build(crate::commands::build::BuildArgs),
    /// Boxes as a group: prune.
    #[command(subcommand)]
    Container(crate::commands::system::ContainerCommand),
    /// List what a box changed in its image: A (added), C (changed), D (deleted).
    Diff(crate::commands::layers::DiffArgs),
    /// Write a box's whole filesystem as a tar archive (stdout or -o FILE).
    Export(crate::commands::layers::ExportArgs),
    /// Make a new image from a box's changes.
    Commit(crate::commands::layers::CommitArgs),
    /// Snapshots of a stopped box's writable layer: create, ls, restore, rm.
    #[command(subcommand)]
    Snapshot(crate::commands::layers::SnapshotCommand),
    /// Secrets of running TEE boxes: inject.
    #[command(subcommand)]
    Secret(crate::commands::secret::SecretCommand),
}

#[derive(Debug, Args)]
pub(crate) struct MeasureArgs {
    /// Predict what `a3s-box run` of this image gets on this host, with the run flags below
    /// (--tee-simulate or --tee-enable, --cpus, --kernel-arg, --network).
    #[arg(long, value_name = "IMAGE", conflicts_with_all = ["ovmf", "microvm_firmware", "kernel", "initrd", "append", "vcpus"])]
    pub(crate) image: Option<String>,
    #[command(flatten)]
    pub(crate) launch: crate::commands::measure::LaunchFlags,
    /// Output of --image: text (the measurement) or json (with its inputs).
    #[arg(long, value_enum, default_value_t, requires = "image")]
    pub(crate) format: Format,
    /// Number of guest vCPUs.
    #[arg(long, required_unless_present = "image")]
    pub(crate) vcpus: Option<u32>,
    /// vCPU type name (EPYC-v4, EPYC-Milan, EPYC-Genoa, ...).
    #[arg(long)]
    pub(crate) vcpu_type: Option<String>,
    /// vCPU signature (CPUID(1).EAX), e.g. 0x00a00f11.
    #[arg(long)]
    pub(crate) vcpu_sig: Option<String>,
    /// vCPU family (with --vcpu-model and --vcpu-stepping).
    #[arg(long)]
    pub(crate) vcpu_family: Option<u32>,
    /// vCPU model.
    #[arg(long)]
    pub(crate) vcpu_model: Option<u32>,
    /// vCPU stepping.
    #[arg(long)]
    pub(crate) vcpu_stepping: Option<u32>,
    /// VMM type: QEMU, ec2 or gce.
    #[arg(long, default_value = "QEMU")]
    pub(crate) vmm_type: String,
    /// OVMF firmware image.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["microvm_firmware", "image"]
    )]
    pub(crate) ovmf: Option<PathBuf>,
    /// Measure a simulated microvm launch instead: wrap this firmware (the microvm's qboot.rom)
    /// in A3S Box's stand-in OVMF image and measure that (see docs/simulated-measurement.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["ovmf", "snp_ovmf_hash"])]
    pub(crate) microvm_firmware: Option<PathBuf>,
    /// With --microvm-firmware: also write the stand-in image here (sev-snp-measure accepts it as --ovmf).
    #[arg(long, value_name = "FILE", requires = "microvm_firmware")]
    pub(crate) write_standin: Option<PathBuf>,
    /// Precomputed OVMF hash (hex) to start from instead of hashing the OVMF pages.
    #[arg(long, value_name = "HEX")]
    pub(crate) snp_ovmf_hash: Option<String>,
    /// Kernel measured through the kernel-hashes table.
    #[arg(long, value_name = "FILE")]
    pub(crate) kernel: Option<PathBuf>,
    /// Initrd measured through the kernel-hashes table.
    #[arg(long, value_name = "FILE")]
    pub(crate) initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    pub(crate) append: Option<String>,
    /// SEV features in the VMSA (hex).
    #[arg(long, default_value = "0x1")]
    pub(crate) guest_features: String,
    /// Output format: hex or base64.
    #[arg(long, default_value = "hex", value_parser = ["hex", "base64"])]
    pub(crate) output_format: String,
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

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct AttestArgs {
    #[command(subcommand)]
    pub(crate) command: Option<AttestCommand>,
    #[command(flatten)]
    pub(crate) target: AttestBoxArgs,
}

/// `attest BOX`: RA-TLS to the box's agent, a fresh nonce, the verdict.
///
/// Exit status: 0 verified, 1 evidence refused or policy failed, 2 unusable input.
#[derive(Debug, Args)]
pub(crate) struct AttestBoxArgs {
    /// A running TEE box (name or id).
    #[arg(required_unless_present = "connect")]
    pub(crate) r#box: Option<String>,
    /// The challenge nonce (32 bytes hex; random when absent).
    #[arg(long, value_name = "HEX")]
    pub(crate) nonce: Option<String>,
    /// Appraisal policy (as for `attest verify`); default: the box's recorded launch
    /// measurement, simulated evidence only for a --tee-simulate box.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// Attest the RA-TLS endpoint at HOST:PORT (a box's published port 7443) instead of
    /// through the box's monitor.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) connect: Option<String>,
    #[command(flatten)]
    pub(crate) format: FormatArgs,
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
    /// Produce a report: from the SEV-SNP hardware of this guest, or from the simulator.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// Ask this A3S home's simulated AMD secure processor instead of the hardware.
    #[arg(long)]
    pub(crate) simulate: bool,
    /// REPORT_DATA as hex, up to 64 bytes (zero-padded).
    #[arg(long, value_name = "HEX")]
    pub(crate) report_data: String,
    /// VMPL to request the report at (0-3).
    #[arg(long, default_value_t = 0)]
    pub(crate) vmpl: u32,
    /// Launch measurement of the simulated guest (48 bytes hex). Simulator only.
    #[arg(long, value_name = "HEX")]
    pub(crate) measurement: Option<String>,
    /// HOST_DATA of the simulated guest (32 bytes hex). Simulator only.
    #[arg(long, value_name = "HEX")]
    pub(crate) host_data: Option<String>,
    /// Guest policy of the simulated guest (default 0x30000). Simulator only.
    #[arg(long, value_name = "HEX")]
    pub(crate) guest_policy: Option<String>,
    /// Product generation of the simulated chip (default milan). Simulator only.
    #[arg(long, value_enum)]
    pub(crate) product: Option<ProductArg>,
    /// Where to write the raw 1184-byte report.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: PathBuf,
    /// Also write the VCEK, ASK and ARK (PEM) that sign it.
    #[arg(long, value_name = "FILE")]
    pub(crate) cert_chain_out: Option<PathBuf>,
}

/// An EPYC generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProductArg {
    Milan,
    Genoa,
    Turin,
}

impl From<ProductArg> for a3s_attestation::Product {
    fn from(p: ProductArg) -> Self {
        match p {
            ProductArg::Milan => Self::Milan,
            ProductArg::Genoa => Self::Genoa,
            ProductArg::Turin => Self::Turin,
        }
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimulatorCommand {
    /// Show this home's simulated roots of trust (fingerprints), chips and products.
    Info(FormatArgs),
    /// Serve the simulated certificates at AMD KDS's URL paths.
    #[command(subcommand)]
    Kds(SimulatorKdsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SimulatorKdsCommand {
    /// Serve until interrupted; point verifiers at it with A3S_KDS_URL=http://ADDR.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8990")]
        listen: std::net::SocketAddr,
    },
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
