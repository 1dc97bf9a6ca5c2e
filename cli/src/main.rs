//! The `a3s-box` command: argument parsing, output formatting and exit codes.
//! Business logic lives in the library crates.

mod args;
mod commands;
mod docker;
mod input;
mod list_format;
mod output;
mod template;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

/// How a command ended, mapped to the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    /// Exit 0.
    Success,
    /// The command ran but the answer is "no" (e.g. evidence did not verify): exit 1.
    Failure,
    /// The box workload's own exit code (`run`, `exec`).
    External(u8),
}

/// An error whose exit code is not the default 125 (Docker's "the runtime itself failed").
#[derive(Debug)]
pub(crate) struct ExitCodeError {
    pub(crate) code: u8,
    pub(crate) error: anyhow::Error,
}

impl std::fmt::Display for ExitCodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for ExitCodeError {}

/// Marks `error` as bad input: exit code 2.
pub(crate) fn usage_error(error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(ExitCodeError { code: 2, error })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(ExitStatus::Success) => ExitCode::SUCCESS,
        Ok(ExitStatus::Failure) => ExitCode::from(1),
        Ok(ExitStatus::External(code)) => ExitCode::from(code),
        Err(err) => report_error(&err),
    }
}

fn report_error(err: &anyhow::Error) -> ExitCode {
    // A closed stdout (`a3s-box ... | head`) is not an error worth reporting.
    if err
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    let mut stderr = std::io::stderr().lock();
    let (code, shown) = match err.downcast_ref::<ExitCodeError>() {
        Some(e) => (e.code, &e.error),
        None => (125, err),
    };
    let _ = writeln!(stderr, "error: {shown:#}");
    for hint in commands::hints(shown) {
        let _ = writeln!(stderr, "hint: {hint}");
    }
    ExitCode::from(code)
}
