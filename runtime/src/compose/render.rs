//! `compose config`: the project as it will run, in the Compose file's own shape (as
//! `docker compose config` prints it): names resolved, relative paths made absolute,
//! `env_file` merged into `environment`, defaults filled in; it loads back as the same project. [`canonical`] builds the
//! document; [`to_yaml`] prints it (JSON callers serialise the same value).

use std::time::Duration;

use serde_json::{json, Map, Value};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use super::model::{Condition, Healthcheck, Project, Service};

/// The project in Compose file shape.
pub fn canonical(p: &Project) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), json!(p.name));
    let services: Map<String, Value> = p
        .services
        .iter()
        .map(|(k, s)| (k.clone(), service(s)))
        .collect();
    doc.insert("services".into(), Value::Object(services));
    let mut networks = Map::new();
    for (k, d) in &p.networks {
        let mut n = Map::new();
        n.insert(
            "name".into(),
            json!(d.name.clone().unwrap_or_else(|| format!("{}_{k}", p.name))),
        );
        if d.external {
            n.insert("external".into(), json!(true));
        }
        if d.subnet.is_some() || d.gateway.is_some() {
            let mut c = Map::new();
            if let Some(s) = &d.subnet {
                c.insert("subnet".into(), json!(s));
            }
            if let Some(g) = &d.gateway {
                c.insert("gateway".into(), json!(g));
            }
            n.insert("ipam".into(), json!({ "config": [c] }));
        }
        if let Some(i) = &d.isolation {
            n.insert("x-a3s".into(), json!({ "isolation": i }));
        }
        networks.insert(k.clone(), Value::Object(n));
    }
    // The default network compose makes for services that name none.
    let needs_default = p
        .services
        .values()
        .any(|s| s.networks.is_empty() || s.networks.contains_key("default"));
    if needs_default && !networks.contains_key("default") {
        networks.insert(
            "default".into(),
            json!({ "name": format!("{}_default", p.name) }),
        );
    }
    if !networks.is_empty() {
        doc.insert("networks".into(), Value::Object(networks));
    }
    if !p.volumes.is_empty() {
        let volumes: Map<String, Value> = p
            .volumes
            .iter()
            .map(|(k, d)| {
                let mut v = Map::new();
                v.insert(
                    "name".into(),
                    json!(d.name.clone().unwrap_or_else(|| format!("{}_{k}", p.name))),
                );
                if d.external {
                    v.insert("external".into(), json!(true));
                }
                (k.clone(), Value::Object(v))
            })
            .collect();
        doc.insert("volumes".into(), Value::Object(volumes));
    }
    if !p.secrets.is_empty() {
        let secrets: Map<String, Value> = p
            .secrets
            .iter()
            .map(|(k, path)| {
                (
                    k.clone(),
                    // `components` drops the `./` a relative path in the file leaves.
                    json!({ "file": path.components().collect::<std::path::PathBuf>().display().to_string() }),
                )
            })
            .collect();
        doc.insert("secrets".into(), Value::Object(secrets));
    }
    Value::Object(doc)
}

/// The label holding [`config_hash`] on a service's box (Docker Compose's name).
pub const CONFIG_HASH_LABEL: &str = "com.docker.compose.config-hash";

