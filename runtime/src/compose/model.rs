//! The supported subset of the Compose Specification, read from the marked YAML tree.
//!
//! Every key is checked against the subset; one outside it is refused with its path and line
//! (never silently ignored). `x-*` keys are the specification's extension fields and are
//! skipped, except `x-a3s`, which is ours (confidential services, network isolation).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::yaml::{Node, Value};
use super::ComposeError;

/// A compose project.
#[derive(Clone, Debug, PartialEq)]
pub struct Project {
    /// Project name (top-level `name`, else the directory's name, normalised as Compose does).
    pub name: String,
    /// The directory relative paths are resolved against.
    pub dir: PathBuf,
    /// Services by name.
    pub services: BTreeMap<String, Service>,
    /// Networks by their key in the file (`default` is added when a service needs it).
    pub networks: BTreeMap<String, NetworkDef>,
    /// Named volumes by their key in the file.
    pub volumes: BTreeMap<String, VolumeDef>,
    /// File secrets: name → absolute path.
    pub secrets: BTreeMap<String, PathBuf>,
}

/// One service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Service {
    /// Its key.
    pub name: String,
    /// `image`.
    pub image: String,
    /// `command` (a string is split like a shell would, without running one).
    pub command: Option<Vec<String>>,
    /// `entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `environment` then `env_file` entries as `KEY=value` (environment wins: it comes last).
    pub environment: Vec<String>,
    /// `ports` in `-p` syntax.
    pub ports: Vec<String>,
    /// `volumes` in `-v` syntax (named volumes not yet prefixed with the project).
    pub volumes: Vec<String>,
    /// `networks`: network key → aliases and fixed address.
    pub networks: BTreeMap<String, ServiceNetwork>,
    /// `depends_on`: service → condition.
    pub depends_on: BTreeMap<String, Condition>,
    /// `healthcheck`.
    pub healthcheck: Option<Healthcheck>,
    /// `restart`.
    pub restart: Option<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `working_dir`.
    pub working_dir: Option<String>,
    /// `deploy.resources.limits.cpus`, rounded up to whole vCPUs.
    pub cpus: Option<u32>,
    /// `deploy.resources.limits.memory` in MiB.
    pub memory_mib: Option<u64>,
    /// `secrets`: names of top-level file secrets.
    pub secrets: Vec<String>,
    /// `x-a3s`: a confidential service.
    pub tee: Option<Confidential>,
    /// `build`: the service's image is built from a Dockerfile (named `image`, or
    /// `<project>-<service>` as Docker Compose names it).
    pub build: Option<BuildDef>,
}

/// A service's `build` (short form: the context directory alone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildDef {
    /// `context`: the build context directory (absolute: relative to the project directory).
    pub context: PathBuf,
    /// `dockerfile`: the Dockerfile, relative to the context (`Dockerfile` when absent).
    pub dockerfile: Option<String>,
    /// `args`: build arguments (a list entry `K` without `=` takes the environment's `K`).
    pub args: BTreeMap<String, String>,
    /// `target`: the stage to build up to.
    pub target: Option<String>,
}

impl BuildDef {
    /// The Dockerfile's path.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.context
            .join(self.dockerfile.as_deref().unwrap_or("Dockerfile"))
    }
}

/// A service's place on one network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceNetwork {
    /// `aliases`.
    pub aliases: Vec<String>,
    /// `ipv4_address`.
    pub ipv4_address: Option<Ipv4Addr>,
}

/// `depends_on` conditions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// The dependency's box runs.
    #[default]
    Started,
    /// Its health check reports healthy.
    Healthy,
    /// It ran to completion with exit code 0.
    CompletedSuccessfully,
}

/// `healthcheck`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Healthcheck {
    /// The command as one shell string (`CMD` lists are quoted).
    pub cmd: Option<String>,
    /// `interval`.
    pub interval: Option<Duration>,
    /// `timeout`.
    pub timeout: Option<Duration>,
    /// `retries`.
    pub retries: Option<u32>,
    /// `start_period`.
    pub start_period: Option<Duration>,
    /// `disable: true` or `test: ["NONE"]`.
    pub disable: bool,
}

