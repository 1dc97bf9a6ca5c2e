//! `a3s-box compose ...`: reads the compose file, plans it, and hands each operation to the
//! engine (`up`/`down`/`ps`) or to the single-box commands it is made of (`exec`, `pull`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use a3s_runtime::compose::{self, ComposeError, Plan};
use a3s_runtime::engine::{ComposeEvents, Engine, LogRequest, Recreate};
use a3s_runtime::A3sHome;

use crate::args::{Format, FormatArgs};
use crate::commands::EngineResult;
use crate::{output, usage_error, ExitStatus};

/// `compose` and its global flags.
#[derive(Debug, Args)]
pub(crate) struct ComposeArgs {
    /// Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml in the current directory).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Project name (default: the file's top-level name, else its directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub(crate) project: Option<String>,
    #[command(subcommand)]
    pub(crate) command: ComposeCommand,
}

/// The compose subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ComposeCommand {
    /// Create and start the services in dependency order.
    Up(UpArgs),
    /// Remove the services' boxes and the networks (and with -v the volumes) compose made.
    Down(DownArgs),
    /// List the services' boxes.
    Ps(FormatArgs),
    /// Print services' output, each line prefixed with its service.
    Logs(ComposeLogsArgs),
    /// Run a command in a service's box.
    Exec(ComposeExecArgs),
    /// Start services' stopped boxes.
    Start(ServicesArgs),
    /// Stop services' boxes.
    Stop(ComposeStopArgs),
    /// Stop and start services' boxes.
    Restart(ComposeStopArgs),
    /// Pull the services' images.
    Pull(ServicesArgs),
    /// Build the images of services with a `build` section (as `a3s-box build` does).
    Build(ServicesArgs),
    /// Check the file and print the project as A3S Box will run it, in the compose file's
    /// shape (names resolved, paths absolute, env_file merged), as `docker compose config`.
    Config(ConfigArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ConfigFormat::Yaml)]
    pub(crate) format: ConfigFormat,
}

