//! Arguments of the image commands (flattened into the top-level command list).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::args::Format;

#[derive(Debug, Subcommand)]
pub(crate) enum ImageCommand {
    /// Download an image from a registry (index → linux/amd64), verifying every digest.
    Pull(PullArgs),
    /// Upload a local image to a registry, preserving its digest.
    Push(PushArgs),
    /// List local images.
    Images(ListArgs),
    /// Remove local image names; unreferenced content is deleted.
    Rmi(RmiArgs),
    /// Give a local image another name.
    Tag(TagArgs),
    /// Write images to a tarball (OCI layout or docker-archive).
    Save(SaveArgs),
    /// Load images from a tarball written by `save`, `docker save` or skopeo.
    Load(LoadArgs),
    /// Save credentials for a registry (file mode 0600, never printed).
    Login(LoginArgs),
    /// Forget the credentials for a registry.
    Logout(LogoutArgs),
    /// Manage local images; sign and verify them.
    #[command(subcommand)]
    Image(ImageSub),
    /// Cosign-compatible signing keys.
    #[command(subcommand)]
    Key(KeySub),
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImageSub {
    /// List local images.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Download an image (same as `a3s-box pull`).
    Pull(PullArgs),
    /// Upload an image (same as `a3s-box push`).
    Push(PushArgs),
    /// Remove local image names (same as `a3s-box rmi`).
    Rm(RmiArgs),
    /// Name an image (same as `a3s-box tag`).
    Tag(TagArgs),
    /// Show images' manifests, configs and layers, with Docker's `image inspect` fields
    /// beside ours.
    Inspect(ImageInspectArgs),
    /// Show how an image's layers were built.
    History(InspectArgs),
    /// Write images to a tarball (same as `a3s-box save`).
    Save(SaveArgs),
    /// Load images from a tarball (same as `a3s-box load`).
    Load(LoadArgs),
    /// Delete blobs, unpacked root filesystems and filesystem images no name and no box
    /// refers to, and their cache entries.
    Prune(FormatOnly),
    /// Sign an image in its registry with a cosign key (legacy `sha256-<digest>.sig` tag).
    Sign(SignArgs),
    /// Verify an image's cosign signatures in its registry against a public key.
    ///
    /// Exit status: 0 verified, 1 no valid signature, 125 the check could not run.
    Verify(VerifyImageArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeySub {
    /// Generate an ECDSA P-256 key pair in cosign's format: cosign.key (encrypted with
    /// COSIGN_PASSWORD or a prompted password) and cosign.pub.
    Generate(KeyGenArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct RegistryArgs {
    /// Allow plain HTTP to this registry (host[:port]); loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image, e.g. busybox, 127.0.0.1:5000/app:1, app@sha256:<hex>.
    pub(crate) image: String,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Require a valid cosign signature by this public key for the digest the image resolves to
    /// (repeatable: any of the keys).
    #[arg(long, value_name = "FILE")]
    pub(crate) verify_key: Vec<PathBuf>,
    /// Signature policy file (default: $A3S_HOME/policy/signatures.toml if present).
    #[arg(long, value_name = "FILE", env = "A3S_SIGNATURE_POLICY")]
    pub(crate) signature_policy: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The local image to push; its name says where to.
    pub(crate) image: String,
    /// Push under this name instead.
    #[arg(long, value_name = "IMAGE")]
    pub(crate) to: Option<String>,
    /// No progress output.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Print image ids (short digests) only.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Show all images (this store keeps no intermediate images: the same as without -a).
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Filter (KEY=VALUE: reference=GLOB, label=KEY[=VALUE], dangling=true|false).
    #[arg(short, long, value_name = "FILTER")]
    pub(crate) filter: Vec<String>,
    /// Show full image ids.
    #[arg(long)]
    pub(crate) no_trunc: bool,
    #[command(flatten)]
    pub(crate) format: crate::list_format::ListFormatArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FormatOnly {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct RmiArgs {
    /// Untag even the last name of an image boxes use (its content stays until no box uses it).
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Images to remove.
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// Existing local image.
    pub(crate) source: String,
    /// New name.
    pub(crate) target: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Local image.
    pub(crate) image: String,
    /// Output format.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
}

/// `image inspect`: Docker's `docker image inspect [-f TEMPLATE] IMAGE...`.
#[derive(Debug, Args)]
pub(crate) struct ImageInspectArgs {
    /// `json` (the default: an array with one object per image, as Docker's), `text`
    /// (aligned rows), or a Go template evaluated per image, e.g. '{{.Config.Env}}' or
    /// '{{json .RootFS.Layers}}'.
    #[arg(short = 'f', long, value_name = "FORMAT")]
    pub(crate) format: Option<String>,
    /// Local images (name[:tag] or name@digest).
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<String>,
}

/// Tarball format for `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub(crate) enum ArchiveKind {
    /// OCI image layout (digests preserved).
    #[default]
    Oci,
    /// `docker save` format (uncompressed layers).
    DockerArchive,
}

#[derive(Debug, Args)]
pub(crate) struct SaveArgs {
    /// Images to save.
    #[arg(required = true)]
    pub(crate) images: Vec<String>,
    /// Output file (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Tarball format.
    #[arg(long = "archive-format", value_enum, default_value_t)]
    pub(crate) archive_format: ArchiveKind,
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Input tarball (plain, gzip or zstd).
    #[arg(long, short, value_name = "FILE")]
    pub(crate) input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}

#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// Registry host[:port].
    pub(crate) registry: String,
    /// User name.
    #[arg(long, short)]
    pub(crate) username: String,
    /// Read the password from stdin (otherwise it is prompted for).
    #[arg(long)]
    pub(crate) password_stdin: bool,
    #[command(flatten)]
    pub(crate) registry_opts: RegistryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// Registry host[:port].
    pub(crate) registry: String,
}

#[derive(Debug, Args)]
pub(crate) struct KeyGenArgs {
    /// Directory to write cosign.key and cosign.pub into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub(crate) out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// Private key (cosign.key); its password comes from COSIGN_PASSWORD or a prompt.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The image in its registry.
    pub(crate) image: String,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyImageArgs {
    /// Public key (cosign.pub).
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The image in its registry.
    pub(crate) image: String,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub(crate) format: Format,
}
