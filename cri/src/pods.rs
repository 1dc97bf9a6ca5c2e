//! CRI pod sandbox messages ⇄ the engine's pods.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use a3s_runtime::engine::PodState;
use a3s_runtime::network::PortMap;
use a3s_runtime::pods::{PodRecord, PodSpec};
use k8s_cri::v1 as cri;
use tonic::Status;

/// What the engine is asked to run, from RunPodSandbox's config and handler.
pub(crate) fn spec_of(config: &cri::PodSandboxConfig, handler: &str) -> Result<PodSpec, Status> {
    let meta = config.metadata.as_ref().ok_or_else(|| {
        Status::invalid_argument("PodSandboxConfig.metadata is missing (name, namespace, uid)")
    })?;
    if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
        return Err(Status::invalid_argument(
            "PodSandboxConfig.metadata needs a name, a namespace and a uid",
        ));
    }
    let mut ports = Vec::new();
    for p in &config.port_mappings {
        ports.extend(port_of(p)?);
    }
    let mut dns_servers = Vec::new();
    if let Some(dns) = &config.dns_config {
        for s in &dns.servers {
            s.parse::<IpAddr>().map_err(|_| {
                Status::invalid_argument(format!("DNS server {s:?} is not an IP address"))
            })?;
            dns_servers.push(s.clone());
        }
    }
    Ok(PodSpec {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        attempt: meta.attempt,
        labels: sorted(&config.labels),
        annotations: sorted(&config.annotations),
        hostname: Some(config.hostname.clone()).filter(|h| !h.is_empty()),
        dns_servers,
        ports,
        handler: handler.to_owned(),
    })
}

/// A hostPort mapping as the VM can publish it: TCP on the host's loopback. A mapping without
/// a host port publishes nothing (Kubernetes: containerPort only).
fn port_of(p: &cri::PortMapping) -> Result<Option<PortMap>, Status> {
    if p.protocol != cri::Protocol::Tcp as i32 {
        return Err(Status::unimplemented(format!(
            "port mapping {}: only TCP ports can be published",
            p.container_port
        )));
    }
    if !matches!(p.host_ip.as_str(), "" | "127.0.0.1") {
        return Err(Status::unimplemented(format!(
            "port mapping {}: host IP {} is not supported; pods publish on 127.0.0.1",
            p.container_port, p.host_ip
        )));
    }
    let port = |v: i32, what: &str| {
        u16::try_from(v)
            .map_err(|_| Status::invalid_argument(format!("{what} {v} is not a TCP port")))
    };
    let guest = port(p.container_port, "containerPort")?;
    let host = port(p.host_port, "hostPort")?;
    if guest == 0 {
        return Err(Status::invalid_argument(
            "a port mapping needs a containerPort",
        ));
    }
    Ok((host != 0).then_some(PortMap::tcp(host, guest)))
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn unsorted(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn metadata(rec: &PodRecord) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: rec.spec.name.clone(),
        uid: rec.spec.uid.clone(),
        namespace: rec.spec.namespace.clone(),
        attempt: rec.spec.attempt,
    }
}

fn state(s: PodState) -> i32 {
    match s {
        PodState::Ready => cri::PodSandboxState::SandboxReady as i32,
        PodState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

/// PodSandboxStatus of a pod.
pub(crate) fn status_of(rec: &PodRecord, s: PodState) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(rec)),
        state: state(s),
        created_at: rec.created_ns,
        // No CNI yet: the pod has no cluster address.
        network: Some(cri::PodSandboxNetworkStatus::default()),
        linux: None,
        labels: unsorted(&rec.spec.labels),
        annotations: unsorted(&rec.spec.annotations),
        runtime_handler: rec.spec.handler.clone(),
    }
}

/// ListPodSandbox's entry of a pod.
pub(crate) fn item_of(rec: &PodRecord, s: PodState) -> cri::PodSandbox {
    cri::PodSandbox {
        id: rec.id.clone(),
        metadata: Some(metadata(rec)),
        state: state(s),
        created_at: rec.created_ns,
        labels: unsorted(&rec.spec.labels),
        annotations: unsorted(&rec.spec.annotations),
        runtime_handler: rec.spec.handler.clone(),
    }
}

/// Whether a pod passes ListPodSandbox's filter (id prefix, state, every selector label).
pub(crate) fn matches(
    filter: Option<&cri::PodSandboxFilter>,
    rec: &PodRecord,
    s: PodState,
) -> bool {
    let Some(f) = filter else { return true };
    (f.id.is_empty() || rec.id.starts_with(&f.id))
        && f.state.as_ref().is_none_or(|v| v.state == state(s))
        && f.label_selector
            .iter()
            .all(|(k, v)| rec.spec.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            }),
            hostname: "web-0".into(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                ..Default::default()
            }),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            port_mappings: vec![
                cri::PortMapping {
                    container_port: 80,
                    host_port: 18080,
                    ..Default::default()
                },
                // containerPort only: nothing is published.
                cri::PortMapping {
                    container_port: 81,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn converts_the_config_and_back() {
        let spec = spec_of(&config(), "").unwrap();
        assert_eq!(spec.full_name(), "web_default_u1_2");
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.dns_servers, vec!["10.96.0.10".to_owned()]);
        assert_eq!(spec.ports, vec![PortMap::tcp(18080, 80)]);
        let rec = PodRecord {
            id: "ab".repeat(32),
            spec,
            box_id: "cd".repeat(32),
            created_ns: 7,
        };
        let st = status_of(&rec, PodState::Ready);
        assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(st.metadata.unwrap().attempt, 2);
        assert_eq!(st.labels["app"], "web");
        let item = item_of(&rec, PodState::NotReady);
        assert_eq!(item.state, cri::PodSandboxState::SandboxNotready as i32);
    }

    #[test]
    fn filters_by_id_prefix_state_and_labels() {
        let rec = PodRecord {
            id: "ab".repeat(32),
            spec: spec_of(&config(), "").unwrap(),
            box_id: String::new(),
            created_ns: 0,
        };
        let f = |id: &str, st: Option<i32>, label: Option<(&str, &str)>| cri::PodSandboxFilter {
            id: id.into(),
            state: st.map(|state| cri::PodSandboxStateValue { state }),
            label_selector: label
                .map(|(k, v)| [(k.to_owned(), v.to_owned())].into())
                .unwrap_or_default(),
        };
        let ready = cri::PodSandboxState::SandboxReady as i32;
        let not_ready = cri::PodSandboxState::SandboxNotready as i32;
        assert!(matches(None, &rec, PodState::Ready));
        assert!(matches(
            Some(&f("abab", Some(ready), Some(("app", "web")))),
            &rec,
            PodState::Ready
        ));
        assert!(!matches(Some(&f("ff", None, None)), &rec, PodState::Ready));
        assert!(!matches(
            Some(&f("", Some(not_ready), None)),
            &rec,
            PodState::Ready
        ));
        assert!(!matches(
            Some(&f("", None, Some(("app", "db")))),
            &rec,
            PodState::Ready
        ));
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let mut c = config();
        c.metadata = None;
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        // No containerPort.
        c.port_mappings.push(cri::PortMapping::default());
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        c.port_mappings.push(cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let mut c = config();
        c.port_mappings.push(cri::PortMapping {
            container_port: 80,
            host_port: 8080,
            host_ip: "0.0.0.0".into(),
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let mut c = config();
        c.port_mappings.push(cri::PortMapping {
            container_port: 70000,
            host_port: 8080,
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        c.dns_config = Some(cri::DnsConfig {
            servers: vec!["dns.example".into()],
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
