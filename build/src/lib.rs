//! `a3s-box build`: Dockerfiles whose RUN steps execute inside a MicroVM, never on the host.
//!
//! - [`dockerfile`] parses the supported subset (anything else is an error naming its line);
//! - [`subst`] is Docker's variable substitution;
//! - [`context`] turns COPY and ADD sources (build context minus `.dockerignore`, or another
//!   stage) into layers;
//! - the builder walks the stages, keeps a layer cache, and for RUN asks the runtime engine
//!   ([`a3s_runtime::engine::Engine::run_step`]) to boot the stage's image and hand back the
//!   changes as a layer. Images are written with [`a3s_image::store::Commit`].
//!
//! Front ends stay thin: they fill [`BuildOptions`], implement [`Progress`] and call [`build`].

mod builder;
mod change;
pub mod context;
pub mod dockerfile;
pub mod remote;
pub mod subst;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use a3s_image::pull::PullOptions;
use a3s_image::ImageRef;
use a3s_runtime::engine::{Engine, EngineError, StepStream};

pub use builder::{apply_changes, Built};
pub use change::{ChangeError, ConfigChange};

/// Registry access and signature policy for pulling one base image (credentials are per
/// registry, so the front end answers per reference).
pub type PullOptionsFor = Arc<dyn Fn(&ImageRef) -> Result<PullOptions, String> + Send + Sync>;

/// What to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// Names for the result (`-t`).
    pub tags: Vec<ImageRef>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target STAGE`.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: fetch base images even when present locally.
    pub pull: bool,
    /// Registry access and signature policy for pulled base images.
    pub pull_options: PullOptionsFor,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field("tags", &self.tags)
            .field("build_args", &self.build_args)
            .field("target", &self.target)
            .field("no_cache", &self.no_cache)
            .field("pull", &self.pull)
            .finish_non_exhaustive()
    }
}

/// What a front end hears while a build proceeds.
pub trait Progress {
    /// One progress line (`#3 [build 2/5] RUN make`, `#3 CACHED`, `#3 DONE 4.1s`).
    fn line(&mut self, line: &str);
    /// Output of the RUN step numbered `step`.
    fn output(&mut self, step: usize, stream: StepStream, bytes: &[u8]);
}

/// A build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile.
    #[error(transparent)]
    Parse(#[from] dockerfile::ParseError),
    /// COPY or ADD sources.
    #[error(transparent)]
    Copy(#[from] context::CopyError),
    /// A RUN command exited non-zero.
    #[error("line {line}: {command} failed with exit code {code}")]
    RunFailed {
        /// 1-based line.
        line: usize,
        /// The command.
        command: String,
        /// Its exit code.
        code: i32,
        /// Everything it printed.
        output: String,
    },
    /// ADD of a URL that could not be fetched or is not http(s).
    #[error("line {line}: ADD {url}: {reason}")]
    RemoteAdd {
        /// 1-based line.
        line: usize,
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An `import --change` that is not one instruction import takes.
    #[error("--change {change:?}: {why}")]
    BadChange {
        /// The change as given.
        change: String,
        /// Why it is refused.
        why: String,
    },
    /// `--target` names no stage.
    #[error("--target {0}: no stage of that name (name stages with FROM IMAGE AS NAME)")]
    NoTarget(String),
    /// The Dockerfile is too large.
    #[error("{}: larger than the 4 MiB a Dockerfile may have", .0.display())]
    TooLarge(PathBuf),
    /// The image store.
    #[error(transparent)]
    Store(#[from] a3s_image::StoreError),
    /// Pull settings for a base image could not be made (credentials, policy).
    #[error("pulling {reference}: {message}")]
    PullOptions {
        /// The image.
        reference: String,
        /// Why.
        message: String,
    },
    /// The engine (pulls, RUN boxes).
    #[error(transparent)]
    Engine(EngineError),
    /// i/o on a named path.
    #[error("{}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl BuildError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::RemoteAdd { .. } => Some(
                "the build host fetches ADD URLs itself: check the URL and that this host reaches it, or download the file into the build context and COPY it".into(),
            ),
            Self::RunFailed { .. } => Some("the command's output is above; fix the command or the files it needs and build again".into()),
            Self::Copy(context::CopyError::NotFound(_)) => Some(
                "paths are relative to the build context (the directory given to `a3s-box build`); check .dockerignore".into(),
            ),
            Self::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// Builds `opts.dockerfile` in `opts.context`; the image is stored and tagged with `opts.tags`.
///
/// # Errors
/// [`BuildError`].
pub fn build(
    engine: &Engine,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<Built, BuildError> {
    let built = builder::Builder::new(engine, opts, progress).and_then(builder::Builder::build);
    // The last RUN step's unpacked image was kept for a next step; there is none.
    engine.release_step_tree();
    built
}

/// Checks a `--platform` value (only linux/amd64 can be built).
///
/// # Errors
/// The reason another platform cannot be built.
pub fn check_platform(p: &str) -> Result<(), String> {
    builder::check_platform(p)
}
