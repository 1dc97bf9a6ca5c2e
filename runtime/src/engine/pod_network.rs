//! A pod's network on a CNI node (issue 16), in containerd's order: the namespace, CNI ADD in
//! it, then the VM's NIC joined to the CNI interface (`network::pod_link`); CNI DEL when the
//! pod stops (also after a RunPodSandbox that failed half-way: a plugin may allocate before
//! it fails), the namespace removed with the pod. What DEL needs is in the pod record, so a
//! restarted `cri serve` releases what an earlier one allocated.

use serde_json::{json, Map, Value};

use super::{Engine, EngineError};
use crate::network::cni::{CniError, PodNetwork, POD_IFNAME};
use crate::network::pod_link::{self, PodNic};
use crate::network::{netns, BoxNet, NetMode, Proto};
use crate::pods::{PodRecord, PodSpec};

impl Engine {
    /// Whether pods get their network from CNI now: the node's configuration, if there is
    /// one, and whether it is valid (CRI's NetworkReady condition).
    ///
    /// `None`: this engine does not use CNI, or the node has no configuration (user
    /// networking); `Some(Err)`: the configuration is broken (RunPodSandbox fails).
    pub fn cni_network(&self) -> Option<Result<crate::network::cni::NetworkList, CniError>> {
        let node = self.cni.as_ref()?;
        match node.network() {
            Err(CniError::NoConfig(_)) => None,
            other => Some(other),
        }
    }

    /// The box network of a new pod: user networking with its port mappings (no CNI), or
    /// `pod` mode, whose NIC [`Engine::connect_pod_network`] fills in before the boot.
    pub(super) fn pod_box_net(spec: &PodSpec, cni: bool) -> BoxNet {
        let mut net = BoxNet {
            dns: spec.dns_servers.clone(),
            dns_search: spec.dns_searches.clone(),
            dns_options: spec.dns_options.clone(),
            ..BoxNet::default()
        };
        if cni {
            net.mode = NetMode::Pod;
        } else {
            net.ports.clone_from(&spec.ports);
        }
        net
    }

