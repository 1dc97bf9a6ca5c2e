//! Compose (issue 19): a truthful subset of the Compose Specification read from a file
//! ([`model`], with line numbers from [`yaml`]) and planned into engine requests ([`plan`]).
//! What `up`, `down` and the rest *do* is in the engine (`engine::compose`), over the same
//! operations `run`, `stop` and `rm` use.

pub mod model;
pub mod plan;
pub mod render;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use model::{load, Condition, Project, Service};
pub use plan::{box_name, image_name, plan, Plan, PlannedBox};

/// The file names `compose` looks for, in Docker Compose's order.
pub const FILE_NAMES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Reads the project of compose file `file` (at most [`yaml::MAX_FILE_BYTES`]); its
/// directory is the project directory.
///
/// # Errors
/// [`ComposeError`] for a missing, oversized or invalid file.
pub fn open(file: &Path, name: Option<&str>) -> Result<Project, ComposeError> {
    let io = |e: std::io::Error| ComposeError::Read {
        path: file.to_path_buf(),
        source: e,
    };
    let meta = fs_err::metadata(file).map_err(io)?;
    if meta.len() > yaml::MAX_FILE_BYTES {
        return Err(ComposeError::TooLarge(file.to_path_buf()));
    }
    let text = crate::bounded::read_to_string(file, yaml::MAX_FILE_BYTES).map_err(io)?;
    let dir = std::path::absolute(file)
        .map_err(io)?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    load(&text, &dir, name).map_err(|e| e.in_file(file))
}

/// The compose file in `dir` (the first of [`FILE_NAMES`] that exists).
///
/// # Errors
/// [`ComposeError::NoFile`].
pub fn find(dir: &Path) -> Result<PathBuf, ComposeError> {
    FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ComposeError::NoFile(dir.to_path_buf()))
}

/// A compose file was refused or could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// No compose file.
    #[error("no compose file in {} (looked for {})", .0.display(), FILE_NAMES.join(", "))]
    NoFile(PathBuf),
    /// Reading it failed.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Larger than the limit.
    #[error("{} exceeds 1048576 bytes (1 MiB), the limit for a compose file", .0.display())]
    TooLarge(PathBuf),
    /// Not valid YAML.
    #[error("line {line}: {message}")]
    Yaml {
        /// Line.
        line: usize,
        /// What the parser said.
        message: String,
    },
    /// A key outside the supported subset.
    #[error("line {line}: {key} is not supported")]
    UnknownKey {
        /// Its path (`services.web.build`).
        key: String,
        /// Line.
        line: usize,
    },
    /// A value that is not valid.
    #[error("line {line}: {path}: {why}")]
    Invalid {
        /// Its path.
        path: String,
        /// Line.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// An error inside file `file`.
    #[error("{}", file.display())]
    InFile {
        /// The compose file.
        file: PathBuf,
        /// The error.
        #[source]
        source: Box<Self>,
    },
    /// An env file.
    #[error("env_file {}: {why}", path.display())]
    EnvFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A bad project name.
    #[error("project name {0:?} must be lowercase letters, digits, '_' and '-', starting with a letter or digit")]
    ProjectName(String),
    /// `depends_on` goes round.
    #[error("depends_on forms a cycle among: {0}")]
    Cycle(String),
    /// A service setting the runtime cannot carry out.
    #[error("service {service}: {key}: {why}")]
    Unsupported {
        /// The service.
        service: String,
        /// The key.
        key: String,
        /// Why.
        why: String,
    },
    /// A dependency did not reach its condition.
    #[error("service {service} depends on {dependency}, which {why}")]
    Dependency {
        /// The waiting service.
        service: String,
        /// The dependency.
        dependency: String,
        /// What happened to it.
        why: String,
    },
    /// No such service in the file.
    #[error("no service {0:?} in the compose file")]
    NoService(String),
}

impl ComposeError {
    fn in_file(self, file: &Path) -> Self {
        Self::InFile {
            file: file.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::InFile { source, .. } => source.hint(),
            Self::NoFile(_) => Some("pass the file with -f FILE, or run from the project directory".into()),
            Self::UnknownKey { .. } => Some(
                "a3s-box compose supports image, build, command, entrypoint, environment, env_file, ports, volumes, networks, depends_on, healthcheck, restart, hostname, user, working_dir, deploy.resources.limits, secrets and x-a3s; remove the key or move it under an x- extension".into(),
            ),
            Self::ProjectName(_) => Some("set a valid top-level name: or pass -p NAME".into()),
            _ => None,
        }
    }
}
