//! The build: stages in order, each instruction turned into a new image in the store (one
//! layer for RUN, COPY and ADD, history only for the rest), every step looked up in the layer
//! cache first.
//!
//! Cache key of a step: SHA-256 over the parent image's manifest digest, the instruction with
//! its variables substituted, the build arguments RUN sees, and for COPY/ADD the bytes of the
//! layer the sources make (their paths, contents, modes and owners). A hit reuses the stored
//! image, so a rebuild without changes makes the same digests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use a3s_image::oci::History;
use a3s_image::store::Commit;
use a3s_image::{Digest, ImageRef, ImageStore};
use a3s_runtime::engine::{Engine, StepRun};

use crate::context::{self, Ignore, LayerBuilder, Overrides, SourceRoot};
use crate::dockerfile::{self, Instruction, Keyword};
use crate::remote;
use crate::subst::{self, Vars};
use crate::{BuildError, BuildOptions, Progress};

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Largest Dockerfile read.
const MAX_DOCKERFILE_BYTES: u64 = 4 << 20;
const CACHE_VERSION: &str = "v1";

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    /// The final image's manifest.
    pub digest: Digest,
    /// Steps answered from the cache, and all steps.
    pub cached: usize,
    /// Steps run.
    pub steps: usize,
}

/// A stage's state while it is built.
struct Stage {
    name: Option<String>,
    image: Option<Digest>,
    config: Value,
    args: Vars,
    /// ARGs declared before the first FROM: a stage's `ARG NAME` without a default takes
    /// their value.
    global: Vars,
    shell: Vec<String>,
}

impl Stage {
    fn run_config(&mut self) -> &mut serde_json::Map<String, Value> {
        if !self.config.get("config").is_some_and(Value::is_object) {
            self.config["config"] = json!({});
        }
        self.config["config"]
            .as_object_mut()
            .expect("made an object just above")
    }

    fn env(&self) -> Vec<String> {
        self.config["config"]["Env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Variables for substitution: build args, then ENV overriding them.
    fn vars(&self) -> Vars {
        let mut v = self.args.clone();
        for e in self.env() {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_owned(), val.to_owned());
            }
        }
        v
    }