    /// What the pod's CNI attachment will be (nothing is created yet): the node's
    /// configuration as it is now, the pod's CNI_ARGS and its port mappings as the
    /// `portMappings` capability. `None` without CNI, or when the node has no CNI
    /// configuration (pods keep user networking then).
    ///
    /// # Errors
    /// An invalid configuration; host ports without a plugin that maps them.
    pub(super) fn plan_pod_network(
        &self,
        id: &str,
        spec: &PodSpec,
    ) -> Result<Option<PodNetwork>, EngineError> {
        let Some(node) = &self.cni else {
            return Ok(None);
        };
        let network = match node.network() {
            Ok(n) => n,
            Err(CniError::NoConfig(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut capability_args = Map::new();
        if !spec.ports.is_empty() {
            if !network.has_capability("portMappings") {
                return Err(CniError::NoPortMapping(network.name.clone()).into());
            }
            capability_args.insert("portMappings".into(), port_mappings(spec));
        }
        Ok(Some(PodNetwork {
            netns: netns::path_of(&netns::pod_netns_name(id)),
            container_id: id.to_owned(),
            ifname: POD_IFNAME.to_owned(),
            network,
            bin_dirs: node.bin_dirs.clone(),
            args: cni_args(id, spec),
            capability_args,
            result: None,
            released: false,
            reached: None,
        }))
    }

    /// Before the boot: creates the pod's namespace, runs CNI ADD there (the result is
    /// recorded at once), joins a TAP to the CNI interface and gives the pod's box its NIC.
    ///
    /// # Errors
    /// The failed step's error; the caller undoes what was done ([`Engine::release_pod_network`],
    /// [`Engine::remove_pod_netns`]).
    pub(super) fn connect_pod_network(&self, rec: &mut PodRecord) -> Result<(), EngineError> {
        let Some(pn) = rec.network.as_mut() else {
            return Ok(());
        };
        let name = netns_name(pn)?;
        netns::create(&name)?;
        let added = pn.add();
        if let Ok(r) = &added {
            pn.result = Some(r.clone());
        }
        // Recorded at once (how far ADD got, its result): a crash from here on still leaves
        // what DEL needs.
        self.save_pod(rec)?;
        added?;
        let Some(pn) = rec.network.as_ref() else {
            return Ok(());
        };
        let addresses = pn.addresses()?;
        let link = pod_link::join(&name, &pn.ifname)?;
        let nic = PodNic::new(pn.netns.clone(), &link, &addresses);
        let dir = self.boxes.box_dir(&self.boxes.find(&rec.box_id)?.id);
        let mut net = BoxNet::load(&dir)?;
        net.pod = Some(nic);
        // kubelet's DNS config wins; a CNI result's DNS is the fallback.
        if net.dns.is_empty() {
            net.dns = addresses.dns.nameservers;
            if net.dns_search.is_empty() {
                net.dns_search = addresses.dns.search;
            }
            if net.dns_options.is_empty() {
                net.dns_options = addresses.dns.options;
            }
        }
        net.save(&dir)?;
        Ok(())
    }

    /// CNI DEL for the pod, once (a released attachment is not asked again) and recorded.
    /// Runs whether or not ADD finished.
    ///
    /// # Errors
    /// A plugin's DEL error (the pod stays recorded, so a later stop or remove retries).
    pub(super) fn release_pod_network(&self, rec: &mut PodRecord) -> Result<(), EngineError> {
        let Some(pn) = rec.network.as_mut() else {
            return Ok(());
        };
        if pn.released {
            return Ok(());
        }
        pn.del()?;
        pn.released = true;
        self.save_pod(rec)?;
        Ok(())
    }

    /// Removes the pod's namespace (with the TAP and whatever a plugin left in it).
    ///
    /// # Errors
    /// [`crate::network::NetError::Host`].
    pub(super) fn remove_pod_netns(&self, rec: &PodRecord) -> Result<(), EngineError> {
        if let Some(pn) = &rec.network {
            netns::remove(&netns_name(pn)?)?;
        }
        Ok(())
    }

    /// Stores `rec` under the pod store's lock (a pod already removed stays removed).
    fn save_pod(&self, rec: &PodRecord) -> Result<(), EngineError> {
        let pods = crate::pods::Pods::open(&self.home);
        let _lock = pods.lock()?;
        if pods.find(&rec.id).is_ok() {
            pods.save(rec)?;
        }
        Ok(())
    }
}

fn netns_name(pn: &PodNetwork) -> Result<String, EngineError> {
    pn.netns
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            CniError::Result(format!("{} names no namespace", pn.netns.display())).into()
        })
}

/// CNI_ARGS as containerd passes them (plugins that do not know a key ignore it).
fn cni_args(id: &str, spec: &PodSpec) -> Vec<(String, String)> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", spec.namespace.as_str()),
        ("K8S_POD_NAME", spec.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", id),
        ("K8S_POD_UID", spec.uid.as_str()),
    ]
    .into_iter()
    // A value with the separators in it cannot be passed (Kubernetes names never have them).
    .filter(|(_, v)| !v.contains([';', '=']))
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The `portMappings` capability argument (portmap's input).
fn port_mappings(spec: &PodSpec) -> Value {
    Value::Array(
        spec.ports
            .iter()
            .map(|p| {
                let mut m = json!({
                    "hostPort": p.host,
                    "containerPort": p.guest,
                    "protocol": match p.proto { Proto::Tcp => "tcp", Proto::Udp => "udp" },
                });
                if !p.host_ip.is_unspecified() {
                    m["hostIP"] = Value::String(p.host_ip.to_string());
                }
                m
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::PortMap;

    #[test]
    fn cni_args_and_port_mappings_are_what_containerd_passes() {
        let spec = PodSpec {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u-1".into(),
            ports: vec![
                PortMap {
                    host_ip: std::net::Ipv4Addr::UNSPECIFIED,
                    ..PortMap::tcp(8080, 80)
                },
                PortMap {
                    proto: Proto::Udp,
                    ..PortMap::tcp(5353, 53)
                },
            ],
            ..Default::default()
        };
        let args = cni_args("abc", &spec);
        let text: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text.join(";"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        assert_eq!(
            port_mappings(&spec),
            json!([
                {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
            ])
        );
    }
}
