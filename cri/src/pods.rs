//! CRI pod sandbox messages ⇄ the engine's pods.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use a3s_runtime::engine::PodState;
use a3s_runtime::network::{PortMap, Proto};
use a3s_runtime::pods::{PodRecord, PodSpec};
use k8s_cri::v1 as cri;
use tonic::Status;

/// What the engine is asked to run, from RunPodSandbox's config and handler; `cni`: the node
/// has a CNI configuration (port mappings go to its portmap plugin).
pub(crate) fn spec_of(
    config: &cri::PodSandboxConfig,
    handler: &str,
    cni: bool,
) -> Result<PodSpec, Status> {
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
        ports.extend(if cni { cni_port_of(p)? } else { port_of(p)? });
    }
    let mut dns_servers = Vec::new();
    let mut dns_searches = Vec::new();
    let mut dns_options = Vec::new();
    if let Some(dns) = &config.dns_config {
        for s in &dns.servers {
            s.parse::<IpAddr>().map_err(|_| {
                Status::invalid_argument(format!("DNS server {s:?} is not an IP address"))
            })?;
            dns_servers.push(s.clone());
        }
        for (what, given, out) in [
            ("search domain", &dns.searches, &mut dns_searches),
            ("option", &dns.options, &mut dns_options),
        ] {
            for v in given {
                // One resolv.conf line each: no whitespace or control characters inside.
                if v.is_empty()
                    || v.len() > 253
                    || v.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(Status::invalid_argument(format!(
                        "DNS {what} {v:?} must be 1 to 253 characters without spaces"
                    )));
                }
                out.push(v.clone());
            }
        }
    }
    let (sysctls, privileged) = crate::security::pod_security(config.linux.as_ref())?;
    let host_cpus = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    let resources = crate::pod_resources::of(config.linux.as_ref(), host_cpus)?;
    Ok(PodSpec {
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        attempt: meta.attempt,
        labels: sorted(&config.labels),
        annotations: sorted(&config.annotations),
        hostname: Some(config.hostname.clone()).filter(|h| !h.is_empty()),
        dns_servers,
        dns_searches,
        dns_options,
        ports,
        handler: handler.to_owned(),
        sysctls,
        privileged,
        memory_bytes: resources.memory_bytes,
        vcpus: resources.vcpus,
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

/// A port mapping for CNI's portmap plugin: TCP or UDP, on any host IPv4 address (none: all
/// of them, as Kubernetes means it).
fn cni_port_of(p: &cri::PortMapping) -> Result<Option<PortMap>, Status> {
    let proto = if p.protocol == cri::Protocol::Tcp as i32 {
        Proto::Tcp
    } else if p.protocol == cri::Protocol::Udp as i32 {
        Proto::Udp
    } else {
        return Err(Status::unimplemented(format!(
            "port mapping {}: only TCP and UDP ports can be mapped",
            p.container_port
        )));
    };
    let host_ip = if p.host_ip.is_empty() {
        Ipv4Addr::UNSPECIFIED
    } else {
        p.host_ip.parse().map_err(|_| {
            Status::invalid_argument(format!(
                "port mapping {}: host IP {:?} is not an IPv4 address (leave hostIP empty to \
                 publish on every node address, IPv6 ones included)",
                p.container_port, p.host_ip
            ))
        })?
    };
    let port = |v: i32, what: &str| {
        u16::try_from(v).map_err(|_| Status::invalid_argument(format!("{what} {v} is not a port")))
    };
    let guest = port(p.container_port, "containerPort")?;
    let host = port(p.host_port, "hostPort")?;
    if guest == 0 {
        return Err(Status::invalid_argument(
            "a port mapping needs a containerPort",
        ));
    }
    Ok((host != 0).then_some(PortMap {
        host_ip,
        host,
        guest,
        proto,
    }))
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
        network: Some(network_status(rec)),
        linux: None,
        labels: unsorted(&rec.spec.labels),
        annotations: unsorted(&rec.spec.annotations),
        runtime_handler: rec.spec.handler.clone(),
    }
}

/// The pod's addresses from its CNI result (none without CNI, or once released).
fn network_status(rec: &PodRecord) -> cri::PodSandboxNetworkStatus {
    let ips: Vec<IpAddr> = rec
        .network
        .as_ref()
        .filter(|n| !n.released)
        .and_then(|n| n.addresses().ok())
        .map(|a| a.ips)
        .unwrap_or_default();
    let mut ips = ips.iter().map(ToString::to_string);
    cri::PodSandboxNetworkStatus {
        ip: ips.next().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
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
        let spec = spec_of(&config(), "", false).unwrap();
        assert_eq!(spec.full_name(), "web_default_u1_2");
        assert_eq!(spec.hostname.as_deref(), Some("web-0"));
        assert_eq!(spec.dns_servers, vec!["10.96.0.10".to_owned()]);
        assert_eq!(spec.ports, vec![PortMap::tcp(18080, 80)]);
        let rec = PodRecord {
            id: "ab".repeat(32),
            spec,
            box_id: "cd".repeat(32),
            created_ns: 7,
            network: None,
        };
        let st = status_of(&rec, PodState::Ready);
        assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
        assert_eq!(st.metadata.unwrap().attempt, 2);
        assert_eq!(st.labels["app"], "web");
        let item = item_of(&rec, PodState::NotReady);
        assert_eq!(item.state, cri::PodSandboxState::SandboxNotready as i32);
    }

    #[test]
    fn on_a_cni_node_ports_go_to_portmap_and_the_status_has_the_pod_ips() {
        let mut c = config();
        c.port_mappings.push(cri::PortMapping {
            protocol: cri::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "192.0.2.1".into(),
        });
        c.dns_config = Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let spec = spec_of(&c, "", true).unwrap();
        assert_eq!(
            spec.ports,
            vec![
                PortMap {
                    host_ip: Ipv4Addr::UNSPECIFIED,
                    ..PortMap::tcp(18080, 80)
                },
                PortMap {
                    host_ip: Ipv4Addr::new(192, 0, 2, 1),
                    host: 5353,
                    guest: 53,
                    proto: Proto::Udp,
                },
            ]
        );
        assert_eq!(spec.dns_searches, ["ns.svc.cluster.local"]);
        assert_eq!(spec.dns_options, ["ndots:5"]);
        // The same UDP mapping has no home without CNI.
        assert_eq!(
            spec_of(&c, "", false).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let mut bad = config();
        bad.dns_config = Some(cri::DnsConfig {
            searches: vec!["two words".into()],
            ..Default::default()
        });
        assert_eq!(
            spec_of(&bad, "", true).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut sctp = config();
        sctp.port_mappings[0].protocol = cri::Protocol::Sctp as i32;
        assert_eq!(
            spec_of(&sctp, "", true).unwrap_err().code(),
            tonic::Code::Unimplemented
        );

        let result = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [
                {"interface": 0, "address": "10.233.1.5/24", "gateway": "10.233.1.1"},
                {"interface": 0, "address": "fd00::5/64"}
            ]
        });
        let network: a3s_runtime::network::cni::PodNetwork =
            serde_json::from_value(serde_json::json!({
                "netns": "/run/netns/x", "container_id": "p", "ifname": "eth0",
                "network": {"name": "n", "cni_version": "1.0.0", "plugins": [], "source": "/x"},
                "bin_dirs": [], "args": [], "capability_args": {}, "result": result
            }))
            .unwrap();
        let mut rec = PodRecord {
            id: "ab".repeat(16),
            spec,
            box_id: "cd".repeat(16),
            created_ns: 1,
            network: Some(network),
        };
        let st = status_of(&rec, PodState::Ready).network.unwrap();
        assert_eq!(st.ip, "10.233.1.5");
        assert_eq!(
            st.additional_ips,
            [cri::PodIp {
                ip: "fd00::5".into()
            }]
        );
        rec.network.as_mut().unwrap().released = true;
        assert_eq!(status_of(&rec, PodState::NotReady).network.unwrap().ip, "");
    }

    #[test]
    fn filters_by_id_prefix_state_and_labels() {
        let rec = PodRecord {
            id: "ab".repeat(32),
            spec: spec_of(&config(), "", false).unwrap(),
            box_id: String::new(),
            created_ns: 0,
            network: None,
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
            spec_of(&c, "", false).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        // No containerPort.
        c.port_mappings.push(cri::PortMapping::default());
        assert_eq!(
            spec_of(&c, "", false).unwrap_err().code(),
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
            spec_of(&c, "", false).unwrap_err().code(),
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
            spec_of(&c, "", false).unwrap_err().code(),
            tonic::Code::Unimplemented
        );
        let mut c = config();
        c.port_mappings.push(cri::PortMapping {
            container_port: 70000,
            host_port: 8080,
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "", false).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let mut c = config();
        c.dns_config = Some(cri::DnsConfig {
            servers: vec!["dns.example".into()],
            ..Default::default()
        });
        assert_eq!(
            spec_of(&c, "", false).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