    fn str_field(&self, name: &str) -> Option<String> {
        self.config["config"][name]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

/// Runs a build.
pub(crate) struct Builder<'a> {
    engine: &'a Engine,
    store: ImageStore,
    opts: &'a BuildOptions,
    progress: &'a mut dyn Progress,
    ignore: Ignore,
    cache_dir: PathBuf,
    used_args: BTreeSet<String>,
    step_no: usize,
    cached: usize,
}

impl<'a> Builder<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        opts: &'a BuildOptions,
        progress: &'a mut dyn Progress,
    ) -> Result<Self, BuildError> {
        let store = ImageStore::open(engine.home().root().join("images"))?;
        let cache_dir = engine.home().root().join("cache/build").join(CACHE_VERSION);
        fs::create_dir_all(&cache_dir).map_err(|e| BuildError::io(&cache_dir, e))?;
        Ok(Self {
            engine,
            store,
            opts,
            progress,
            ignore: Ignore::load(&opts.context)?,
            cache_dir,
            used_args: BTreeSet::new(),
            step_no: 0,
            cached: 0,
        })
    }

    pub(crate) fn build(mut self) -> Result<Built, BuildError> {
        let text = read_limited(&self.opts.dockerfile)?;
        let instructions = dockerfile::parse(&text)?;
        let stages = split_stages(&instructions)?;
        let target = match &self.opts.target {
            Some(t) => stages
                .stages
                .iter()
                .position(|(from, _)| stage_name(from).as_deref() == Some(t.as_str()))
                .ok_or_else(|| BuildError::NoTarget(t.clone()))?,
            None => stages.stages.len() - 1,
        };
        let needed = needed_stages(&stages.stages, target);
        let global = self.global_args(&stages.global)?;
        let mut built: Vec<Option<Stage>> = Vec::new();
        let total: usize = needed.iter().map(|&i| stages.stages[i].1.len() + 1).sum();
        for (i, (from, body)) in stages.stages.iter().enumerate() {
            if !needed.contains(&i) {
                built.push(None);
                continue;
            }
            let mut stage = self.from(from, &global, &built, total)?;
            for ins in body {
                self.step(&mut stage, ins, &built, total)?;
            }
            built.push(Some(stage));
            if i == target {
                break;
            }
        }
        let unused: Vec<_> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k))
            .cloned()
            .collect();
        if !unused.is_empty() {
            self.progress.line(&format!(
                "warning: build args not consumed by any ARG: {}",
                unused.join(", ")
            ));
        }
        let stage = built.pop().flatten().expect("the target stage was built");
        let digest = match stage.image {
            Some(d) => d,
            // `FROM scratch` and nothing else: an image with no layers.
            None => self.store.commit(&Commit {
                parent: None,
                config: stage.config,
                layer: None,
                history: History {
                    created_by: Some("FROM scratch".into()),
                    ..History::default()
                },
            })?,
        };
        for tag in &self.opts.tags {
            self.store.set_ref(
                tag,
                a3s_image::store::RefRecord {
                    manifest: digest.clone(),
                    index: None,
                },
            )?;
        }
        Ok(Built {
            digest,
            cached: self.cached,
            steps: self.step_no,
        })
    }

    /// ARGs before the first FROM: usable in FROM lines only.
    fn global_args(&mut self, global: &[Instruction]) -> Result<Vars, BuildError> {
        let mut vars = Vars::new();
        for ins in global {
            let (name, value) = self.arg_value(ins, &vars)?;
            if let Some(v) = value {
                vars.insert(name, v);
            }
        }
        Ok(vars)
    }

    /// `ARG NAME[=default]`: the `--build-arg` value, else the default.
    fn arg_value(
        &mut self,
        ins: &Instruction,
        vars: &Vars,
    ) -> Result<(String, Option<String>), BuildError> {
        let words = subst::split(&ins.args, vars, '\\').map_err(|m| ins.bad(m))?;
        let [word] = words.as_slice() else {
            return Err(ins.bad("takes one NAME[=default]").into());
        };
        let (name, default) = match word.split_once('=') {
            Some((n, d)) => (n.to_owned(), Some(d.to_owned())),
            None => (word.clone(), None),
        };
        if name.is_empty() {
            return Err(ins.bad("missing the argument's name").into());
        }
        let given = self.opts.build_args.get(&name).cloned();
        if given.is_some() {
            self.used_args.insert(name.clone());
        }
        Ok((name, given.or(default)))
    }

    fn from(
        &mut self,
        ins: &Instruction,
        global: &Vars,
        built: &[Option<Stage>],
        total: usize,
    ) -> Result<Stage, BuildError> {
        if let Some(p) = ins.flags.get("platform") {
            check_platform(p).map_err(|m| ins.bad(m))?;
        }
        let words = subst::split(&ins.args, global, '\\').map_err(|m| ins.bad(m))?;
        let (base, name) = match words.as_slice() {
            [b] => (b.clone(), None),
            [b, as_, n] if as_.eq_ignore_ascii_case("as") => (b.clone(), Some(n.clone())),
            _ => return Err(ins.bad("expected FROM IMAGE [AS NAME]").into()),
        };
        self.step_no += 1;
        let n = self.step_no;
        self.progress
            .line(&format!("#{n} [{}] {}", n_of(n, total), ins.text()));
        let start = Instant::now();
        let fresh = |image: Option<Digest>, config: Value| Stage {
            name: name.clone(),
            image,
            config,
            args: Vars::new(),
            global: global.clone(),
            shell: DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
        };
        let stage = if base == "scratch" {
            fresh(
                None,
                json!({"architecture": "amd64", "os": "linux", "config": {"Env": [format!("PATH={DEFAULT_PATH}")]}}),
            )
        } else if let Some(prev) = built
            .iter()
            .flatten()
            .find(|s| s.name.as_deref() == Some(base.as_str()))
        {
            let mut s = fresh(prev.image.clone(), prev.config.clone());
            s.shell.clone_from(&prev.shell);
            s
        } else {
            let reference: ImageRef = base
                .parse()
                .map_err(|e| ins.bad(format!("image {base:?}: {e}")))?;
            let digest = self.base_image(&reference)?;
            let m = self.store.manifest(&digest)?;
            let config = self.store.config_json(&m)?;
            check_image_platform(&config).map_err(|msg| ins.bad(format!("{base}: {msg}")))?;
            fresh(Some(digest), config)
        };
        self.progress
            .line(&format!("#{n} DONE {:.1}s", start.elapsed().as_secs_f64()));
        Ok(stage)
    }

    /// A registry or local image: local unless `--pull` or absent.
    fn base_image(&mut self, reference: &ImageRef) -> Result<Digest, BuildError> {
        if !self.opts.pull {
            if let Ok(rec) = self.store.lookup(reference) {
                return Ok(rec.manifest);
            }
        }
        self.progress.line(&format!("pulling {reference}"));
        let opts =
            (self.opts.pull_options)(reference).map_err(|message| BuildError::PullOptions {
                reference: reference.to_string(),
                message,
            })?;
        let pulled = self
            .engine
            .pull(reference, &opts, &a3s_image::registry::NoProgress)
            .map_err(BuildError::Engine)?;
        Ok(pulled.image.digest)
    }

    fn step(
        &mut self,
        stage: &mut Stage,
        ins: &Instruction,
        built: &[Option<Stage>],
        total: usize,
    ) -> Result<(), BuildError> {
        self.step_no += 1;
        let n = self.step_no;
        let label = match &stage.name {
            Some(s) => format!("{s} {}", n_of(n, total)),
            None => n_of(n, total),
        };
        self.progress
            .line(&format!("#{n} [{label}] {}", ins.text()));
        let start = Instant::now();
        let vars = stage.vars();
        let expand = |w: &str| subst::expand(w, &vars, '\\').map_err(|m| ins.bad(m));
        // ARG changes only what later steps see; it is not part of the image.
        if ins.keyword == Keyword::Arg {
            let (name, value) = self.arg_value(ins, &vars)?;
            match value.or_else(|| stage.global.get(&name).cloned()) {
                Some(v) => stage.args.insert(name, v),
                None => stage.args.remove(&name),
            };
            self.progress.line(&format!("#{n} DONE 0.0s"));
            return Ok(());
        }
        // The step's effect on the config, its history text and (for RUN/COPY/ADD) its layer.
        let mut key_extra = String::new();
        let mut layer: Option<Layer> = None;
        let created_by: String;
        match ins.keyword {
            Keyword::Run => {
                let argv = match &ins.json {
                    Some(a) => a.clone(),
                    None => stage
                        .shell
                        .iter()
                        .cloned()
                        .chain([ins.args.clone()])
                        .collect(),
                };
                if argv.is_empty() {
                    return Err(ins.bad("needs a command").into());
                }
                if stage.image.is_none() {
                    return Err(ins.bad("the stage is FROM scratch and has no files yet: there is nothing to run").into());
                }
                // Build args RUN sees (ENV wins over an ARG of the same name).
                let env = self.run_env(stage);
                key_extra = serde_json::to_string(&(&argv, &env)).expect("strings serialise");
                created_by = format!("RUN {}", argv.join(" "));
                layer = Some(Layer::Run(StepRun {
                    image: stage.image.clone().expect("checked above"),
                    argv,
                    env,
                    workdir: stage.str_field("WorkingDir"),
                    user: stage.str_field("User"),
                }));
            }
            Keyword::Copy | Keyword::Add => {
                let (tar, text) = self.copy_layer(stage, ins, &vars, built)?;
                key_extra = hex::encode(Sha256::digest(&tar));
                created_by = text;
                layer = Some(Layer::Tar(tar));
            }
            _ => {
                created_by = config_step(stage, ins, &vars, &expand)?;
            }
        }
        let key = cache_key(stage.image.as_ref(), &created_by, &key_extra, &stage.config);
        if !self.opts.no_cache {
            if let Some(hit) = self.cache_lookup(&key) {
                stage.image = Some(hit.0);
                stage.config = hit.1;
                self.cached += 1;
                self.progress.line(&format!("#{n} CACHED"));
                return Ok(());
            }
        }
        let tmp = tempfile::Builder::new()
            .prefix(".step-")
            .tempdir_in(&self.cache_dir)
            .map_err(|e| BuildError::io(&self.cache_dir, e))?;
        let layer_path = tmp.path().join("layer.tar");
        let has_layer = match layer {
            Some(Layer::Run(run)) => {
                let mut captured = Vec::new();
                let progress = &mut *self.progress;
                let code = self
                    .engine
                    .run_step(&run, &layer_path, &mut |s, bytes| {
                        captured.extend_from_slice(bytes);
                        progress.output(n, s, bytes);
                    })
                    .map_err(BuildError::Engine)?;
                if code != 0 {
                    return Err(BuildError::RunFailed {
                        line: ins.line,
                        command: created_by,
                        code,
                        output: String::from_utf8_lossy(&captured).into_owned(),
                    });
                }
                true
            }
            Some(Layer::Tar(bytes)) => {
                fs::write(&layer_path, bytes).map_err(|e| BuildError::io(&layer_path, e))?;
                true
            }
            None => false,
        };
        let created = created_now();
        stage.config["created"] = json!(created);
        let digest = self.store.commit(&Commit {
            parent: stage.image.as_ref(),
            config: stage.config.clone(),
            layer: has_layer.then_some(layer_path.as_path()),
            history: History {
                created: Some(created),
                created_by: Some(created_by),
                comment: Some("a3s-box build".into()),
                ..History::default()
            },
        })?;
        let m = self.store.manifest(&digest)?;
        stage.config = self.store.config_json(&m)?;
        stage.image = Some(digest.clone());
        self.cache_store(&key, &digest);
        self.progress
            .line(&format!("#{n} DONE {:.1}s", start.elapsed().as_secs_f64()));
        Ok(())
    }

    fn run_env(&self, stage: &Stage) -> Vec<String> {
        let mut env = stage.env();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for (k, v) in &stage.args {
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k))
            {
                env.push(format!("{k}={v}"));
            }
        }
        env
    }

    /// The layer tar of a COPY or ADD, and its history text.
    fn copy_layer(
        &mut self,
        stage: &Stage,
        ins: &Instruction,
        vars: &Vars,
        built: &[Option<Stage>],
    ) -> Result<(Vec<u8>, String), BuildError> {
        let words = match &ins.json {
            Some(a) => a
                .iter()
                .map(|w| subst::expand(w, vars, '\\'))
                .collect::<Result<Vec<_>, _>>(),
            None => subst::split(&ins.args, vars, '\\'),
        }
        .map_err(|m| ins.bad(m))?;
        let Some((dest_word, srcs)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
            return Err(ins
                .bad("needs one or more sources and a destination")
                .into());
        };
        let is_add = ins.keyword == Keyword::Add;
        let all_srcs = srcs.join(" ");
        let remote_add = |url: &str, reason: String| BuildError::RemoteAdd {
            line: ins.line,
            url: url.to_owned(),
            reason,
        };
        let (urls, srcs): (Vec<&String>, Vec<&String>) = if is_add {
            for s in srcs {
                if let Some(reason) = remote::refusal(s) {
                    return Err(remote_add(s, reason));
                }
            }
            srcs.iter().partition(|s| remote::is_http(s))
        } else {
            (Vec::new(), srcs.iter().collect())
        };
        let checksum = match ins.flags.get("checksum") {
            Some(c) if !srcs.is_empty() || urls.is_empty() => {
                return Err(ins
                    .bad(format!(
                        "--checksum={c}: only http(s) sources can be checked (Docker's rule)"
                    ))
                    .into())
            }
            Some(c) => Some(remote::Checksum::parse(c).map_err(|m| ins.bad(m))?),
            None => None,
        };
        let parent_root = match &stage.image {
            Some(d) => Some(self.rootfs(d)?),
            None => None,
        };
        // Sources: the context, or another stage's or image's files (--from).
        let from_root;
        let root = match ins.flags.get("from") {
            Some(f) => {
                let f = subst::expand(f, vars, '\\').map_err(|m| ins.bad(m))?;
                let by_name = built
                    .iter()
                    .flatten()
                    .find(|s| s.name.as_deref() == Some(f.as_str()));
                let by_index = f
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| built.get(i))
                    .and_then(Option::as_ref);
                let digest = match by_name.or(by_index) {
                    Some(s) => s.image.clone(),
                    None => {
                        let r: ImageRef =
                            f.parse().map_err(|e| ins.bad(format!("--from={f}: {e}")))?;
                        Some(self.base_image(&r)?)
                    }
                };
                from_root = match digest {
                    Some(d) => self.rootfs(&d)?,
                    None => {
                        return Err(ins
                            .bad(format!("--from={f}: that stage has no files"))
                            .into())
                    }
                };
                SourceRoot {
                    dir: &from_root,
                    ignore: None,
                }
            }
            None => SourceRoot {
                dir: &self.opts.context,
                ignore: Some(&self.ignore),
            },
        };
        let owner = match ins.flags.get("chown") {
            Some(c) => Some(chown(c, parent_root.as_deref()).map_err(|m| ins.bad(m))?),
            None => None,
        };
        let mode = match ins.flags.get("chmod") {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                        ins.bad(format!(
                            "--chmod={m}: expected octal mode bits such as 0755"
                        ))
                    })?,
            ),
            None => None,
        };
        let ov = Overrides {
            owner: owner.unwrap_or((0, 0)),
            mode,
        };
        let workdir = stage.str_field("WorkingDir").unwrap_or_else(|| "/".into());
        let dest_abs = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            format!("{workdir}/{dest_word}")
        };
        let dest = context::clean(&dest_abs);
        let mut sources = Vec::new();
        for s in &srcs {
            sources.extend(root.resolve(s)?);
        }
        // Fetched before the layer is made: the step's cache key covers their content.
        let mut fetched = Vec::new();
        for url in &urls {
            self.progress
                .line(&format!("#{} fetching {url}", self.step_no));
            let f = remote::fetch(url, checksum.as_ref()).map_err(|r| remote_add(url, r))?;
            fetched.push((*url, f));
        }
        let dest_exists_dir = parent_root
            .as_ref()
            .is_some_and(|r| context::scoped(r, &dest).is_ok_and(|p| p.is_dir()));
        let dest_is_dir = dest_word.ends_with('/')
            || dest_word.ends_with("/.")
            || sources.len() + fetched.len() > 1
            || dest_exists_dir
            || dest.is_empty();
        let mut layer = LayerBuilder::default();
        layer.parents(&dest, parent_root.as_deref());
        if dest_is_dir && !dest.is_empty() {
            layer.existing_dir(&dest, parent_root.as_deref());
        }
        for src in &sources {
            let is_dir = fs::metadata(&src.path).is_ok_and(|m| m.is_dir());
            let target = if is_dir || !dest_is_dir {
                dest.clone()
            } else {
                let base = Path::new(&src.rel)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if dest.is_empty() {
                    base
                } else {
                    format!("{dest}/{base}")
                }
            };
            if is_add && !is_dir && layer.add_archive(&src.path, &dest, ov, owner.is_some())? {
                continue;
            }
            layer
                .add(src, &target, ov, root.ignore)
                .map_err(context::CopyError::Io)?;
        }
        for (url, f) in fetched {
            let target = match (dest_is_dir, f.name) {
                (false, _) => dest.clone(),
                (true, Some(name)) if dest.is_empty() => name,
                (true, Some(name)) => format!("{dest}/{name}"),
                (true, None) => {
                    return Err(remote_add(
                        url,
                        "the URL names no file: give a file name as the destination".into(),
                    ))
                }
            };
            // Docker gives fetched files mode 0600 unless --chmod says otherwise.
            let mode = ov.mode.unwrap_or(0o600);
            layer.add_bytes(&target, f.bytes, mode, ov.owner, f.mtime);
        }
        let tar = layer.write(Vec::new()).map_err(context::CopyError::Io)?;
        let mut text = format!("{} ", ins.keyword.name());
        for (k, v) in &ins.flags {
            text.push_str(&format!("--{k}={v} "));
        }
        text.push_str(&format!("{all_srcs} /{dest}"));
        Ok((tar, text))
    }

    fn rootfs(&self, digest: &Digest) -> Result<PathBuf, BuildError> {
        let reference: ImageRef = a3s_runtime::engine::STEP_IMAGE_REPO
            .parse()
            .map_err(|e| BuildError::Internal(format!("{e}")))?;
        let img = self.store.resolve_manifest(&reference, digest)?;
        Ok(self.store.rootfs(&img)?)
    }

    fn cache_lookup(&self, key: &str) -> Option<(Digest, Value)> {
        let text = fs::read_to_string(self.cache_dir.join(key)).ok()?;
        let digest: Digest = text.trim().parse().ok()?;
        // A pruned image is a miss, not an error.
        let m = self.store.manifest(&digest).ok()?;
        if !m.layers.iter().all(|l| self.store.has_blob(&l.digest)) {
            return None;
        }
        let config = self.store.config_json(&m).ok()?;
        Some((digest, config))
    }

    fn cache_store(&self, key: &str, digest: &Digest) {
        let path = self.cache_dir.join(key);
        let tmp = self.cache_dir.join(format!(".{key}.tmp"));
        // A cache that cannot be written only costs a rebuild.
        if fs::write(&tmp, digest.to_string()).is_ok() {
            let _ = fs::rename(&tmp, &path);
        }
    }
}

