//! A project turned into engine requests: the networks, volumes and boxes to create, named as
//! Docker Compose names them (`<project>_default`, `<project>_<volume>`,
//! `<project>-<service>-1`), with the boxes in dependency order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::model::{BuildDef, Condition, Project, Service};
use super::ComposeError;
use crate::boxes::health::HealthOptions;
use crate::boxes::restart::RestartPolicy;
use crate::boxes::CreateRequest;
use crate::network::{Attachment, BoxNet, CreateNetwork, Isolation};
use crate::tee::spec::{SecretRef, SecretSource, TeeSpec};
use crate::volumes::MountSpec;

/// What `up` creates, in order.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Project name.
    pub project: String,
    /// Networks (created unless external).
    pub networks: Vec<PlannedNetwork>,
    /// Named volumes (created unless external).
    pub volumes: Vec<PlannedVolume>,
    /// Boxes, each after the ones it depends on.
    pub boxes: Vec<PlannedBox>,
}

/// One network.
#[derive(Clone, Debug)]
pub struct PlannedNetwork {
    /// The request (its `name` is the real network name).
    pub request: CreateNetwork,
    /// Not created or removed by compose.
    pub external: bool,
}

/// One named volume.
#[derive(Clone, Debug)]
pub struct PlannedVolume {
    /// The real volume name.
    pub name: String,
    /// Not created or removed by compose.
    pub external: bool,
}

/// One service's box.
#[derive(Clone, Debug)]
pub struct PlannedBox {
    /// The service.
    pub service: String,
    /// `<project>-<service>-1`.
    pub name: String,
    /// What to create.
    pub request: CreateRequest,
    /// Boxes (by name) to wait for first, and for what.
    pub depends_on: Vec<(String, Condition)>,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// How its image is built (`request.image` names the result), if it is.
    pub build: Option<BuildDef>,
}

/// `<project>-<service>-1`.
pub fn box_name(project: &str, service: &str) -> String {
    format!("{project}-{service}-1")
}

/// The service's image: `image`, or for a service with only `build` the name Docker Compose
/// gives the result, `<project>-<service>`.
pub fn image_name(p: &Project, s: &Service) -> String {
    if s.image.is_empty() {
        format!("{}-{}", p.name, s.name)
    } else {
        s.image.clone()
    }
}

/// Plans `p`.
///
/// # Errors
/// A dependency cycle, or a service setting the runtime cannot carry out (named).
pub fn plan(p: &Project) -> Result<Plan, ComposeError> {
    let uses_default = p
        .services
        .values()
        .any(|s| s.networks.is_empty() || s.networks.contains_key("default"));
    let mut networks = Vec::new();
    let mut net_names = BTreeMap::new();
    let mut keys: Vec<(&str, super::model::NetworkDef)> = p
        .networks
        .iter()
        .map(|(k, d)| (k.as_str(), d.clone()))
        .collect();
    if uses_default && !p.networks.contains_key("default") {
        keys.push(("default", super::model::NetworkDef::default()));
    }
    for (key, d) in keys {
        let name = d
            .name
            .clone()
            .unwrap_or_else(|| format!("{}_{key}", p.project_name()));
        let isolation = match d.isolation.as_deref() {
            Some("strict") => Isolation::Strict,
            _ => Isolation::None,
        };
        net_names.insert(key.to_owned(), name.clone());
        networks.push(PlannedNetwork {
            request: CreateNetwork {
                name,
                subnet: d.subnet.clone(),
                gateway: d.gateway.clone(),
                isolation,
                policy: None,
            },
            external: d.external,
        });
    }
    let volumes = p
        .volumes
        .iter()
        .map(|(k, d)| PlannedVolume {
            name: volume_name(p, k),
            external: d.external,
        })
        .collect();
    let mut boxes = Vec::new();
    for svc in order(p)? {
        let s = &p.services[svc];
        boxes.push(PlannedBox {
            service: s.name.clone(),
            name: box_name(&p.name, &s.name),
            request: request(p, s, &net_names)?,
            depends_on: s
                .depends_on
                .iter()
                .map(|(d, c)| (box_name(&p.name, d), *c))
                .collect(),
            restart: s
                .restart
                .as_deref()
                .map(RestartPolicy::parse)
                .transpose()
                .map_err(|why| unsupported(&s.name, "restart", why))?
                .unwrap_or_default(),
            build: s.build.clone(),
        });
    }
    Ok(Plan {
        project: p.name.clone(),
        networks,
        volumes,
        boxes,
    })
}