/// `x-a3s` of a service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Confidential {
    /// `tee`: `simulate` or `snp`.
    pub tee: String,
    /// `kbs_url`.
    pub kbs_url: Option<String>,
    /// `secrets`: name → `kbs:///repo/type/tag`.
    pub secrets: BTreeMap<String, String>,
}

/// A top-level network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkDef {
    /// `name` (else `<project>_<key>`).
    pub name: Option<String>,
    /// `external: true`: not created or removed by compose.
    pub external: bool,
    /// `ipam.config[0].subnet`.
    pub subnet: Option<String>,
    /// `ipam.config[0].gateway`.
    pub gateway: Option<String>,
    /// `x-a3s.isolation`: `none` or `strict`.
    pub isolation: Option<String>,
}

/// A top-level volume.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeDef {
    /// `name` (else `<project>_<key>`).
    pub name: Option<String>,
    /// `external: true`.
    pub external: bool,
}

/// Reads a project from compose text. `dir` is the project directory; `name` overrides the
/// project name (`-p`).
///
/// # Errors
/// [`ComposeError`] naming the key and line of what is wrong.
pub fn load(text: &str, dir: &Path, name: Option<&str>) -> Result<Project, ComposeError> {
    let root = super::yaml::parse(text)?;
    let top = map(&root, "the file")?;
    let mut p = Project {
        name: String::new(),
        dir: dir.to_path_buf(),
        services: BTreeMap::new(),
        networks: BTreeMap::new(),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut file_name = None;
    for (key, line, v) in top {
        match key.as_str() {
            "name" => file_name = Some(string(v, "name")?),
            // Obsolete in the specification; accepted and ignored like Docker Compose does.
            "version" => {}
            "services" => {
                for (svc, _, sv) in map(v, "services")? {
                    let s = service(svc, sv, dir)?;
                    p.services.insert(svc.clone(), s);
                }
            }
            "networks" => {
                for (n, _, nv) in map_or_null(v, "networks")? {
                    p.networks.insert(n.clone(), network(n, nv)?);
                }
            }
            "volumes" => {
                for (n, _, vv) in map_or_null(v, "volumes")? {
                    p.volumes.insert(n.clone(), volume(n, vv)?);
                }
            }
            "secrets" => {
                for (n, _, sv) in map(v, "secrets")? {
                    p.secrets.insert(n.clone(), secret(n, sv, dir)?);
                }
            }
            k if k.starts_with("x-") => {}
            _ => return Err(unknown(key, *line)),
        }
    }
    p.name = match name.or(file_name.as_deref()) {
        Some(n) => check_project_name(n)?,
        None => default_project_name(dir)?,
    };
    if p.services.is_empty() {
        return Err(ComposeError::Invalid {
            path: "services".into(),
            line: 1,
            why: "no services are defined".into(),
        });
    }
    check_references(&p, &root)?;
    Ok(p)
}

/// Compose's default project name: the directory's base name, lowercased, keeping only
/// `[a-z0-9_-]`.
///
/// # Errors
/// [`ComposeError::ProjectName`] when nothing is left.
pub fn default_project_name(dir: &Path) -> Result<String, ComposeError> {
    let base = dir
        .file_name()
        .map(|b| b.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let n: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    let n = n.trim_start_matches(['_', '-']).to_owned();
    check_project_name(&n)
}

fn check_project_name(n: &str) -> Result<String, ComposeError> {
    let ok = !n.is_empty()
        && n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(n.to_owned())
    } else {
        Err(ComposeError::ProjectName(n.to_owned()))
    }
}

fn service(name: &str, v: &Node, dir: &Path) -> Result<Service, ComposeError> {
    let at = |k: &str| format!("services.{name}.{k}");
    let mut s = Service {
        name: name.to_owned(),
        ..Service::default()
    };
    let mut env_files = Vec::new();
    // `mem_limit` (Compose's service-level key), checked against deploy's after the loop.
    let mut mem_limit = None;
    for (key, line, v) in map(v, &format!("services.{name}"))? {
        let path = at(key);
        match key.as_str() {
            "mem_limit" => {
                let text = string(v, &path)?;
                mem_limit = Some(memory_mib(&text).map_err(|why| invalid(&path, v.line, why))?);
            }
            "image" => s.image = string(v, &path)?,
            "command" => s.command = Some(command(v, &path)?),
            "entrypoint" => s.entrypoint = Some(command(v, &path)?),
            "environment" => s.environment = environment(v, &path)?,
            "env_file" => {
                for f in strings(v, &path)? {
                    env_files.push(dir.join(f));
                }
            }
            "ports" => {
                s.ports = scalars(v, &path, "the short syntax \"[IP:][HOST:]GUEST[/PROTO]\"")?
            }
            "volumes" => s.volumes = scalars(v, &path, "the short syntax \"SOURCE:TARGET[:ro]\"")?,
            "networks" => s.networks = service_networks(v, &path)?,
            "depends_on" => s.depends_on = depends_on(v, &path)?,
            "healthcheck" => s.healthcheck = Some(healthcheck(v, &path)?),
            "restart" => {
                let r = string(v, &path)?;
                crate::boxes::restart::RestartPolicy::parse(&r)
                    .map_err(|why| invalid(&path, v.line, why))?;
                s.restart = Some(r);
            }
            "hostname" => s.hostname = Some(string(v, &path)?),
            "user" => s.user = Some(string(v, &path)?),
            "working_dir" => s.working_dir = Some(string(v, &path)?),
            "deploy" => deploy(v, &path, &mut s)?,
            "secrets" => s.secrets = strings(v, &path)?,
            "x-a3s" => s.tee = Some(confidential(v, &path)?),
            "build" => s.build = Some(build(v, &path, dir)?),
            k if k.starts_with("x-") => {}
            _ => return Err(unknown(&path, *line)),
        }
    }
    if s.image.is_empty() && s.build.is_none() {
        return Err(invalid(
            &format!("services.{name}"),
            v.line,
            "needs an image or a build".into(),
        ));
    }
    match (mem_limit, s.memory_mib) {
        (Some(a), Some(b)) if a != b => {
            return Err(invalid(
                &at("mem_limit"),
                v.line,
                format!(
                "{a} MiB differs from deploy.resources.limits.memory ({b} MiB); give one of them"
            ),
            ))
        }
        (Some(a), _) => s.memory_mib = Some(a),
        _ => {}
    }
    // env_file entries first, `environment` after: the later value of a key wins.
    let mut env = Vec::new();
    for f in env_files {
        env.extend(read_env_file(&f)?);
    }
    env.append(&mut s.environment);
    s.environment = env;
    Ok(s)
}

fn deploy(v: &Node, path: &str, s: &mut Service) -> Result<(), ComposeError> {
    for (k, line, v) in map(v, path)? {
        let path = format!("{path}.{k}");
        if k != "resources" {
            return Err(unknown(&path, *line));
        }
        for (k, line, v) in map(v, &path)? {
            let path = format!("{path}.{k}");
            if k != "limits" {
                return Err(unknown(&path, *line));
            }
            for (k, line, v) in map(v, &path)? {
                let path = format!("{path}.{k}");
                let text = string(v, &path)?;
                match k.as_str() {
                    "cpus" => {
                        // Whole vCPUs from 1 to 64: a fraction rounds up (0.5 → 1).
                        let c = text
                            .parse::<f64>()
                            .ok()
                            .filter(|c| *c > 0.0 && *c <= 64.0)
                            .and_then(|c| (1..=64u32).find(|n| f64::from(*n) >= c))
                            .ok_or_else(|| {
                                invalid(&path, v.line, format!("{text:?} is not a CPU count"))
                            })?;
                        s.cpus = Some(c);
                    }
                    "memory" => {
                        s.memory_mib =
                            Some(memory_mib(&text).map_err(|why| invalid(&path, v.line, why))?)
                    }
                    _ => return Err(unknown(&path, *line)),
                }
            }
        }
    }
    Ok(())
}

/// Compose's byte values (`512m`, `1g`, `1024k`, `2048b`, bytes) in MiB.
fn memory_mib(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 512m or 1g"))?;
    Ok(n.saturating_mul(mult) >> 20)
}

fn build(v: &Node, path: &str, dir: &Path) -> Result<BuildDef, ComposeError> {
    if let Some(context) = v.scalar() {
        return Ok(BuildDef {
            context: dir.join(context),
            ..BuildDef::default()
        });
    }
    let mut b = BuildDef {
        context: dir.to_path_buf(),
        ..BuildDef::default()
    };
    for (k, line, v) in map(v, path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "context" => b.context = dir.join(string(v, &p)?),
            "dockerfile" => b.dockerfile = Some(string(v, &p)?),
            "target" => b.target = Some(string(v, &p)?),
            "args" => {
                // A mapping, or a list of K=V (K alone: from the environment, as Compose).
                for kv in environment(v, &p)? {
                    if let Some((k, val)) = kv.split_once('=') {
                        b.args.insert(k.to_owned(), val.to_owned());
                    }
                }
            }
            _ => return Err(unknown(&p, *line)),
        }
    }
    Ok(b)
}