enum Layer {
    Run(StepRun),
    Tar(Vec<u8>),
}

fn cache_key(parent: Option<&Digest>, text: &str, extra: &str, config: &Value) -> String {
    let mut h = Sha256::new();
    let parent = parent.map_or_else(|| "scratch".to_owned(), ToString::to_string);
    for part in [parent.as_str(), text, extra] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    // A scratch stage has no parent digest: its config stands in for it.
    if parent == "scratch" {
        h.update(config.to_string().as_bytes());
    }
    hex::encode(h.finalize())
}

fn n_of(n: usize, total: usize) -> String {
    format!("{n}/{total}")
}

fn stage_name(from: &Instruction) -> Option<String> {
    let words: Vec<&str> = from.args.split_whitespace().collect();
    match words.as_slice() {
        [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some((*n).to_owned()),
        _ => None,
    }
}

/// Global ARGs, then each stage's FROM with its instructions.
struct Stages {
    global: Vec<Instruction>,
    stages: Vec<(Instruction, Vec<Instruction>)>,
}

fn split_stages(all: &[Instruction]) -> Result<Stages, BuildError> {
    let mut global = Vec::new();
    let mut stages: Vec<(Instruction, Vec<Instruction>)> = Vec::new();
    for ins in all {
        match (ins.keyword, stages.last_mut()) {
            (Keyword::From, _) => stages.push((ins.clone(), Vec::new())),
            (_, Some((_, body))) => body.push(ins.clone()),
            (Keyword::Arg, None) => global.push(ins.clone()),
            (k, None) => {
                return Err(dockerfile::ParseError::NoFrom {
                    line: ins.line,
                    keyword: k.name().into(),
                }
                .into())
            }
        }
    }
    if stages.is_empty() {
        return Err(dockerfile::ParseError::Empty.into());
    }
    Ok(Stages { global, stages })
}

/// The stages `target` needs: itself, its FROM stage and `COPY --from` stages, transitively.
fn needed_stages(stages: &[(Instruction, Vec<Instruction>)], target: usize) -> BTreeSet<usize> {
    let index_of = |name: &str| {
        stages
            .iter()
            .position(|(f, _)| stage_name(f).as_deref() == Some(name))
            .or_else(|| name.parse::<usize>().ok().filter(|i| *i < stages.len()))
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if !needed.insert(i) {
            continue;
        }
        let (from, body) = &stages[i];
        if let Some(b) = from.args.split_whitespace().next() {
            if let Some(j) = index_of(b).filter(|j| *j < i) {
                todo.push(j);
            }
        }
        for ins in body {
            if let Some(f) = ins.flags.get("from") {
                if let Some(j) = index_of(f).filter(|j| *j < i) {
                    todo.push(j);
                }
            }
        }
    }
    needed
}

/// `k=v` pairs (or the legacy `KEY value` form of ENV and LABEL).
fn key_values(ins: &Instruction, words: &[String]) -> Result<Vec<(String, String)>, BuildError> {
    if words.is_empty() {
        return Err(ins.bad("needs KEY=value").into());
    }
    if !words[0].contains('=') {
        // Legacy `ENV KEY value with spaces`: one pair, the rest is the value.
        let rest = ins
            .args
            .trim_start()
            .strip_prefix(words[0].as_str())
            .unwrap_or("")
            .trim();
        let value = subst::expand(rest, &BTreeMap::new(), '\\').unwrap_or_else(|_| rest.to_owned());
        let value = if words.len() > 1 {
            words[1..].join(" ")
        } else {
            value
        };
        return Ok(vec![(words[0].clone(), value)]);
    }
    words
        .iter()
        .map(|w| {
            w.split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ins.bad(format!("{w:?} is not KEY=value")).into())
        })
        .collect()
}