impl Project {
    fn project_name(&self) -> &str {
        &self.name
    }
}

fn volume_name(p: &Project, key: &str) -> String {
    p.volumes
        .get(key)
        .and_then(|d| d.name.clone())
        .unwrap_or_else(|| format!("{}_{key}", p.name))
}

/// Services in an order where each comes after its dependencies (ties by name).
fn order(p: &Project) -> Result<Vec<&str>, ComposeError> {
    let mut done: Vec<&str> = Vec::new();
    let mut placed = BTreeSet::new();
    while done.len() < p.services.len() {
        let next = p.services.values().find(|s| {
            !placed.contains(s.name.as_str())
                && s.depends_on.keys().all(|d| placed.contains(d.as_str()))
        });
        match next {
            Some(s) => {
                placed.insert(s.name.as_str());
                done.push(&s.name);
            }
            None => {
                let left: Vec<&str> = p
                    .services
                    .keys()
                    .map(String::as_str)
                    .filter(|s| !placed.contains(s))
                    .collect();
                return Err(ComposeError::Cycle(left.join(", ")));
            }
        }
    }
    Ok(done)
}

fn unsupported(service: &str, key: &str, why: String) -> ComposeError {
    ComposeError::Unsupported {
        service: service.to_owned(),
        key: key.to_owned(),
        why,
    }
}

fn request(
    p: &Project,
    s: &Service,
    net_names: &BTreeMap<String, String>,
) -> Result<CreateRequest, ComposeError> {
    let tee = s.tee.as_ref().map(|c| tee_spec(p, s, c)).transpose()?;
    if tee.is_none() && !s.secrets.is_empty() {
        return Err(unsupported(
            &s.name,
            "secrets",
            "secrets are placed in /run/secrets by the guest's attestation agent, which only confidential services run: add x-a3s: {tee: simulate} (or snp)".into(),
        ));
    }
    let net = box_net(s, net_names)?;
    let mut mounts = Vec::new();
    for v in &s.volumes {
        mounts.push(mount(p, s, v)?);
    }
    let health = match &s.healthcheck {
        None => HealthOptions::default(),
        Some(h) => HealthOptions {
            cmd: h.cmd.clone(),
            interval: h.interval,
            timeout: h.timeout,
            retries: h.retries,
            start_period: h.start_period,
            disable: h.disable,
        },
    };
    let mut req = CreateRequest {
        image: image_name(p, s),
        name: Some(box_name(&p.name, &s.name)),
        args: s.command.clone().unwrap_or_default(),
        entrypoint: None,
        env: s.environment.clone(),
        workdir: s.working_dir.clone(),
        user: s.user.clone(),
        hostname: s.hostname.clone(),
        hosts: vec![],
        stdin: false,
        tty: false,
        tty_size: None,
        vcpus: s.cpus.unwrap_or(1),
        mem_mib: u64::from(crate::boxes::DEFAULT_MEM_MIB),
        // `deploy.resources.limits.memory` is the service's limit, as Docker's `--memory`.
        memory_limit_bytes: s.memory_mib.map(|m| m.saturating_mul(1 << 20)),
        pod_memory_bytes: None,
        kernel_args: vec![],
        auto_remove: false,
        net,
        publish_all: false,
        mounts,
        tee,
        health,
        layer_bytes: None,
        // Docker Compose's own labels: `ps --filter label=com.docker.compose.project=NAME`.
        labels: [
            ("com.docker.compose.project".to_owned(), p.name.clone()),
            ("com.docker.compose.service".to_owned(), s.name.clone()),
            (
                super::render::CONFIG_HASH_LABEL.to_owned(),
                super::render::config_hash(p, s),
            ),
        ]
        .into_iter()
        .collect(),
        stop_signal: None,
        stop_timeout: None,
        security: None,
        restart: s
            .restart
            .as_deref()
            .map(RestartPolicy::parse)
            .transpose()
            .map_err(|why| unsupported(&s.name, "restart", why))?
            .unwrap_or_default(),
    };
    if let Some(ep) = &s.entrypoint {
        // The box's entrypoint is one program; its arguments go before the command's.
        match ep.split_first() {
            None => req.entrypoint = Some(String::new()),
            Some((prog, rest)) => {
                req.entrypoint = Some(prog.clone());
                let mut args = rest.to_vec();
                args.append(&mut req.args);
                req.args = args;
            }
        }
    }
    Ok(req)
}