/// `compose config --format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ConfigFormat {
    /// YAML, as `docker compose config` prints it.
    Yaml,
    /// The same document as JSON.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Return once the services are started instead of following their output.
    #[arg(short = 'd', long)]
    pub(crate) detach: bool,
    /// Build the images of services with a `build` section before starting (without it, only
    /// those whose image is missing are built).
    #[arg(long)]
    pub(crate) build: bool,
    /// Recreate every service's box, changed or not.
    #[arg(long, conflicts_with = "no_recreate")]
    pub(crate) force_recreate: bool,
    /// Keep existing boxes even when their service changed.
    #[arg(long)]
    pub(crate) no_recreate: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// Also remove the named volumes of the file's top-level volumes.
    #[arg(short = 'v', long)]
    pub(crate) volumes: bool,
    /// Also remove boxes of services no longer in the file.
    #[arg(long)]
    pub(crate) remove_orphans: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ServicesArgs {
    /// Services (default: all).
    pub(crate) services: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ComposeStopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub(crate) time: u64,
    /// Services (default: all).
    pub(crate) services: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ComposeLogsArgs {
    /// Keep printing new output until the boxes stop.
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Services (default: all).
    pub(crate) services: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ComposeExecArgs {
    /// The service.
    pub(crate) service: String,
    /// Command and arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

/// Prints each step on stderr, Docker Compose style.
struct Steps;

impl ComposeEvents for Steps {
    fn step(&mut self, object: &str, what: &str) {
        eprintln!(" {object}  {what}");
    }
}

pub(crate) fn run(a: ComposeArgs) -> anyhow::Result<ExitStatus> {
    let file = match &a.file {
        Some(f) => f.clone(),
        None => compose::find(&std::env::current_dir()?).map_err(|e| usage_error(e.into()))?,
    };
    let project = compose::open(&file, a.project.as_deref()).map_err(|e| usage_error(e.into()))?;
    let plan = compose::plan(&project).map_err(|e| usage_error(e.into()))?;
    let home = A3sHome::from_env()?;
    let engine = Engine::open(&home);
    match a.command {
        ComposeCommand::Up(u) => {
            let status = build_images(&engine, &plan, &[], !u.build)?;
            if status != ExitStatus::Success {
                return Ok(status);
            }
            let recreate = if u.force_recreate {
                Recreate::Always
            } else if u.no_recreate {
                Recreate::Never
            } else {
                Recreate::Changed
            };
            let gate = crate::commands::image::signature_policy(None)?;
            let gate = gate.requires_signatures().then_some(gate);
            engine
                .compose_up(&plan, gate.as_ref(), recreate, &mut Steps)
                .engine()?;
            if !u.detach {
                follow_logs(&engine, &plan, &[], true)?;
            }
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Down(d) => {
            engine
                .compose_down(&plan, d.volumes, d.remove_orphans, &mut Steps)
                .engine()?;
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Ps(f) => ps(&engine, &plan, f.format),
        ComposeCommand::Logs(l) => {
            follow_logs(&engine, &plan, &l.services, l.follow)?;
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Exec(e) => {
            let b = engine.compose_box(&plan, &e.service).engine()?;
            let mut argv = vec!["a3s-box".to_owned(), "exec".into(), b.name.clone()];
            argv.extend(e.command);
            delegate(argv)
        }
        ComposeCommand::Start(s) => {
            for b in selected(&engine, &plan, &s.services)? {
                let rec = engine.start(&b).engine()?;
                output::line(&rec.name)?;
            }
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Stop(s) => {
            // Dependents first.
            for b in selected(&engine, &plan, &s.services)?.iter().rev() {
                let rec = engine.stop(b, Duration::from_secs(s.time)).engine()?;
                output::line(&rec.name)?;
            }
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Restart(s) => {
            for b in selected(&engine, &plan, &s.services)? {
                let rec = engine.restart(&b, Duration::from_secs(s.time)).engine()?;
                output::line(&rec.name)?;
            }
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Build(s) => {
            for svc in &s.services {
                engine.compose_box(&plan, svc).engine()?;
            }
            build_images(&engine, &plan, &s.services, false)
        }
        ComposeCommand::Pull(s) => {
            let mut images: Vec<String> = Vec::new();
            for b in &plan.boxes {
                // An image only ever built here (no `image:`) is not in any registry.
                let built_only = b.build.is_some()
                    && b.request.image == format!("{}-{}", plan.project, b.service);
                if (s.services.is_empty() || s.services.contains(&b.service))
                    && !built_only
                    && !images.contains(&b.request.image)
                {
                    images.push(b.request.image.clone());
                }
            }
            for image in images {
                let status = delegate(vec!["a3s-box".into(), "pull".into(), image])?;
                if status != ExitStatus::Success {
                    return Ok(status);
                }
            }
            Ok(ExitStatus::Success)
        }
        ComposeCommand::Config(c) => {
            let doc = compose::render::canonical(&project);
            match c.format {
                ConfigFormat::Json => output::json(&doc)?,
                ConfigFormat::Yaml => {
                    use std::io::Write;
                    std::io::stdout()
                        .lock()
                        .write_all(compose::render::to_yaml(&doc).as_bytes())?;
                }
            }
            Ok(ExitStatus::Success)
        }
    }
}

/// Builds the images of `services` (all when empty) that have a `build` section, each as
/// `a3s-box build -t IMAGE ...` would (same progress, errors and exit code); with
/// `only_missing`, only those whose image is not in the store yet (`up` without `--build`).
fn build_images(
    engine: &Engine,
    plan: &Plan,
    services: &[String],
    only_missing: bool,
) -> anyhow::Result<ExitStatus> {
    let store = engine.image_store().engine()?;
    for b in &plan.boxes {
        let Some(build) = &b.build else { continue };
        if !services.is_empty() && !services.contains(&b.service) {
            continue;
        }
        if only_missing {
            let present = b
                .request
                .image
                .parse::<a3s_image::ImageRef>()
                .is_ok_and(|r| store.resolve(&r).is_ok());
            if present {
                continue;
            }
        }
        eprintln!(
            " Image {}  Building (service {})",
            b.request.image, b.service
        );
        let mut argv: Vec<String> = ["a3s-box", "build", "--progress", "plain", "-t"]
            .iter()
            .map(ToString::to_string)
            .collect();
        argv.push(b.request.image.clone());
        argv.push("-f".into());
        argv.push(build.dockerfile_path().display().to_string());
        for (k, v) in &build.args {
            argv.push("--build-arg".into());
            argv.push(format!("{k}={v}"));
        }
        if let Some(t) = &build.target {
            argv.push("--target".into());
            argv.push(t.clone());
        }
        argv.push(build.context.display().to_string());
        let status = delegate(argv)?;
        if status != ExitStatus::Success {
            return Ok(status);
        }
    }
    Ok(ExitStatus::Success)
}

/// Runs one single-box command line (`exec`, `pull`, `build`) as if typed.
fn delegate(argv: Vec<String>) -> anyhow::Result<ExitStatus> {
    use clap::Parser;
    let cli = crate::args::Cli::try_parse_from(argv).map_err(|e| usage_error(e.into()))?;
    crate::commands::run(cli)
}

/// Box names of `services` (all when empty), in dependency order.
fn selected(engine: &Engine, plan: &Plan, services: &[String]) -> anyhow::Result<Vec<String>> {
    for s in services {
        engine.compose_box(plan, s).engine()?;
    }
    Ok(plan
        .boxes
        .iter()
        .filter(|b| services.is_empty() || services.contains(&b.service))
        .map(|b| b.name.clone())
        .collect())
}

/// Prints the services' output prefixed with `service | `; with `follow`, one thread per
/// box until all have stopped.
fn follow_logs(
    engine: &Engine,
    plan: &Plan,
    services: &[String],
    follow: bool,
) -> anyhow::Result<()> {
    let names = selected(engine, plan, services)?;
    let width = plan
        .boxes
        .iter()
        .map(|b| b.service.len())
        .max()
        .unwrap_or(0);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for b in plan.boxes.iter().filter(|b| names.contains(&b.name)) {
            let prefix = format!("{:width$} | ", b.service);
            let name = b.name.clone();
            handles.push(scope.spawn(move || {
                let req = LogRequest {
                    follow,
                    tail: None,
                    since: None,
                    until: None,
                };
                engine
                    .logs(&name, req, &mut |records| {
                        let mut text = String::new();
                        for r in records {
                            let bytes = r.bytes();
                            for line in String::from_utf8_lossy(&bytes).lines() {
                                text.push_str(&prefix);
                                text.push_str(line);
                                text.push('\n');
                            }
                        }
                        use std::io::Write;
                        std::io::stdout().lock().write_all(text.as_bytes())
                    })
                    .engine()
                    .map(drop)
            }));
        }
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) if is_not_found(&e) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => anyhow::bail!("a log thread panicked"),
            }
        }
        Ok(())
    })
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<a3s_runtime::state::StateError>(),
            Some(a3s_runtime::state::StateError::NotFound(_))
        )
    })
}

#[derive(Serialize)]
struct PsRow<'a> {
    service: &'a str,
    name: &'a str,
    image: &'a str,
    state: &'a str,
    status: String,
    ports: Vec<String>,
}