fn healthcheck(ins: &Instruction) -> Result<Value, BuildError> {
    let args = ins.args.trim();
    if args.eq_ignore_ascii_case("none") {
        return Ok(json!({"Test": ["NONE"]}));
    }
    let Some(rest) = args
        .strip_prefix("CMD")
        .or_else(|| args.strip_prefix("cmd"))
    else {
        return Err(ins
            .bad("expected HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE")
            .into());
    };
    let rest = rest.trim();
    let test: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
        Ok(a) if rest.starts_with('[') => std::iter::once("CMD".to_owned()).chain(a).collect(),
        _ => vec!["CMD-SHELL".to_owned(), rest.to_owned()],
    };
    let mut hc = json!({"Test": test});
    for (flag, field) in [
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ] {
        if let Some(v) = ins.flags.get(flag) {
            let ns = duration_ns(v).ok_or_else(|| {
                ins.bad(format!(
                    "--{flag}={v}: expected a duration such as 30s or 1m30s"
                ))
            })?;
            hc[field] = json!(ns);
        }
    }
    if let Some(r) = ins.flags.get("retries") {
        let n: u32 = r
            .parse()
            .map_err(|_| ins.bad(format!("--retries={r}: expected a whole number")))?;
        hc["Retries"] = json!(n);
    }
    Ok(hc)
}