fn confidential(v: &Node, path: &str) -> Result<Confidential, ComposeError> {
    let mut c = Confidential::default();
    for (k, line, v) in map(v, path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "tee" => {
                c.tee = string(v, &p)?;
                if !matches!(c.tee.as_str(), "simulate" | "snp") {
                    return Err(invalid(
                        &p,
                        v.line,
                        format!("{:?} is neither simulate nor snp", c.tee),
                    ));
                }
            }
            "kbs_url" => c.kbs_url = Some(string(v, &p)?),
            "secrets" => {
                for (name, _, sv) in map(v, &p)? {
                    c.secrets
                        .insert(name.clone(), string(sv, &format!("{p}.{name}"))?);
                }
            }
            _ => return Err(unknown(&p, *line)),
        }
    }
    if c.tee.is_empty() {
        return Err(invalid(
            path,
            v.line,
            "needs tee: simulate or tee: snp".into(),
        ));
    }
    Ok(c)
}

fn healthcheck(v: &Node, path: &str) -> Result<Healthcheck, ComposeError> {
    let mut h = Healthcheck::default();
    for (k, line, v) in map(v, path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "test" => match &v.value {
                Value::Scalar { text, .. } => h.cmd = Some(text.clone()),
                Value::Seq(_) => {
                    let argv = strings(v, &p)?;
                    match argv.split_first() {
                        Some((k, [])) if k == "NONE" => h.disable = true,
                        Some((k, rest)) if k == "CMD-SHELL" => h.cmd = Some(rest.join(" ")),
                        Some((k, rest)) if k == "CMD" && !rest.is_empty() => {
                            h.cmd = Some(
                                rest.iter()
                                    .map(|a| shell_quote(a))
                                    .collect::<Vec<_>>()
                                    .join(" "),
                            );
                        }
                        _ => {
                            return Err(invalid(
                                &p,
                                v.line,
                                "a list test starts with CMD, CMD-SHELL or NONE".into(),
                            ))
                        }
                    }
                }
                Value::Map(_) => {
                    return Err(invalid(&p, v.line, "expected a string or a list".into()))
                }
            },
            "interval" => h.interval = Some(duration(v, &p)?),
            "timeout" => h.timeout = Some(duration(v, &p)?),
            "start_period" => h.start_period = Some(duration(v, &p)?),
            "retries" => {
                let t = string(v, &p)?;
                h.retries = Some(
                    t.parse()
                        .map_err(|_| invalid(&p, v.line, format!("{t:?} is not a count")))?,
                );
            }
            "disable" => h.disable = boolean(v, &p)?,
            _ => return Err(unknown(&p, *line)),
        }
    }
    Ok(h)
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// Compose durations: `1m30s`, `10s`, `500ms`, `1h`, `2us`.
fn duration(v: &Node, path: &str) -> Result<Duration, ComposeError> {
    let text = string(v, path)?;
    let bad = || {
        invalid(
            path,
            v.line,
            format!("{text:?} is not a duration such as 30s or 1m30s"),
        )
    };
    let mut total = Duration::ZERO;
    let mut rest = text.as_str();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "h" => Duration::from_secs(3600),
            "m" => Duration::from_secs(60),
            "s" => Duration::from_secs(1),
            "ms" => Duration::from_millis(1),
            "us" => Duration::from_micros(1),
            _ => return Err(bad()),
        };
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

