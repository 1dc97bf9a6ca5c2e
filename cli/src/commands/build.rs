//! `build`: turns flags into [`a3s_build::BuildOptions`], prints progress; the build itself is
//! `a3s_build::build` (RUN steps through the runtime engine).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use a3s_build::{BuildOptions, Progress};
use a3s_image::pull::PullOptions;
use a3s_runtime::engine::{Engine, StepStream};
use clap::{Args, ValueEnum};

use crate::commands::image::{home, parse_ref};
use crate::{usage_error, ExitStatus};

/// `a3s-box build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Name (and tag) the result, e.g. app:1 (repeatable).
    #[arg(long, short = 't', value_name = "NAME[:TAG]")]
    pub(crate) tag: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// A build argument for ARG (repeatable); `K` alone takes the value of the environment
    /// variable K.
    #[arg(long, value_name = "K=V")]
    pub(crate) build_arg: Vec<String>,
    /// Build up to this stage (FROM ... AS STAGE).
    #[arg(long, value_name = "STAGE")]
    pub(crate) target: Option<String>,
    /// Run every step again instead of using cached layers.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Pull base images even when they are present locally.
    #[arg(long)]
    pub(crate) pull: bool,
    /// Progress output (both print one line per step event; plain is for logs).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub(crate) progress: ProgressMode,
    /// Target platform: only linux/amd64.
    #[arg(long, value_name = "PLATFORM")]
    pub(crate) platform: Option<String>,
    /// Print only the image digest.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Allow plain HTTP to this registry (host[:port]) for base images.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,
    /// The build context directory.
    pub(crate) context: PathBuf,
}

/// `--progress`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ProgressMode {
    /// Same as plain (a3s-box has no interactive progress display for builds yet).
    Auto,
    /// One line per event, step output prefixed by its step number.
    Plain,
}

pub(crate) fn run(a: &BuildArgs) -> anyhow::Result<ExitStatus> {
    if let Some(p) = &a.platform {
        a3s_build::check_platform(p)
            .map_err(|m| usage_error(anyhow::anyhow!("--platform: {m}")))?;
    }
    if !a.context.is_dir() {
        return Err(usage_error(anyhow::anyhow!(
            "build context {} is not a directory",
            a.context.display()
        )));
    }
    let dockerfile = a
        .file
        .clone()
        .unwrap_or_else(|| a.context.join("Dockerfile"));
    if !dockerfile.is_file() {
        return Err(usage_error(anyhow::anyhow!(
            "no Dockerfile at {} (name one with -f FILE)",
            dockerfile.display()
        )));
    }
    let mut build_args = BTreeMap::new();
    for kv in &a.build_arg {
        let (k, v) = match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => match std::env::var(kv) {
                Ok(v) => (kv.clone(), v),
                Err(_) => continue, // Docker: an unset variable is left out
            },
        };
        if k.is_empty() {
            return Err(usage_error(anyhow::anyhow!(
                "--build-arg {kv:?}: expected K=V"
            )));
        }
        build_args.insert(k, v);
    }
    let mut tags = Vec::new();
    for t in &a.tag {
        tags.push(parse_ref(t)?);
    }
    let insecure = a.insecure_registries.clone();
    let creds = crate::commands::image::credentials()?;
    let policy = crate::commands::image::signature_policy(None)?;
    let pull_options: a3s_build::PullOptionsFor = Arc::new(move |r| {
        Ok(PullOptions {
            registry: a3s_image::registry::RegistryOptions {
                insecure_registries: insecure.clone(),
                credentials: creds.get(r.registry()).map_err(|e| e.to_string())?,
                mirrors: Vec::new(),
            },
            policy: policy.clone(),
            verify_keys: Vec::new(),
            skip_unpack: false,
        })
    });
    let opts = BuildOptions {
        context: a.context.clone(),
        dockerfile,
        tags,
        build_args,
        target: a.target.clone(),
        no_cache: a.no_cache,
        pull: a.pull,
        pull_options,
    };
    let engine = Engine::open(&home()?);
    let mut out = Lines { quiet: a.quiet };
    let built = a3s_build::build(&engine, &opts, &mut out).map_err(|e| match e {
        // The command's output was streamed above; exit with its code, as `run` does.
        a3s_build::BuildError::RunFailed {
            code, ref output, ..
        } => {
            if a.quiet {
                // Progress was silenced: the failing command's output still has to be seen.
                eprint!("{output}");
            }
            anyhow::Error::new(crate::ExitCodeError {
                code: u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1),
                error: e.into(),
            })
        }
        other => other.into(),
    })?;
    if !a.quiet {
        eprintln!(
            "built {} ({} of {} steps cached)",
            built.digest, built.cached, built.steps
        );
        for t in &opts.tags {
            eprintln!("tagged {t}");
        }
    }
    println!("{}", built.digest);
    Ok(ExitStatus::Success)
}

/// Progress on stderr (data, the digest, goes to stdout).
struct Lines {
    quiet: bool,
}

impl Progress for Lines {
    fn line(&mut self, line: &str) {
        if !self.quiet {
            eprintln!("{line}");
        }
    }

    fn output(&mut self, step: usize, _stream: StepStream, bytes: &[u8]) {
        if self.quiet {
            return;
        }
        let mut err = std::io::stderr().lock();
        for l in String::from_utf8_lossy(bytes).lines() {
            let _ = writeln!(err, "#{step} {l}");
        }
    }
}