/// Go-style durations (`1m30s`, `500ms`, `2h`) in nanoseconds.
fn duration_ns(s: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    if s.is_empty() {
        return None;
    }
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let mult = match unit.as_str() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    num.is_empty().then_some(total)
}

/// `--chown=user[:group]`: numbers, or names looked up in the image's /etc/passwd and
/// /etc/group.
fn chown(spec: &str, rootfs: Option<&Path>) -> Result<(u64, u64), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let lookup = |file: &str, name: &str| -> Result<(u64, Option<u64>), String> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok((n, None));
        }
        let path = rootfs.and_then(|r| context::scoped(r, file).ok());
        let text = path
            .as_ref()
            .and_then(|p| read_small(p))
            .unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[0] == name {
                let id = f[2]
                    .parse()
                    .map_err(|_| format!("/{file}: bad id for {name}"))?;
                let gid = f[3].parse().ok();
                return Ok((id, gid));
            }
        }
        Err(format!(
            "--chown={spec}: no {name:?} in the image's /{file}"
        ))
    };
    let (uid, primary) = lookup("etc/passwd", user)?;
    let gid = match group {
        Some(g) => lookup("etc/group", g)?.0,
        None => primary.unwrap_or(uid),
    };
    Ok((uid, gid))
}

fn read_small(p: &Path) -> Option<String> {
    let f = fs::File::open(p).ok()?;
    let mut s = String::new();
    f.take(MAX_DOCKERFILE_BYTES).read_to_string(&mut s).ok()?;
    Some(s)
}