fn depends_on(v: &Node, path: &str) -> Result<BTreeMap<String, Condition>, ComposeError> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(_) => {
            for s in strings(v, path)? {
                out.insert(s, Condition::Started);
            }
        }
        Value::Map(m) => {
            for (dep, _, dv) in m {
                let p = format!("{path}.{dep}");
                let mut cond = Condition::Started;
                for (k, line, cv) in map(dv, &p)? {
                    let kp = format!("{p}.{k}");
                    match k.as_str() {
                        "condition" => {
                            cond = match string(cv, &kp)?.as_str() {
                                "service_started" => Condition::Started,
                                "service_healthy" => Condition::Healthy,
                                "service_completed_successfully" => Condition::CompletedSuccessfully,
                                other => return Err(invalid(&kp, cv.line, format!("{other:?} is not service_started, service_healthy or service_completed_successfully"))),
                            }
                        }
                        "required" => {
                            if !boolean(cv, &kp)? {
                                return Err(invalid(&kp, cv.line, "optional dependencies are not supported".into()));
                            }
                        }
                        _ => return Err(unknown(&kp, *line)),
                    }
                }
                out.insert(dep.clone(), cond);
            }
        }
        Value::Scalar { .. } => {
            return Err(invalid(path, v.line, "expected a list or a mapping".into()))
        }
    }
    Ok(out)
}

