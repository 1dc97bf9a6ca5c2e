//! Pod networking through CNI, as containerd and CRI-O do it: the node's network
//! configuration ([`config`]), the exec protocol of its plugins ([`exec`]), and what a result
//! gives the pod ([`result`]). ADD runs the configuration's plugins in order, each given the
//! previous one's result; DEL runs them in reverse with the ADD result, and is idempotent.
//!
//! Everything DEL needs is in [`PodNetwork`], kept in the pod's record, so a restarted
//! `cri serve` (or a changed configuration directory) still releases what ADD allocated.

pub mod config;
pub mod exec;
pub mod result;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use config::NetworkList;
pub use exec::Op;
pub use result::PodAddresses;

/// Where the node's CNI configuration is by default (containerd's and CRI-O's default).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Where plugin binaries are looked up by default: Debian's `containernetworking-plugins`,
/// then the upstream release layout.
pub const DEFAULT_BIN_DIRS: &str = "/usr/lib/cni:/opt/cni/bin";
/// The pod's interface inside its network namespace.
pub const POD_IFNAME: &str = "eth0";

/// The node's CNI setting: where configurations and plugins are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CniNode {
    /// The configuration directory.
    pub conf_dir: PathBuf,
    /// Plugin directories, searched in order.
    pub bin_dirs: Vec<PathBuf>,
}

impl CniNode {
    /// The node's network configuration as it is now.
    ///
    /// # Errors
    /// [`CniError::NoConfig`], [`CniError::Config`].
    pub fn network(&self) -> Result<NetworkList, CniError> {
        NetworkList::discover(&self.conf_dir)
    }
}

/// A pod's attachment to the CNI network: what ADD was run with and what it returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    /// The pod's network namespace (a bind mount under `/run/netns`).
    pub netns: PathBuf,
    /// `CNI_CONTAINERID` (the pod id).
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// The configuration ADD used (DEL uses the same, whatever the directory holds later).
    pub network: NetworkList,
    /// Plugin directories at ADD time.
    pub bin_dirs: Vec<PathBuf>,
    /// `CNI_ARGS`.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`).
    pub capability_args: Map<String, Value>,
    /// The final ADD result (`None` until ADD succeeded).
    #[serde(default)]
    pub result: Option<Value>,
    /// DEL succeeded: the address and the plugins' host state are released.
    #[serde(default)]
    pub released: bool,
    /// How many plugins ADD invoked (the failing one included); DEL asks those only: a
    /// plugin never run allocated nothing (and may be the missing binary that failed ADD).
    /// `None`: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reached: Option<usize>,
}

impl PodNetwork {
    fn invocation<'a>(&'a self, netns: &'a Path) -> exec::Invocation<'a> {
        exec::Invocation {
            container_id: &self.container_id,
            netns,
            ifname: &self.ifname,
            args: &self.args,
            bin_dirs: &self.bin_dirs,
            capability_args: &self.capability_args,
        }
    }