fn ps(engine: &Engine, plan: &Plan, format: Format) -> anyhow::Result<ExitStatus> {
    let rows = engine.compose_ps(plan).engine()?;
    let mut out = Vec::new();
    for ((service, rec), b) in rows.iter().zip(&plan.boxes) {
        let Some(rec) = rec else { continue };
        let ports = engine
            .ports(&rec.name)
            .map(|p| p.iter().map(ToString::to_string).collect())
            .unwrap_or_default();
        out.push(PsRow {
            service,
            name: &b.name,
            image: &rec.image,
            state: rec.state.name(),
            status: crate::commands::boxes::ps::status_text(rec),
            ports,
        });
    }
    match format {
        Format::Json => output::json(&out)?,
        _ => {
            output::line(&format!(
                "{:<24} {:<10} {:<28} {:<24} PORTS",
                "NAME", "SERVICE", "IMAGE", "STATUS"
            ))?;
            for r in &out {
                output::line(&format!(
                    "{:<24} {:<10} {:<28} {:<24} {}",
                    r.name,
                    r.service,
                    r.image,
                    r.status,
                    r.ports.join(", ")
                ))?;
            }
        }
    }
    Ok(ExitStatus::Success)
}

/// The hint of a compose error in a chain.
pub(crate) fn hint(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    cause
        .downcast_ref::<ComposeError>()
        .and_then(ComposeError::hint)
}
