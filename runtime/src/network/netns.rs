//! Named network namespaces for pods (`/run/netns/NAME`, iproute2's convention, so `ip netns`
//! and CNI plugins see them): created before CNI ADD, removed when the pod is removed.

use std::path::{Path, PathBuf};

use super::bridge::run;
use super::NetError;

/// Where iproute2 keeps namespace bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// The namespace name of pod `pod_id`.
pub fn pod_netns_name(pod_id: &str) -> String {
    format!("a3s-pod-{}", &pod_id[..pod_id.len().min(16)])
}

/// The path of namespace `name`.
pub fn path_of(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Creates namespace `name` (a leftover of the same name from a crash is replaced: pod ids
/// are random, so it can only be this pod's own) with its loopback up.
///
/// # Errors
/// [`NetError::Host`] naming the failed command.
pub fn create(name: &str) -> Result<PathBuf, NetError> {
    if path_of(name).exists() {
        remove(name)?;
    }
    run("ip", &["netns", "add", name], None)?;
    if let Err(e) = run("ip", &["-n", name, "link", "set", "lo", "up"], None) {
        let _ = remove(name);
        return Err(e);
    }
    Ok(path_of(name))
}

/// Removes namespace `name` (and with it every device still in it); absent is fine.
///
/// # Errors
/// [`NetError::Host`].
pub fn remove(name: &str) -> Result<(), NetError> {
    if !path_of(name).exists() {
        return Ok(());
    }
    run("ip", &["netns", "del", name], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_and_mount_rules() {
        let n = pod_netns_name(&"ab".repeat(32));
        assert_eq!(n, "a3s-pod-abababababababab");
        assert_eq!(
            path_of(&n),
            Path::new("/run/netns/a3s-pod-abababababababab")
        );
    }
}