fn read_limited(path: &Path) -> Result<String, BuildError> {
    let f = fs::File::open(path).map_err(|e| BuildError::io(path, e))?;
    let mut s = String::new();
    f.take(MAX_DOCKERFILE_BYTES + 1)
        .read_to_string(&mut s)
        .map_err(|e| BuildError::io(path, e))?;
    if s.len() as u64 > MAX_DOCKERFILE_BYTES {
        return Err(BuildError::TooLarge(path.to_owned()));
    }
    Ok(s)
}

/// Only linux/amd64 images can run here (x86-64 MicroVMs).
pub(crate) fn check_platform(p: &str) -> Result<(), String> {
    match p {
        "linux/amd64" | "linux/x86_64" => Ok(()),
        other => Err(format!(
            "platform {other} is not supported: a3s-box runs x86-64 MicroVMs without emulation of other CPUs, so only linux/amd64 can be built"
        )),
    }
}

fn check_image_platform(config: &Value) -> Result<(), String> {
    let arch = config["architecture"].as_str().unwrap_or("amd64");
    let os = config["os"].as_str().unwrap_or("linux");
    check_platform(&format!("{os}/{arch}"))
}

/// The time history entries carry: `SOURCE_DATE_EPOCH` when set (reproducible builds), else
/// now.
fn created_now() -> String {
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(time::OffsetDateTime::now_utc);
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The instructions `import --change` and `commit --change` take (Docker's list, plus
/// STOPSIGNAL).
pub(crate) const IMPORT_CHANGES: [Keyword; 10] = [
    Keyword::Cmd,
    Keyword::Entrypoint,
    Keyword::Env,
    Keyword::Expose,
    Keyword::Healthcheck,
    Keyword::Label,
    Keyword::Stopsignal,
    Keyword::User,
    Keyword::Volume,
    Keyword::Workdir,
];

/// `import --change`: applies each change (one Dockerfile instruction, e.g. `CMD ["x"]`) to
/// an image config (`{"config": {...}}`) exactly as a build step would; returns the history
/// text of each.
///
/// # Errors
/// An instruction import does not take, or malformed arguments (naming the change).
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<Vec<String>, BuildError> {
    let mut stage = Stage {
        name: None,
        image: None,
        config: config.take(),
        args: Vars::new(),
        global: Vars::new(),
        shell: DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut history = Vec::new();
    for change in changes {
        let parsed = dockerfile::parse(change)?;
        let [ins] = parsed.as_slice() else {
            return Err(BuildError::BadChange {
                change: change.clone(),
                why: "give exactly one instruction per --change".into(),
            });
        };
        if !IMPORT_CHANGES.contains(&ins.keyword) {
            return Err(BuildError::BadChange {
                change: change.clone(),
                why: format!(
                    "{} cannot be used with import (use one of: {})",
                    ins.keyword.name(),
                    IMPORT_CHANGES.map(Keyword::name).join(", ")
                ),
            });
        }
        let vars = stage.vars();
        let expand = |w: &str| subst::expand(w, &vars, '\\').map_err(|m| ins.bad(m));
        history.push(config_step(&mut stage, ins, &vars, &expand)?);
    }
    *config = stage.config;
    Ok(history)
}

/// Applies config instruction `ins` (one of [`IMPORT_CHANGES`]) to image config document
/// `config`, as a build step would: `commit --change` uses it.
pub(crate) fn apply_config_instruction(
    config: &mut Value,
    ins: &Instruction,
) -> Result<String, BuildError> {
    let mut stage = Stage {
        name: None,
        image: None,
        config: config.take(),
        args: Vars::new(),
        global: Vars::new(),
        shell: DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
    };
    let vars = stage.vars();
    let expand = |w: &str| subst::expand(w, &vars, '\\').map_err(|m| ins.bad(m));
    let result = config_step(&mut stage, ins, &vars, &expand);
    *config = stage.config;
    result
}

/// ENV, WORKDIR, USER, EXPOSE, LABEL, ENTRYPOINT, CMD, VOLUME, HEALTHCHECK, STOPSIGNAL,
/// SHELL: changes the config; returns the history text.
fn config_step(
    stage: &mut Stage,
    ins: &Instruction,
    vars: &Vars,
    expand: &dyn Fn(&str) -> Result<String, dockerfile::ParseError>,
) -> Result<String, BuildError> {
    let split = |t: &str| subst::split(t, vars, '\\').map_err(|m| ins.bad(m));
    let exec_or_shell = |stage: &Stage| -> Vec<String> {
        match &ins.json {
            Some(a) => a.clone(),
            None => stage
                .shell
                .iter()
                .cloned()
                .chain([ins.args.clone()])
                .collect(),
        }
    };
    let text = match ins.keyword {
        Keyword::Env | Keyword::Label => {
            let pairs = key_values(ins, &split(&ins.args)?)?;
            if ins.keyword == Keyword::Env {
                let mut env = stage.env();
                for (k, v) in &pairs {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                    env.push(format!("{k}={v}"));
                }
                stage.run_config().insert("Env".into(), json!(env));
            } else {
                let rc = stage.run_config();
                let labels = rc.entry("Labels").or_insert_with(|| json!({}));
                if !labels.is_object() {
                    *labels = json!({});
                }
                for (k, v) in &pairs {
                    labels[k] = json!(v);
                }
            }
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}", ins.keyword.name(), shown.join(" "))
        }
        Keyword::Workdir => {
            let dir = expand(&ins.args)?;
            if dir.is_empty() {
                return Err(ins.bad("needs a directory").into());
            }
            let base = stage.str_field("WorkingDir").unwrap_or_else(|| "/".into());
            let joined = if dir.starts_with('/') {
                dir
            } else {
                format!("{base}/{dir}")
            };
            let abs = format!("/{}", context::clean(&joined));
            stage.run_config().insert("WorkingDir".into(), json!(abs));
            format!("WORKDIR {abs}")
        }
        Keyword::User => {
            let u = expand(&ins.args)?;
            if u.is_empty() {
                return Err(ins.bad("needs a user").into());
            }
            stage.run_config().insert("User".into(), json!(u));
            format!("USER {u}")
        }
        Keyword::Expose => {
            let mut ports = Vec::new();
            for p in split(&ins.args)? {
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(ins
                        .bad(format!("invalid port {p:?} (PORT or PORT/tcp|udp|sctp)"))
                        .into());
                }
                ports.push(format!("{num}/{proto}"));
            }
            let rc = stage.run_config();
            let map = rc.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in &ports {
                map[p] = json!({});
            }
            format!("EXPOSE {}", ports.join(" "))
        }
        Keyword::Entrypoint | Keyword::Cmd => {
            let argv = exec_or_shell(stage);
            let field = if ins.keyword == Keyword::Cmd {
                "Cmd"
            } else {
                "Entrypoint"
            };
            let rc = stage.run_config();
            rc.insert(field.into(), json!(argv));
            // Docker: a new ENTRYPOINT drops a CMD inherited from the base image.
            if ins.keyword == Keyword::Entrypoint {
                rc.remove("Cmd");
            }
            format!(
                "{} {}",
                ins.keyword.name(),
                serde_json::to_string(&argv).expect("strings")
            )
        }
        Keyword::Volume => {
            let vols = match &ins.json {
                Some(a) => a.iter().map(|v| expand(v)).collect::<Result<Vec<_>, _>>()?,
                None => split(&ins.args)?,
            };
            if vols.is_empty() || vols.iter().any(String::is_empty) {
                return Err(ins.bad("needs one or more paths").into());
            }
            let rc = stage.run_config();
            let map = rc.entry("Volumes").or_insert_with(|| json!({}));
            for v in &vols {
                map[v] = json!({});
            }
            format!("VOLUME {}", serde_json::to_string(&vols).expect("strings"))
        }
        Keyword::Stopsignal => {
            let s = expand(&ins.args)?;
            let ok = s.parse::<u32>().is_ok_and(|n| (1..=64).contains(&n))
                || (s.starts_with("SIG")
                    && s.len() > 3
                    && s[3..]
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+'));
            if !ok {
                return Err(ins
                    .bad(format!("invalid signal {s:?} (e.g. SIGTERM or 15)"))
                    .into());
            }
            stage.run_config().insert("StopSignal".into(), json!(s));
            format!("STOPSIGNAL {s}")
        }
        Keyword::Shell => {
            let Some(a) = ins.json.clone().filter(|a| !a.is_empty()) else {
                return Err(ins
                    .bad("takes the JSON form: SHELL [\"executable\", \"parameters\"]")
                    .into());
            };
            stage.shell.clone_from(&a);
            stage.run_config().insert("Shell".into(), json!(a));
            format!("SHELL {}", serde_json::to_string(&a).expect("strings"))
        }
        Keyword::Healthcheck => {
            let hc = healthcheck(ins)?;
            stage.run_config().insert("Healthcheck".into(), hc);
            ins.text()
        }
        _ => unreachable!("FROM, ARG, RUN, COPY and ADD are handled by the caller"),
    };
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_like_go() {
        assert_eq!(duration_ns("30s"), Some(30_000_000_000));
        assert_eq!(duration_ns("1m30s"), Some(90_000_000_000));
        assert_eq!(duration_ns("500ms"), Some(500_000_000));
        assert_eq!(duration_ns("30"), None);
        assert_eq!(duration_ns("x"), None);
    }

    #[test]
    fn platforms_other_than_amd64_are_refused_with_the_reason() {
        assert!(check_platform("linux/amd64").is_ok());
        assert!(check_platform("linux/arm64")
            .unwrap_err()
            .contains("x86-64"));
    }

    #[test]
    fn target_needs_only_its_stages() {
        let p = dockerfile::parse(
            "FROM a AS one\nFROM b AS two\nRUN x\nFROM c AS three\nCOPY --from=one /x /y\n",
        )
        .unwrap();
        let s = split_stages(&p).unwrap();
        assert_eq!(needed_stages(&s.stages, 2), BTreeSet::from([0, 2]));
        assert_eq!(needed_stages(&s.stages, 1), BTreeSet::from([1]));
    }

    #[test]
    fn chown_by_number_and_by_name() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/h:/bin/sh\n",
        )
        .unwrap();
        fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(chown("7:8", None).unwrap(), (7, 8));
        assert_eq!(chown("app", Some(d.path())).unwrap(), (1000, 1001));
        assert_eq!(chown("app:staff", Some(d.path())).unwrap(), (1000, 50));
        assert!(chown("nobody", Some(d.path()))
            .unwrap_err()
            .contains("nobody"));
    }
}

