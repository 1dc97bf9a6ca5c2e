//! The node's CNI network configuration: the first (lexically) `.conf`, `.conflist` or `.json`
//! file of the configuration directory, as containerd and CRI-O choose it, parsed into a
//! [`NetworkList`] (a single-plugin `.conf` becomes a list of one).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CniError;

/// A configuration file larger than this is refused (real ones are a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// CNI specification versions whose results this runtime reads (0.3.0 introduced the
/// interfaces/ips/routes result it needs; 0.4.0 prevResult on DEL; 1.0.0 the current one).
pub const SUPPORTED_VERSIONS: [&str; 4] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// A network configuration list, as the plugins see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkList {
    /// The network's name (host-local keeps its leases under it).
    pub name: String,
    /// The specification version plugins are asked to speak.
    pub cni_version: String,
    /// Each plugin's own configuration object, in chain order (`type` names its binary).
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from.
    pub source: PathBuf,
}

impl NetworkList {
    /// The first configuration in `dir` (lexical order of file names, as libcni sorts them).
    ///
    /// # Errors
    /// [`CniError::NoConfig`] when there is none, [`CniError::Config`] naming the file when the
    /// first one is unreadable or invalid (the next one is not tried: a broken first file is
    /// the node's configuration, and silently using another would hide it).
    pub fn discover(dir: &Path) -> Result<Self, CniError> {
        let no_config = || CniError::NoConfig(dir.to_owned());
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_config()),
            Err(e) => {
                return Err(CniError::Config {
                    path: dir.to_owned(),
                    why: format!("cannot list the directory: {e}"),
                })
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| matches!(x, "conf" | "conflist" | "json"))
            })
            .collect();
        files.sort();
        let first = files.into_iter().next().ok_or_else(no_config)?;
        Self::load(&first)
    }

    /// Reads and checks one configuration file.
    ///
    /// # Errors
    /// [`CniError::Config`] naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Self, CniError> {
        let bad = |why: String| CniError::Config {
            path: path.to_owned(),
            why,
        };
        let text = crate::bounded::read(path, MAX_CONFIG_BYTES).map_err(|e| bad(e.to_string()))?;
        let value: Value =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let is_list = path.extension().is_some_and(|x| x == "conflist");
        Self::parse(value, is_list, path).map_err(bad)
    }

    fn parse(value: Value, is_list: bool, path: &Path) -> Result<Self, String> {
        let Value::Object(mut top) = value else {
            return Err("the configuration must be a JSON object".into());
        };
        let name = match top.get("name") {
            Some(Value::String(n)) if valid_name(n) => n.clone(),
            Some(Value::String(n)) => {
                return Err(format!(
                    "network name {n:?} is not valid (letters, digits, '.', '-', '_'; it names \
                     host-local's lease directory)"
                ))
            }
            _ => return Err("\"name\" (a string) is missing".into()),
        };
        let cni_version = match top.get("cniVersion") {
            Some(Value::String(v)) if SUPPORTED_VERSIONS.contains(&v.as_str()) => v.clone(),
            Some(Value::String(v)) => {
                return Err(format!(
                    "cniVersion {v:?} is not supported; use one of {}",
                    SUPPORTED_VERSIONS.join(", ")
                ))
            }
            _ => return Err("\"cniVersion\" (a string) is missing".into()),
        };
        let plugins = if is_list || top.contains_key("plugins") {
            match top.remove("plugins") {
                Some(Value::Array(items)) if !items.is_empty() => items
                    .into_iter()
                    .map(|p| match p {
                        Value::Object(o) => Ok(o),
                        _ => Err("every entry of \"plugins\" must be an object".to_owned()),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => return Err("\"plugins\" must be a non-empty list".into()),
            }
        } else {
            // A single-plugin .conf is its own plugin configuration.
            vec![top]
        };
        for p in &plugins {
            match p.get("type") {
                Some(Value::String(t)) if valid_plugin_type(t) => {}
                Some(Value::String(t)) => {
                    return Err(format!(
                        "plugin type {t:?} is not a plain binary name (no '/' or '..')"
                    ))
                }
                _ => return Err("a plugin has no \"type\" (the name of its binary)".into()),
            }
        }
        Ok(Self {
            name,
            cni_version,
            plugins,
            source: path.to_owned(),
        })
    }

    /// The plugin types, in chain order (for messages).
    pub fn types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
            .collect()
    }

    /// Whether some plugin declares capability `name` (`"capabilities": {"portMappings": true}`).
    pub fn has_capability(&self, name: &str) -> bool {
        self.plugins.iter().any(|p| plugin_capable(p, name))
    }
}

/// Whether plugin `p` declares capability `name`.
pub(crate) fn plugin_capable(p: &Map<String, Value>, name: &str) -> bool {
    p.get("capabilities")
        .and_then(|c| c.get(name))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

fn valid_plugin_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{
        "cniVersion": "1.0.0", "name": "podnet",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]}"#;

    #[test]
    fn the_first_file_in_lexical_order_is_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("20-b.conflist"), LIST).unwrap();
        std::fs::write(
            dir.path().join("10-a.conf"),
            r#"{"cniVersion":"0.4.0","name":"single","type":"loopback"}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("00-ignored.txt"), "not a config").unwrap();
        let n = NetworkList::discover(dir.path()).unwrap();
        assert_eq!(n.name, "single");
        assert_eq!(n.cni_version, "0.4.0");
        assert_eq!(n.types(), ["loopback"]);
        assert!(n.source.ends_with("10-a.conf"));
        std::fs::remove_file(dir.path().join("10-a.conf")).unwrap();
        let n = NetworkList::discover(dir.path()).unwrap();
        assert_eq!(n.name, "podnet");
        assert_eq!(n.types(), ["bridge", "portmap"]);
        assert!(n.has_capability("portMappings"));
        assert!(!n.has_capability("bandwidth"));
    }

    #[test]
    fn no_configuration_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let e = NetworkList::discover(dir.path()).unwrap_err();
        assert!(matches!(e, CniError::NoConfig(_)), "{e}");
        let e = NetworkList::discover(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, CniError::NoConfig(_)), "{e}");
    }

    #[test]
    fn invalid_configurations_name_the_file_and_the_fault() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
                "\"name\"",
            ),
            (r#"{"name":"n","plugins":[{"type":"x"}]}"#, "cniVersion"),
            (
                r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"x"}]}"#,
                "not supported",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "non-empty",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{}]}"#,
                "\"type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../../bin/sh"}]}"#,
                "plain binary name",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"../x","plugins":[{"type":"x"}]}"#,
                "not valid",
            ),
        ];
        for (text, want) in cases {
            let p = dir.path().join("10-x.conflist");
            std::fs::write(&p, text).unwrap();
            let e = NetworkList::discover(dir.path()).unwrap_err().to_string();
            assert!(
                e.contains("10-x.conflist") && e.contains(want),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("10-big.conf");
        std::fs::write(
            &p,
            vec![b' '; usize::try_from(MAX_CONFIG_BYTES + 1).unwrap()],
        )
        .unwrap();
        let e = NetworkList::discover(dir.path()).unwrap_err().to_string();
        assert!(e.contains("exceeds"), "{e}");
    }
}
