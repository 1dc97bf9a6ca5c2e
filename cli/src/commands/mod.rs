//! One module per subcommand: each parses nothing, calls library APIs and formats the result.

mod attest;
pub(crate) mod audit;
pub(crate) mod boxes;
pub(crate) mod build;
pub(crate) mod compose;
pub(crate) mod cp;
pub(crate) mod cri;
pub(crate) mod image;
mod info;
pub(crate) mod kbs;
pub(crate) mod layers;
pub(crate) mod measure;
pub(crate) mod network;
mod report;
pub(crate) mod secret;
mod simulator;
pub(crate) mod system;
mod verify;
mod version;
pub(crate) mod volume;

use a3s_runtime::engine::EngineError;

use crate::args::{AttestCommand, Cli, Command, SimulatorCommand, SimulatorKdsCommand};
use crate::ExitStatus;

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitStatus> {
    match cli.command {
        Command::Version(args) => version::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Attest(a) => match a.command {
            Some(AttestCommand::Show(args)) => attest::show(&args),
            Some(AttestCommand::Verify(args)) => verify::run(&args),
            Some(AttestCommand::FetchCerts(args)) => verify::fetch_certs(&args),
            Some(AttestCommand::Report(args)) => report::run(&args),
            None => boxes::tee::attest(&a.target),
        },
        Command::Measure(args) => measure::run(&args),
        Command::Images(cmd) => image::run(cmd),
        Command::Simulator(SimulatorCommand::Info(args)) => simulator::info(&args),
        Command::Audit(args) => audit::run(args),
        Command::Box(cmd) => boxes::run(cmd),
        Command::Compose(a) => compose::run(a),
        Command::Port(a) => network::port(&a),
        Command::Network(c) => network::manage::run(c),
        Command::Volume(cmd) => volume::run(cmd),
        Command::Cp(a) => cp::run(&a),
        Command::Simulator(SimulatorCommand::Kds(SimulatorKdsCommand::Serve { listen })) => {
            simulator::serve_kds(listen)
        }
        Command::Kbs(command) => kbs::run(command),
        Command::Cri(command) => cri::run(command),
        Command::System(c) => system::run(c),
        Command::Container(c) => system::run_container(c),
        Command::Build(a) => build::run(&a),
        Command::Diff(a) => layers::diff(&a),
        Command::Export(a) => layers::export(&a),
        Command::Commit(a) => layers::commit(&a),
        Command::Snapshot(c) => layers::snapshot(&c),
        Command::Secret(c) => secret::run(c),
    }
}

/// An engine error as the CLI reports it: the store's own error when the engine passes one
/// through (so its hint, exit code and `BrokenPipe` checks see it), else the engine's.
pub(crate) fn engine_error(e: EngineError) -> anyhow::Error {
    match e {
        EngineError::Box(x) => x.into(),
        EngineError::State(x) => x.into(),
        EngineError::Volume(x) => x.into(),
        EngineError::Net(x) => x.into(),
        EngineError::Compose(x) => x.into(),
        EngineError::Copy(x) => x.into(),
        EngineError::Disk(x) => x.into(),
        EngineError::Tee(x) => x.into(),
        EngineError::Store(x) => x.into(),
        EngineError::Transfer(x) => x.into(),
        EngineError::Verify(x) => x.into(),
        EngineError::Registry(x) => x.into(),
        EngineError::Io(x) => x.into(),
        EngineError::Layers(x) => x.into(),
        other => other.into(),
    }
}

/// `.engine()?` on engine results.
pub(crate) trait EngineResult<T> {
    fn engine(self) -> anyhow::Result<T>;
}

impl<T> EngineResult<T> for Result<T, EngineError> {
    fn engine(self) -> anyhow::Result<T> {
        self.map_err(engine_error)
    }
}

/// Hints for the user, collected from every error in the chain.
pub(crate) fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    for cause in err.chain() {
        let cause = match cause.downcast_ref::<EngineError>() {
            Some(e) => e.cause(),
            None => cause,
        };
        let hint = if let Some(e) = cause.downcast_ref::<a3s_attestation::kds::KdsError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<a3s_attestation::chain_source::GatherError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<a3s_attestation::measure::MeasureError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<a3s_runtime::audit::AuditError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<a3s_kbs::client::ClientError>() {
            e.hint()
        } else if let Some(e) = cause.downcast_ref::<a3s_build::BuildError>() {
            e.hint()
        } else {
            image::hint(cause)
                .or_else(|| boxes::hint(cause))
                .or_else(|| network::hint(cause))
                .or_else(|| compose::hint(cause))
                .or_else(|| volume::hint(cause))
                .or_else(|| system::hint(cause))
                .or_else(|| layers::hint(cause))
        };
        if let Some(h) = hint {
            if !hints.contains(&h) {
                hints.push(h);
            }
        }
    }
    hints
}

pub(crate) use measure::base64 as measure_base64;
