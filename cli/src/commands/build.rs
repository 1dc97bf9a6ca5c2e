//! `build`: turns flags into [`a3s_build::BuildOptions`], prints progress; the build itself is
//! `a3s_build::build` (RUN steps through the runtime engine).

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use a3s_build::{BuildOptions, Progress};
use a3s_image::pull::PullOptions;
use a3s_runtime::engine::{Engine, StepStream};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    /// Progress output: auto (a live view on a terminal, else plain) or plain (every line,
    /// step output prefixed by its step number; for logs).
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
    /// A live view when stderr is a terminal (one line per step, the running step's last
    /// output lines below it, erased when it ends); plain otherwise.
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
    let live = matches!(a.progress, ProgressMode::Auto) && std::io::stderr().is_terminal();
    let mut out: Box<dyn Progress> = if live && !a.quiet {
        Box::new(Live::new())
    } else {
        Box::new(Lines { quiet: a.quiet })
    };
    let result = a3s_build::build(&engine, &opts, &mut *out);
    // The live view is cleared before anything else is printed.
    drop(out);
    let built = result.map_err(|e| match e {
        // The command's output was streamed above; exit with its code, as `run` does.
        a3s_build::BuildError::RunFailed {
            code, ref output, ..
        } => {
            if a.quiet || live {
                // Progress was silenced, or showed only the last lines: the failing
                // command's whole output still has to be seen.
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

/// How many of the running step's output lines the live view shows.
const LIVE_TAIL_LINES: usize = 6;

/// The live view (`--progress auto` on a terminal): finished steps as one line each
/// (`#3 [2/5] RUN make ... DONE 4.1s`), the running step as a spinner with its last output
/// lines below it.
struct Live {
    multi: MultiProgress,
    step: Option<(String, ProgressBar)>,
    tail: Vec<ProgressBar>,
    lines: VecDeque<String>,
    /// An output line not yet ended by a newline.
    partial: String,
}

impl Live {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            step: None,
            tail: Vec::new(),
            lines: VecDeque::new(),
            partial: String::new(),
        }
    }

    fn println(&self, line: &str) {
        // Printing fails only when the terminal is gone; the build goes on.
        let _ = self.multi.println(line);
    }

    /// Ends the running step: its spinner and output lines are erased and `status` (if any)
    /// is printed after its header.
    fn end_step(&mut self, status: Option<&str>) {
        for b in self.tail.drain(..) {
            b.finish_and_clear();
        }
        self.lines.clear();
        self.partial.clear();
        if let Some((header, bar)) = self.step.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
            match status {
                Some(s) => self.println(&format!("{header}  {s}")),
                None => self.println(&header),
            }
        }
    }

    fn show_tail(&mut self) {
        let style = ProgressStyle::with_template("    {wide_msg:.dim}").expect("valid template");
        while self.tail.len() < self.lines.len() {
            let b = self.multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            self.tail.push(b);
        }
        for (b, l) in self.tail.iter().zip(&self.lines) {
            b.set_message(l.clone());
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.end_step(None);
    }
}

impl Progress for Live {
    fn line(&mut self, line: &str) {
        // `#N [stage i/n] TEXT` starts a step; `#N DONE 1.2s` and `#N CACHED` end it.
        let (num, rest) = line
            .strip_prefix('#')
            .and_then(|r| r.split_once(' '))
            .unwrap_or(("", line));
        let same = self.step.as_ref().is_some_and(|(h, _)| {
            h.strip_prefix('#')
                .and_then(|r| r.split_once(' '))
                .map(|(n, _)| n)
                == Some(num)
        });
        if same && (rest == "CACHED" || rest.starts_with("DONE")) {
            self.end_step(Some(rest));
        } else if rest.starts_with('[') {
            self.end_step(None);
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {wide_msg} {elapsed}")
                    .expect("valid template"),
            );
            bar.set_message(line.to_owned());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            self.step = Some((line.to_owned(), bar));
        } else if self.step.is_some() {
            self.lines.push_back(line.to_owned());
            while self.lines.len() > LIVE_TAIL_LINES {
                self.lines.pop_front();
            }
            self.show_tail();
        } else {
            self.println(line);
        }
    }

    fn output(&mut self, _step: usize, _stream: StepStream, bytes: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(bytes));
        while let Some(i) = self.partial.find('\n') {
            let l: String = self.partial.drain(..=i).collect();
            // A carriage return redraws a line: keep what was drawn last.
            let l = l
                .trim_end()
                .rsplit('\r')
                .next()
                .unwrap_or_default()
                .to_owned();
            self.lines.push_back(l);
            while self.lines.len() > LIVE_TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.show_tail();
    }
}
