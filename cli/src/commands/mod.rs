//! One module per subcommand: each parses nothing, calls library APIs and formats the result.

mod attest;
mod info;
mod version;

use crate::args::{AttestCommand, Cli, Command};
use crate::ExitStatus;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Version(args) => version::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Attest(AttestCommand::Show(args)) => attest::show(&args),
    }
}

/// Hints for the user, collected from every error in the chain.
pub(crate) fn hints(err: &anyhow::Error) -> Vec<String> {
    let _ = err;
    Vec::new()
}