/// SHA-256 (hex) of the service's canonical definition and of the networks it joins: `up`
/// recreates a box whose recorded hash differs, as Docker Compose does.
pub fn config_hash(p: &Project, s: &Service) -> String {
    use sha2::Digest as _;
    let all = canonical(p);
    let svc = service(s);
    let nets: Map<String, Value> = svc["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .map(|k| (k.clone(), all["networks"][k].clone()))
        .collect();
    let text = json!({ "service": svc, "networks": nets }).to_string();
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn service(s: &Service) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    if !s.image.is_empty() {
        put("image", json!(s.image));
    }
    if let Some(b) = &s.build {
        let mut v = Map::new();
        v.insert(
            "context".into(),
            json!(b
                .context
                .components()
                .collect::<std::path::PathBuf>()
                .display()
                .to_string()),
        );
        v.insert(
            "dockerfile".into(),
            json!(b.dockerfile.as_deref().unwrap_or("Dockerfile")),
        );
        if !b.args.is_empty() {
            v.insert("args".into(), json!(b.args));
        }
        if let Some(t) = &b.target {
            v.insert("target".into(), json!(t));
        }
        put("build", Value::Object(v));
    }
    if let Some(c) = &s.command {
        put("command", json!(c));
    }
    if let Some(e) = &s.entrypoint {
        put("entrypoint", json!(e));
    }
    if !s.environment.is_empty() {
        // Later entries win, as they do when the box is created.
        let mut env = Map::new();
        for kv in &s.environment {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            env.insert(k.to_owned(), json!(v));
        }
        put("environment", Value::Object(env));
    }
    if !s.ports.is_empty() {
        put("ports", json!(s.ports));
    }
    if !s.volumes.is_empty() {
        put("volumes", json!(s.volumes));
    }
    if s.networks.is_empty() {
        put("networks", json!({ "default": null }));
    } else {
        let nets: Map<String, Value> = s
            .networks
            .iter()
            .map(|(k, n)| {
                let mut v = Map::new();
                if !n.aliases.is_empty() {
                    v.insert("aliases".into(), json!(n.aliases));
                }
                if let Some(ip) = n.ipv4_address {
                    v.insert("ipv4_address".into(), json!(ip.to_string()));
                }
                let v = if v.is_empty() {
                    Value::Null
                } else {
                    Value::Object(v)
                };
                (k.clone(), v)
            })
            .collect();
        put("networks", Value::Object(nets));
    }
    if !s.depends_on.is_empty() {
        let deps: Map<String, Value> = s
            .depends_on
            .iter()
            .map(|(d, c)| (d.clone(), json!({ "condition": condition(*c) })))
            .collect();
        put("depends_on", Value::Object(deps));
    }
    if let Some(h) = &s.healthcheck {
        put("healthcheck", healthcheck(h));
    }
    if let Some(r) = &s.restart {
        put("restart", json!(r));
    }
    for (k, v) in [
        ("hostname", &s.hostname),
        ("user", &s.user),
        ("working_dir", &s.working_dir),
    ] {
        if let Some(v) = v {
            put(k, json!(v));
        }
    }
    if s.cpus.is_some() || s.memory_mib.is_some() {
        let mut limits = Map::new();
        if let Some(c) = s.cpus {
            limits.insert("cpus".into(), json!(c.to_string()));
        }
        if let Some(mib) = s.memory_mib {
            limits.insert("memory".into(), json!(format!("{mib}M")));
        }
        put("deploy", json!({ "resources": { "limits": limits } }));
    }
    if !s.secrets.is_empty() {
        put("secrets", json!(s.secrets));
    }
    if let Some(t) = &s.tee {
        let mut x = Map::new();
        x.insert("tee".into(), json!(t.tee));
        if let Some(u) = &t.kbs_url {
            x.insert("kbs_url".into(), json!(u));
        }
        if !t.secrets.is_empty() {
            x.insert("secrets".into(), json!(t.secrets));
        }
        put("x-a3s", Value::Object(x));
    }
    Value::Object(m)
}

fn condition(c: Condition) -> &'static str {
    match c {
        Condition::Started => "service_started",
        Condition::Healthy => "service_healthy",
        Condition::CompletedSuccessfully => "service_completed_successfully",
    }
}

fn healthcheck(h: &Healthcheck) -> Value {
    if h.disable {
        return json!({ "disable": true });
    }
    let mut m = Map::new();
    if let Some(c) = &h.cmd {
        m.insert("test".into(), json!(["CMD-SHELL", c]));
    }
    for (k, d) in [
        ("interval", h.interval),
        ("timeout", h.timeout),
        ("start_period", h.start_period),
    ] {
        if let Some(d) = d {
            m.insert(k.into(), json!(go_duration(d)));
        }
    }
    if let Some(r) = h.retries {
        m.insert("retries".into(), json!(r));
    }
    Value::Object(m)
}

/// A duration as Compose files write them (Go's `time.Duration` text: `1m30s`, `500ms`).
fn go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let ms = d.subsec_millis();
    let s = if ms == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{ms:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// `value` as a YAML document (block style, keys in the value's order, no `---` line).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail, and every JSON value has a YAML form.
    let _ = YamlEmitter::new(&mut out).dump(&yaml(value));
    let mut text = out
        .strip_prefix("---\n")
        .or_else(|| out.strip_prefix("---"))
        .unwrap_or(&out)
        .to_owned();
    text.push('\n');
    text
}