fn service_networks(
    v: &Node,
    path: &str,
) -> Result<BTreeMap<String, ServiceNetwork>, ComposeError> {
    let mut out = BTreeMap::new();
    match &v.value {
        Value::Seq(_) => {
            for n in strings(v, path)? {
                out.insert(n, ServiceNetwork::default());
            }
        }
        Value::Map(m) => {
            for (n, _, nv) in m {
                let p = format!("{path}.{n}");
                let mut sn = ServiceNetwork::default();
                if !nv.is_null() {
                    for (k, line, kv) in map(nv, &p)? {
                        let kp = format!("{p}.{k}");
                        match k.as_str() {
                            "aliases" => sn.aliases = strings(kv, &kp)?,
                            "ipv4_address" => {
                                let t = string(kv, &kp)?;
                                sn.ipv4_address = Some(t.parse().map_err(|_| {
                                    invalid(&kp, kv.line, format!("{t:?} is not an IPv4 address"))
                                })?);
                            }
                            _ => return Err(unknown(&kp, *line)),
                        }
                    }
                }
                out.insert(n.clone(), sn);
            }
        }
        Value::Scalar { .. } => {
            return Err(invalid(path, v.line, "expected a list or a mapping".into()))
        }
    }
    Ok(out)
}

fn network(key: &str, v: &Node) -> Result<NetworkDef, ComposeError> {
    let path = format!("networks.{key}");
    let mut n = NetworkDef::default();
    if v.is_null() {
        return Ok(n);
    }
    for (k, line, v) in map(v, &path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "name" => n.name = Some(string(v, &p)?),
            "external" => n.external = boolean(v, &p)?,
            "driver" => {
                let d = string(v, &p)?;
                if d != "bridge" {
                    return Err(invalid(
                        &p,
                        v.line,
                        format!("driver {d:?} is not supported, only bridge"),
                    ));
                }
            }
            "ipam" => {
                for (ik, iline, iv) in map(v, &p)? {
                    let ip = format!("{p}.{ik}");
                    if ik != "config" {
                        return Err(unknown(&ip, *iline));
                    }
                    let Value::Seq(items) = &iv.value else {
                        return Err(invalid(&ip, iv.line, "expected a list".into()));
                    };
                    if items.len() > 1 {
                        return Err(invalid(
                            &ip,
                            iv.line,
                            "one subnet per network is supported".into(),
                        ));
                    }
                    for item in items {
                        for (ck, cline, cv) in map(item, &ip)? {
                            let cp = format!("{ip}.{ck}");
                            match ck.as_str() {
                                "subnet" => n.subnet = Some(string(cv, &cp)?),
                                "gateway" => n.gateway = Some(string(cv, &cp)?),
                                _ => return Err(unknown(&cp, *cline)),
                            }
                        }
                    }
                }
            }
            "x-a3s" => {
                for (xk, xline, xv) in map(v, &p)? {
                    let xp = format!("{p}.{xk}");
                    if xk != "isolation" {
                        return Err(unknown(&xp, *xline));
                    }
                    let iso = string(xv, &xp)?;
                    if !matches!(iso.as_str(), "none" | "strict") {
                        return Err(invalid(
                            &xp,
                            xv.line,
                            format!("{iso:?} is neither none nor strict"),
                        ));
                    }
                    n.isolation = Some(iso);
                }
            }
            k if k.starts_with("x-") => {}
            _ => return Err(unknown(&p, *line)),
        }
    }
    Ok(n)
}