#[cfg(test)]
mod import_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn import_changes_apply_as_build_steps_do() {
        let mut c = json!({"config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}});
        let changes: Vec<String> = [
            "ENTRYPOINT [\"/bin/env\"]",
            "CMD [\"echo\", \"hi\"]",
            "ENV A=b",
            "WORKDIR /srv",
            "EXPOSE 80",
            "VOLUME /data",
            "STOPSIGNAL SIGQUIT",
            "LABEL k=v",
            "USER nobody",
            "cmd echo shell form",
        ]
        .map(String::from)
        .to_vec();
        let history = apply_changes(&mut c, &changes).unwrap();
        assert_eq!(history[1], "CMD [\"echo\",\"hi\"]");
        let rc = &c["config"];
        assert_eq!(rc["Entrypoint"], json!(["/bin/env"]));
        assert_eq!(rc["Cmd"], json!(["/bin/sh", "-c", "echo shell form"]));
        assert_eq!(rc["Env"], json!(["PATH=/bin", "A=b"]));
        assert_eq!(rc["WorkingDir"], "/srv");
        assert_eq!(rc["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(rc["Volumes"], json!({"/data": {}}));
        assert_eq!(rc["StopSignal"], "SIGQUIT");
        assert_eq!(rc["Labels"], json!({"k": "v"}));
        assert_eq!(rc["User"], "nobody");
        // The result is an image config the store reads back.
        let typed: a3s_image::oci::RunConfig = serde_json::from_value(rc.clone()).unwrap();
        assert_eq!(typed.volumes.unwrap().len(), 1);
    }

    #[test]
    fn import_refuses_what_it_cannot_take() {
        let mut c = json!({"config": {}});
        for (change, says) in [
            ("RUN echo", "RUN cannot be used with import"),
            ("FROM busybox", "FROM cannot be used with import"),
            ("", "exactly one instruction"),
            ("EXPOSE eighty", "invalid port"),
            ("BOGUS x", "not supported"),
        ] {
            let e = apply_changes(&mut c, &[change.to_owned()]).unwrap_err();
            assert!(e.to_string().contains(says), "{change}: {e}");
        }
    }
}