fn box_net(s: &Service, net_names: &BTreeMap<String, String>) -> Result<BoxNet, ComposeError> {
    let mut ports = Vec::new();
    for spec in &s.ports {
        ports.extend(
            crate::network::parse_publish(spec)
                .map_err(|e| unsupported(&s.name, "ports", e.to_string()))?,
        );
    }
    // The networks in name order (the first one carries the default route), or the
    // project's default network.
    let listed: Vec<(String, super::model::ServiceNetwork)> = if s.networks.is_empty() {
        vec![("default".to_owned(), Default::default())]
    } else {
        s.networks
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut attachments = Vec::new();
    for (key, sn) in listed {
        let network = net_names.get(&key).cloned().ok_or_else(|| {
            unsupported(
                &s.name,
                "networks",
                format!("network {key:?} is not defined"),
            )
        })?;
        let mut aliases = sn.aliases.clone();
        // Compose: a service is reachable by its service name on each of its networks.
        if !aliases.contains(&s.name) {
            aliases.insert(0, s.name.clone());
        }
        attachments.push(Attachment {
            network,
            ip: sn.ipv4_address,
            aliases,
            link: None,
        });
    }
    let mut net = BoxNet {
        ports,
        ..BoxNet::default()
    };
    net.set_attachments(attachments);
    Ok(net)
}

fn mount(p: &Project, s: &Service, spec: &str) -> Result<MountSpec, ComposeError> {
    let parse =
        |v: &str| MountSpec::parse(v).map_err(|e| unsupported(&s.name, "volumes", e.to_string()));
    // `/path` and `/path:ro` are anonymous volumes (removed by `down -v`), as in Compose.
    let Some((src, rest)) = spec
        .split_once(':')
        .filter(|(src, rest)| !src.starts_with('/') || rest.starts_with('/'))
    else {
        return parse(spec);
    };
    let src = if src.starts_with('.') || src.starts_with('/') {
        let path = Path::new(src);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            p.dir.join(path)
        };
        let abs = abs.canonicalize().map_err(|e| {
            unsupported(
                &s.name,
                "volumes",
                format!("bind source {}: {e}", abs.display()),
            )
        })?;
        abs.display().to_string()
    } else if src.starts_with('~') {
        return Err(unsupported(
            &s.name,
            "volumes",
            format!("{spec:?}: write the home directory out, ~ is not expanded"),
        ));
    } else {
        volume_name(p, src)
    };
    parse(&format!("{src}:{rest}"))
}

fn tee_spec(
    p: &Project,
    s: &Service,
    c: &super::model::Confidential,
) -> Result<TeeSpec, ComposeError> {
    let mode = match c.tee.as_str() {
        "snp" => a3s_vmm::proto::TeeMode::Snp,
        _ => a3s_vmm::proto::TeeMode::Simulated,
    };
    let mut secrets = Vec::new();
    for (name, source) in &c.secrets {
        secrets.push(
            SecretRef::parse(&format!("{name}={source}"))
                .map_err(|e| unsupported(&s.name, "x-a3s.secrets", e.to_string()))?,
        );
    }
    for name in &s.secrets {
        let path = p.secrets.get(name).cloned().ok_or_else(|| {
            unsupported(
                &s.name,
                "secrets",
                format!("secret {name:?} is not defined"),
            )
        })?;
        secrets.push(SecretRef {
            name: name.clone(),
            source: SecretSource::File { path },
        });
    }
    Ok(TeeSpec {
        mode,
        kbs_url: c.kbs_url.clone(),
        secrets,
        expected_measurement: None,
        policy: None,
        // Host exec stays refused, as for any TEE box without --allow-exec.
        allow_exec: false,
    })
}

#[cfg(test)]
mod tests;