fn volume(key: &str, v: &Node) -> Result<VolumeDef, ComposeError> {
    let path = format!("volumes.{key}");
    let mut d = VolumeDef::default();
    if v.is_null() {
        return Ok(d);
    }
    for (k, line, v) in map(v, &path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "name" => d.name = Some(string(v, &p)?),
            "external" => d.external = boolean(v, &p)?,
            k if k.starts_with("x-") => {}
            _ => return Err(unknown(&p, *line)),
        }
    }
    Ok(d)
}

fn secret(key: &str, v: &Node, dir: &Path) -> Result<PathBuf, ComposeError> {
    let path = format!("secrets.{key}");
    let mut file = None;
    for (k, line, v) in map(v, &path)? {
        let p = format!("{path}.{k}");
        match k.as_str() {
            "file" => file = Some(dir.join(string(v, &p)?)),
            _ => return Err(unknown(&p, *line)),
        }
    }
    file.ok_or_else(|| {
        invalid(
            &path,
            v.line,
            "needs file: PATH (the only secret source supported)".into(),
        )
    })
}

/// Every name a service refers to exists.
fn check_references(p: &Project, root: &Node) -> Result<(), ComposeError> {
    let line_of = |svc: &str| -> usize {
        let Value::Map(top) = &root.value else {
            return 1;
        };
        top.iter()
            .find(|(k, _, _)| k == "services")
            .and_then(|(_, _, s)| match &s.value {
                Value::Map(m) => m.iter().find(|(k, _, _)| k == svc).map(|(_, l, _)| *l),
                _ => None,
            })
            .unwrap_or(1)
    };
    for s in p.services.values() {
        let line = line_of(&s.name);
        for dep in s.depends_on.keys() {
            if !p.services.contains_key(dep) {
                return Err(invalid(
                    &format!("services.{}.depends_on", s.name),
                    line,
                    format!("service {dep:?} is not defined"),
                ));
            }
        }
        for n in s.networks.keys() {
            if n != "default" && !p.networks.contains_key(n) {
                return Err(invalid(
                    &format!("services.{}.networks", s.name),
                    line,
                    format!("network {n:?} is not defined under top-level networks"),
                ));
            }
        }
        for sec in &s.secrets {
            if !p.secrets.contains_key(sec) {
                return Err(invalid(
                    &format!("services.{}.secrets", s.name),
                    line,
                    format!("secret {sec:?} is not defined under top-level secrets"),
                ));
            }
        }
        for v in &s.volumes {
            let src = v.split(':').next().unwrap_or_default();
            let named = !src.is_empty() && !src.starts_with(['/', '.', '~']) && v.contains(':');
            if named && !p.volumes.contains_key(src) {
                return Err(invalid(
                    &format!("services.{}.volumes", s.name),
                    line,
                    format!("volume {src:?} is not defined under top-level volumes"),
                ));
            }
        }
    }
    Ok(())
}