fn yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(yaml).collect()),
        Value::Object(o) => {
            let mut h = Hash::new();
            for (k, v) in o {
                h.insert(Yaml::String(k.clone()), yaml(v));
            }
            Yaml::Hash(h)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const FILE: &str = r#"name: shop
services:
  db:
    image: postgres
    environment:
      POSTGRES_PASSWORD: "yes"
      EMPTY: ""
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 1m30s
      timeout: 500ms
      retries: 3
    volumes: ["data:/var/lib/postgresql/data"]
  api:
    image: api:1
    command: ["python3", "-m", "http.server", "8000"]
    depends_on:
      db: {condition: service_healthy}
    networks:
      back:
        aliases: [service]
    ports: ["127.0.0.1:8080:8000"]
    deploy: {resources: {limits: {cpus: "1.5", memory: 256M}}}
  vault:
    image: busybox
    secrets: [token]
    x-a3s: {tee: simulate}
networks:
  back:
    x-a3s: {isolation: strict}
volumes:
  data:
secrets:
  token:
    file: ./token.txt
"#;

    fn project() -> Project {
        super::super::load(FILE, std::path::Path::new("/srv/shop"), None).unwrap()
    }

    #[test]
    fn the_canonical_form_resolves_names_paths_and_defaults() {
        let c = canonical(&project());
        assert_eq!(c["name"], "shop");
        assert_eq!(
            c["services"]["db"]["environment"]["POSTGRES_PASSWORD"],
            "yes"
        );
        assert_eq!(c["services"]["db"]["networks"], json!({ "default": null }));
        assert_eq!(c["services"]["db"]["healthcheck"]["interval"], "1m30s");
        assert_eq!(c["services"]["db"]["healthcheck"]["timeout"], "500ms");
        assert_eq!(
            c["services"]["api"]["depends_on"]["db"]["condition"],
            "service_healthy"
        );
        assert_eq!(
            c["services"]["api"]["networks"]["back"]["aliases"],
            json!(["service"])
        );
        assert_eq!(
            c["services"]["api"]["deploy"]["resources"]["limits"]["memory"],
            "256M"
        );
        assert_eq!(c["networks"]["back"]["name"], "shop_back");
        assert_eq!(c["networks"]["back"]["x-a3s"]["isolation"], "strict");
        assert_eq!(c["networks"]["default"]["name"], "shop_default");
        assert_eq!(c["volumes"]["data"]["name"], "shop_data");
        assert_eq!(c["secrets"]["token"]["file"], "/srv/shop/token.txt");
        assert_eq!(c["services"]["vault"]["x-a3s"]["tee"], "simulate");
    }

    #[test]
    fn the_yaml_reads_back_as_a_project_equal_to_the_original() {
        let p = project();
        let text = to_yaml(&canonical(&p));
        assert!(!text.starts_with("---"), "{text}");
        // Values that look like other YAML types stay strings.
        assert!(text.contains("POSTGRES_PASSWORD: \"yes\""), "{text}");
        let q = super::super::load(&text, std::path::Path::new("/srv/other"), None)
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        // The printed form is a fixed point.
        assert_eq!(to_yaml(&canonical(&q)), text);
        // The reloaded file names the default network and lists the environment by key.
        let norm = |p: &Project| {
            let mut s = p.services.clone();
            for svc in s.values_mut() {
                svc.networks.remove("default");
                svc.environment.sort();
            }
            s
        };
        assert_eq!(norm(&q), norm(&p));
        assert_eq!(q.networks["back"].isolation, p.networks["back"].isolation);
    }

    #[test]
    fn the_config_hash_follows_the_service_definition_only() {
        let p = project();
        let h = |p: &Project, s: &str| config_hash(p, &p.services[s]);
        let mut q = p.clone();
        q.services
            .get_mut("api")
            .unwrap()
            .environment
            .push("NEW=1".into());
        assert_ne!(h(&p, "api"), h(&q, "api"));
        assert_eq!(h(&p, "db"), h(&q, "db"));
        assert_eq!(h(&p, "api"), h(&project(), "api"));
        // A network it joins changes: so does its hash.
        q.networks.get_mut("back").unwrap().subnet = Some("10.9.0.0/24".into());
        assert_ne!(h(&p, "api"), h(&q, "api"));
        assert_eq!(h(&p, "db"), h(&q, "db"));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_secs(5)), "5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
    }
}
