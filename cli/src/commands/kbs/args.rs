//! `a3s-box kbs ...` arguments.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::args::ProductArg;

#[derive(Debug, Subcommand)]
pub(crate) enum KbsCommand {
    /// Run the key broker service (trustee KBS protocol 0.4.0).
    Serve(ServeArgs),
    /// Attest to a KBS and fetch a resource: auth → attest → resource.
    Get(GetArgs),
    /// Manage resources (secrets) of a KBS.
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Manage the policies of a KBS.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage the reference values of a KBS.
    #[command(subcommand, name = "reference-value")]
    ReferenceValue(ReferenceValueCommand),
    /// Write an admin token (a JWT signed by an Ed25519 or P-256 admin key) to a file, for
    /// `--admin-token-file` here or trustee's `kbs-client`.
    AdminToken(AdminTokenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AdminTokenArgs {
    /// Admin private key: Ed25519 (PKCS#8 PEM, e.g. `openssl genpkey -algorithm ed25519`) or
    /// P-256 (PKCS#8 or SEC1 PEM).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// Lifetime in seconds (the KBS refuses tokens living longer than its
    /// --admin-token-max-lifetime-secs, one day by default).
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub(crate) ttl: u64,
    /// Where to write the token (mode 0600); stdout when absent.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Database: a SQLite file path, or postgres://user@host:port/db to share state between
    /// replicas. Default: A3S_HOME/kbs/kbs.db.
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) db: Option<String>,
    /// Key-encryption key file (created 0600 when missing) under which every stored value is
    /// encrypted. Replicas sharing one PostgreSQL must each be given a copy of the same file.
    /// Default: A3S_HOME/kbs/kek.
    #[arg(long, value_name = "FILE")]
    pub(crate) kek: Option<PathBuf>,
    /// Accept evidence from this A3S home's simulator (always marked simulated).
    #[arg(long)]
    pub(crate) allow_simulated: bool,
    /// Admin public key (Ed25519 or P-256 SubjectPublicKeyInfo PEM); admin requests need a
    /// bearer JWT signed by its private key (`--admin-key` or `--admin-token-file` of the
    /// admin commands, `a3s-box kbs admin-token`, trustee's kbs-client).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure_admin")]
    pub(crate) admin_public_key: Option<PathBuf>,
    /// Longest admin token lifetime accepted (exp - iat), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = a3s_kbs::state::DEFAULT_ADMIN_TOKEN_MAX_SECS)]
    pub(crate) admin_token_max_lifetime_secs: u64,
    /// Allow every admin request without authentication. Local use only.
    #[arg(long)]
    pub(crate) insecure_admin: bool,
    /// TLS certificate chain (PEM); serve HTTPS with --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Session lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) session_timeout_secs: u64,
    /// Attestation token lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    pub(crate) token_lifetime_secs: u64,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Never contact AMD's KDS: VCEKs only from the evidence or the cache.
    #[arg(long)]
    pub(crate) offline: bool,
    /// Threads serving connections, each with its own connections [default: one per CPU].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: Option<u16>,
}

/// Which TEE key the client generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TeeKeyArg {
    /// EC P-256 (the CoCo default).
    P256,
    /// EC P-521.
    P521,
    /// RSA-2048 with RSA-OAEP-256.
    Rsa,
}