    /// Runs ADD through the plugin chain; returns the last plugin's result. On an error the
    /// caller runs [`PodNetwork::del`]: a plugin may have allocated before failing.
    ///
    /// # Errors
    /// The first plugin's error, naming it.
    pub fn add(&mut self) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        let mut reached = 0;
        let mut outcome = Ok(());
        {
            let inv = self.invocation(&self.netns);
            for p in &self.network.plugins {
                reached += 1;
                match exec::run(Op::Add, &inv, &self.network, p, prev.as_ref()) {
                    Ok(r) => prev = r,
                    Err(e) => {
                        if matches!(e, CniError::PluginMissing { .. }) {
                            reached -= 1; // never ran
                        }
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        self.reached = Some(reached);
        outcome?;
        prev.ok_or_else(|| CniError::Result("the plugin chain returned no result".into()))
    }

    /// Runs DEL through the chain in reverse (with the ADD result from 0.4.0 on). Every plugin
    /// is asked even when one fails, so one broken plugin does not leak the others' state;
    /// the first error is returned. A namespace that is gone is passed as empty, as the
    /// specification allows.
    ///
    /// # Errors
    /// The first plugin's error.
    pub fn del(&self) -> Result<(), CniError> {
        let netns = if self.netns.exists() {
            self.netns.clone()
        } else {
            PathBuf::new()
        };
        let inv = self.invocation(&netns);
        let prev = self
            .result
            .as_ref()
            .filter(|_| self.network.cni_version != "0.3.0" && self.network.cni_version != "0.3.1");
        let mut first = None;
        let reached = self.reached.unwrap_or(self.network.plugins.len());
        for p in self.network.plugins.iter().take(reached).rev() {
            if let Err(e) = exec::run(Op::Del, &inv, &self.network, p, prev) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The pod's addresses from the ADD result.
    ///
    /// # Errors
    /// [`CniError::Result`] without a result or a usable one.
    pub fn addresses(&self) -> Result<PodAddresses, CniError> {
        let r = self
            .result
            .as_ref()
            .ok_or_else(|| CniError::Result("ADD has not completed".into()))?;
        PodAddresses::from_result(r, &self.ifname)
    }
}

/// Splits `--cni-bin-dir`'s `DIR[:DIR...]`.
pub fn parse_bin_dirs(s: &str) -> Vec<PathBuf> {
    std::env::split_paths(s)
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// Pod networking through CNI failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CniError {
    /// The configuration directory has no configuration.
    #[error("no CNI network configuration (.conf, .conflist or .json) in {}", .0.display())]
    NoConfig(PathBuf),
    /// The first configuration file is invalid.
    #[error("CNI configuration {}: {why}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A plugin's binary is in none of the plugin directories.
    #[error("CNI plugin {plugin:?} was not found in {}", dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":"))]
    PluginMissing {
        /// Its type.
        plugin: String,
        /// Where it was looked for.
        dirs: Vec<PathBuf>,
    },
    /// A plugin failed (its own message).
    #[error("CNI plugin {plugin} {op} failed{}: {message}", code.map(|c| format!(" (code {c})")).unwrap_or_default())]
    Plugin {
        /// Its type.
        plugin: String,
        /// ADD or DEL.
        op: &'static str,
        /// The CNI error code, when it printed one.
        code: Option<u64>,
        /// Its message and details.
        message: String,
    },
    /// A plugin printed something that is not what the protocol says.
    #[error("CNI plugin {plugin} misbehaved: {why}")]
    PluginOutput {
        /// Its type.
        plugin: String,
        /// What was wrong.
        why: String,
    },
    /// The ADD result cannot configure the pod.
    #[error("the CNI result cannot be used: {0}")]
    Result(String),
    /// Port mappings asked for, and no plugin takes them.
    #[error("the pod asks for host ports, but no plugin of CNI network {0} declares the portMappings capability")]
    NoPortMapping(String),
}

impl CniError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoConfig(dir) => Some(format!(
                "write a network configuration into {} (e.g. bridge + host-local + portmap), or \
                 point --cni-conf-dir at one",
                dir.display()
            )),
            Self::PluginMissing { .. } => Some(
                "install the plugins (Debian: apt-get install containernetworking-plugins) or \
                 point --cni-bin-dir at them"
                    .into(),
            ),
            Self::NoPortMapping(_) => Some(
                "add {\"type\": \"portmap\", \"capabilities\": {\"portMappings\": true}} to the \
                 configuration's plugins"
                    .into(),
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's `host-local`, run for real: IPAM needs no namespace, so the chain, the
    /// prevResult hand-over and DEL's release can be checked without root-only setup.
    fn host_local() -> PathBuf {
        let dirs = parse_bin_dirs(DEFAULT_BIN_DIRS);
        match exec::locate("host-local", &dirs) {
            Ok(p) => p,
            Err(e) => panic!("{e}: install containernetworking-plugins (scripts/setup)"),
        }
    }

    #[test]
    fn add_allocates_an_address_and_del_releases_it_with_the_real_host_local() {
        let bin = host_local();
        let data = tempfile::tempdir().unwrap();
        let conf = tempfile::tempdir().unwrap();
        let text = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "a3s-unit",
            // An IPAM plugin run directly still reads its settings from "ipam".
            "plugins": [{
                "type": "host-local",
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.250.3.0/24",
                    "gateway": "10.250.3.1",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": data.path(),
                }
            }]
        });
        std::fs::write(conf.path().join("10-unit.conflist"), text.to_string()).unwrap();
        let node = CniNode {
            conf_dir: conf.path().to_owned(),
            bin_dirs: vec![bin.parent().unwrap().to_owned()],
        };
        let mut net = PodNetwork {
            netns: PathBuf::from("/run/netns/a3s-unit-absent"),
            container_id: "unit-pod-1".into(),
            ifname: POD_IFNAME.into(),
            network: node.network().unwrap(),
            bin_dirs: node.bin_dirs.clone(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Map::new(),
            result: None,
            released: false,
            reached: None,
        };
        let r = net.add().unwrap();
        net.result = Some(r);
        let a = net.addresses().unwrap();
        let (ip, prefix) = a.ipv4.unwrap();
        assert_eq!(prefix, 24);
        assert_eq!(a.gateway, Some("10.250.3.1".parse().unwrap()));
        let lease = data.path().join("a3s-unit").join(ip.to_string());
        let owner = std::fs::read_to_string(&lease).unwrap();
        assert!(owner.starts_with("unit-pod-1"), "{owner}");
        net.del().unwrap();
        assert!(!lease.exists(), "DEL released the address");
        net.del().unwrap(); // idempotent

        // A chain whose second plugin is missing: ADD fails naming it after host-local
        // allocated, and DEL (asked of the plugins that ran) releases the address.
        net.network
            .plugins
            .push(serde_json::from_str(r#"{"type": "a3s-no-such-plugin"}"#).unwrap());
        net.result = None;
        let e = net.add().unwrap_err();
        assert!(
            matches!(&e, CniError::PluginMissing { plugin, .. } if plugin == "a3s-no-such-plugin"),
            "{e}"
        );
        assert_eq!(net.reached, Some(1));
        let leases = |dir: &Path| {
            std::fs::read_dir(dir.join("a3s-unit"))
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        };
        assert_eq!(
            leases(data.path()),
            1,
            "host-local allocated before the failure"
        );
        net.del().unwrap();
        assert_eq!(leases(data.path()), 0, "DEL released it");
    }

    #[test]
    fn bin_dirs_split_like_path() {
        assert_eq!(
            parse_bin_dirs("/usr/lib/cni:/opt/cni/bin:"),
            [PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]
        );
    }
}