/// `KEY=value` lines of an env file (blank lines and `#` comments skipped; at most 1 MiB).
fn read_env_file(path: &Path) -> Result<Vec<String>, ComposeError> {
    let err = |why: String| ComposeError::EnvFile {
        path: path.to_path_buf(),
        why,
    };
    let meta = fs_err::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > super::yaml::MAX_FILE_BYTES {
        return Err(err("larger than 1 MiB".into()));
    }
    let text = crate::bounded::read_to_string(path, super::yaml::MAX_FILE_BYTES)
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => out.push(format!("{}={}", k.trim(), v)),
            _ => return Err(err(format!("line {}: expected KEY=value", i + 1))),
        }
    }
    Ok(out)
}

fn environment(v: &Node, path: &str) -> Result<Vec<String>, ComposeError> {
    match &v.value {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, _, val)| {
                if val.is_null() {
                    // Like `-e KEY`: the value comes from this process's environment.
                    std::env::var(k).ok().map(|x| Ok(format!("{k}={x}")))
                } else {
                    Some(string(val, &format!("{path}.{k}")).map(|x| format!("{k}={x}")))
                }
            })
            .collect(),
        Value::Seq(_) => Ok(strings(v, path)?
            .into_iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e)
                } else {
                    std::env::var(&e).ok().map(|x| format!("{e}={x}"))
                }
            })
            .collect()),
        Value::Scalar { .. } => Err(invalid(path, v.line, "expected a mapping or a list".into())),
    }
}

fn command(v: &Node, path: &str) -> Result<Vec<String>, ComposeError> {
    match &v.value {
        Value::Scalar { text, .. } => split_words(text).map_err(|why| invalid(path, v.line, why)),
        Value::Seq(_) => strings(v, path),
        Value::Map(_) => Err(invalid(path, v.line, "expected a string or a list".into())),
    }
}

/// Splits a command string like a POSIX shell splits words (quotes and backslashes), without
/// expanding anything.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

fn map<'a>(v: &'a Node, path: &str) -> Result<&'a [(String, usize, Node)], ComposeError> {
    match &v.value {
        Value::Map(m) => Ok(m),
        _ => Err(invalid(path, v.line, "expected a mapping".into())),
    }
}

fn map_or_null<'a>(v: &'a Node, path: &str) -> Result<&'a [(String, usize, Node)], ComposeError> {
    if v.is_null() {
        Ok(&[])
    } else {
        map(v, path)
    }
}

fn string(v: &Node, path: &str) -> Result<String, ComposeError> {
    v.scalar()
        .map(str::to_owned)
        .ok_or_else(|| invalid(path, v.line, "expected a single value".into()))
}

fn strings(v: &Node, path: &str) -> Result<Vec<String>, ComposeError> {
    match &v.value {
        Value::Seq(items) => items.iter().map(|i| string(i, path)).collect(),
        Value::Scalar { text, .. } => Ok(vec![text.clone()]),
        Value::Map(_) => Err(invalid(path, v.line, "expected a list".into())),
    }
}

fn scalars(v: &Node, path: &str, syntax: &str) -> Result<Vec<String>, ComposeError> {
    let Value::Seq(items) = &v.value else {
        return Err(invalid(path, v.line, "expected a list".into()));
    };
    items
        .iter()
        .map(|i| {
            i.scalar().map(str::to_owned).ok_or_else(|| {
                invalid(
                    path,
                    i.line,
                    format!("the long syntax is not supported; use {syntax}"),
                )
            })
        })
        .collect()
}

fn boolean(v: &Node, path: &str) -> Result<bool, ComposeError> {
    match v.scalar() {
        Some("true" | "True" | "TRUE") => Ok(true),
        Some("false" | "False" | "FALSE") => Ok(false),
        _ => Err(invalid(path, v.line, "expected true or false".into())),
    }
}

fn unknown(path: &str, line: usize) -> ComposeError {
    ComposeError::UnknownKey {
        key: path.to_owned(),
        line,
    }
}

fn invalid(path: &str, line: usize, why: String) -> ComposeError {
    ComposeError::Invalid {
        path: path.to_owned(),
        line,
        why,
    }
}

#[cfg(test)]
mod tests;