#[derive(Debug, Args)]
pub(crate) struct UrlArgs {
    /// KBS base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub(crate) url: String,
    /// CA certificate (PEM) to trust for an https:// URL.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(flatten)]
    pub(crate) url: UrlArgs,
    /// Admin private key (Ed25519 PKCS#8 PEM, or P-256 PKCS#8 or SEC1 PEM). Omit for a KBS
    /// run with --insecure-admin.
    #[arg(long, value_name = "FILE", conflicts_with = "admin_token_file")]
    pub(crate) admin_key: Option<PathBuf>,
    /// A ready-made admin token (`a3s-box kbs admin-token`).
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    #[command(flatten)]
    pub(crate) url: UrlArgs,
    /// Resource path: <repository>/<type>/<tag> (or kbs:///<repository>/<type>/<tag>).
    pub(crate) resource: String,
    /// Attest with this A3S home's simulator instead of SEV-SNP hardware.
    #[arg(long)]
    pub(crate) simulate: bool,
    /// Launch measurement of the simulated guest (48 bytes hex). Simulator only.
    #[arg(long, value_name = "HEX", requires = "simulate")]
    pub(crate) measurement: Option<String>,
    /// Product generation of the simulated chip (default milan). Simulator only.
    #[arg(long, value_enum, requires = "simulate")]
    pub(crate) product: Option<ProductArg>,
    /// TEE key type for the response encryption.
    #[arg(long, value_enum, default_value = "p256")]
    pub(crate) tee_key: TeeKeyArg,
    /// Write the secret here (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ResourceCommand {
    /// Store a resource.
    Set {
        #[command(flatten)]
        admin: AdminArgs,
        /// Resource path: <repository>/<type>/<tag>.
        resource: String,
        /// File holding the secret.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Remove a resource.
    Rm {
        #[command(flatten)]
        admin: AdminArgs,
        /// Resource path: <repository>/<type>/<tag>.
        resource: String,
    },
}

/// Which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PolicyKindArg {
    /// Decides whether evidence is affirming (input: SNP claims, data: reference values).
    Attestation,
    /// Decides whether a token may read a resource.
    Resource,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Set the default policy of a kind, from a Rego file or a built-in.
    Set {
        #[command(flatten)]
        admin: AdminArgs,
        /// Which policy.
        #[arg(long, value_enum)]
        kind: PolicyKindArg,
        /// Rego file (package policy, rule allow).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "builtin",
            required_unless_present = "builtin"
        )]
        file: Option<PathBuf>,
        /// Built-in policy: default, allow-all (both kinds) or deny-all (resource).
        #[arg(long, value_name = "NAME")]
        builtin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReferenceValueCommand {
    /// Set a reference value, e.g. `snp_launch_measurement '["<96 hex>"]'` or
    /// `snp_min_snp 8`.
    Set {
        #[command(flatten)]
        admin: AdminArgs,
        /// Name (snp_launch_measurement, snp_min_bootloader, snp_min_tee, snp_min_snp,
        /// snp_min_microcode, snp_min_fmc, or any name a custom policy reads).
        name: String,
        /// JSON value.
        value: String,
    },
    /// Append a value to a reference-value list (kept once), by default a launch
    /// measurement to `snp_launch_measurement`: the one `a3s-box run` of `--from-image` with
    /// the same flags gets on this host, or the VALUE given.
    Add {
        #[command(flatten)]
        admin: AdminArgs,
        /// The list to append to.
        #[arg(long, default_value = "snp_launch_measurement")]
        name: String,
        /// Predict the value like `a3s-box measure --image IMAGE` (with the run flags below).
        #[arg(
            long,
            value_name = "IMAGE",
            required_unless_present = "value",
            conflicts_with = "value"
        )]
        from_image: Option<String>,
        #[command(flatten)]
        launch: crate::commands::measure::LaunchFlags,
        /// The value (a string, or JSON such as 8).
        value: Option<String>,
    },
    /// Remove a value from a reference-value list.
    Remove {
        #[command(flatten)]
        admin: AdminArgs,
        /// The list to remove from.
        #[arg(long, default_value = "snp_launch_measurement")]
        name: String,
        /// Remove what `a3s-box measure --image IMAGE` (with the run flags below) predicts.
        #[arg(
            long,
            value_name = "IMAGE",
            required_unless_present = "value",
            conflicts_with = "value"
        )]
        from_image: Option<String>,
        #[command(flatten)]
        launch: crate::commands::measure::LaunchFlags,
        /// The value (a string, or JSON such as 8).
        value: Option<String>,
    },
    /// Show every reference value (JSON).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a reference value.
    Get {
        #[command(flatten)]
        admin: AdminArgs,
        /// Name.
        name: String,
    },
}
