//! CRI security contexts → what the engine records and guest-init applies.
//!
//! Containers: `LinuxContainerSecurityContext` becomes an [`a3s_vmm::proto::ContainerSecurity`]
//! with containerd's rules (default capabilities, `ALL` in add/drop, masked and read-only
//! paths defaulting to containerd's when none are given, none when privileged). Pods: the
//! sysctls of `LinuxPodSandboxConfig` (namespaced ones only) and whether the pod is privileged.
//!
//! What a pod VM cannot honour is refused by name; what applies to the sandbox's own
//! container (the pause container, here the pod VM's holder process) is ignored, as the
//! module doc of each function says.

use std::collections::BTreeMap;

use a3s_runtime::boxes::security::{
    all_capabilities, capability_name, check_sysctl, DEFAULT_CAPABILITIES,
};
use a3s_vmm::proto::{ContainerSecurity, PidNamespace};
use k8s_cri::v1 as cri;
use tonic::Status;

/// containerd's default masked paths (`pkg/oci` `populateDefaultUnixSpec`; kubelet sends the
/// same list for the default proc mount).
pub(crate) const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// containerd's default read-only paths.
pub(crate) const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn invalid(field: &str, why: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("security_context.{field}: {why}"))
}

/// A container's security context as guest-init applies it (no context: containerd's
/// defaults). Ignored, because they have nothing to act on in a pod VM: `selinux_options` and
/// `apparmor` (the VM kernel has neither). The seccomp profile is [`crate::seccomp`]'s; the
/// user (`run_as_*`) is resolved by `containers`.
///
/// # Errors
/// `InvalidArgument` naming the field: unknown capabilities, ambient capabilities, relative
/// paths, groups out of range, host namespaces, user namespaces.
pub(crate) fn container_security(
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> Result<ContainerSecurity, Status> {
    let default = cri::LinuxContainerSecurityContext::default();
    let sc = sc.unwrap_or(&default);
    let pid_namespace = match &sc.namespace_options {
        Some(ns) => namespaces(ns)?,
        None => PidNamespace::Pod,
    };
    let capabilities = if sc.privileged {
        None
    } else {
        Some(capabilities(sc.capabilities.as_ref())?)
    };
    let seccomp = crate::seccomp::container_profile(sc, capabilities.as_deref())?;
    let paths = |given: &[String], defaults: &[&str], field: &str| -> Result<Vec<String>, Status> {
        if sc.privileged {
            return Ok(Vec::new());
        }
        if given.is_empty() {
            return Ok(defaults.iter().map(|p| (*p).to_owned()).collect());
        }
        given
            .iter()
            .map(|p| {
                if !p.starts_with('/') || p.split('/').any(|c| c == "..") {
                    Err(invalid(
                        field,
                        format!("{p:?} must be an absolute path without `..`"),
                    ))
                } else {
                    Ok(p.clone())
                }
            })
            .collect()
    };
    let supplemental_groups = sc
        .supplemental_groups
        .iter()
        .map(|g| {
            u32::try_from(*g).map_err(|_| {
                invalid(
                    "supplemental_groups",
                    format!("{g} is not a group id (0 to 4294967295)"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let strict_groups = match cri::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy)
    {
        Ok(cri::SupplementalGroupsPolicy::Merge) => false,
        Ok(cri::SupplementalGroupsPolicy::Strict) => true,
        Err(_) => {
            return Err(invalid(
                "supplemental_groups_policy",
                format!("unknown policy {}", sc.supplemental_groups_policy),
            ))
        }
    };
    Ok(ContainerSecurity {
        capabilities,
        no_new_privileges: sc.no_new_privs,
        supplemental_groups,
        strict_groups,
        readonly_rootfs: sc.readonly_rootfs,
        masked_paths: paths(&sc.masked_paths, &DEFAULT_MASKED_PATHS, "masked_paths")?,
        readonly_paths: paths(
            &sc.readonly_paths,
            &DEFAULT_READONLY_PATHS,
            "readonly_paths",
        )?,
        privileged: sc.privileged,
        pid_namespace,
        seccomp,
        // CRI carries devices beside the security context; `containers` fills them in.
        devices: Vec::new(),
    })
}

/// containerd's capability rule (`WithCapabilities`): from the default set, `ALL` in add
/// gives every capability and `ALL` in drop none (drop wins), then the named adds, then the
/// named drops (a name both added and dropped is dropped; `drop: [ALL], add: [X]` keeps X). Names come without `CAP_`, as
/// Kubernetes writes them; with it they are accepted too.
fn capabilities(c: Option<&cri::Capability>) -> Result<Vec<String>, Status> {
    let default = cri::Capability::default();
    let c = c.unwrap_or(&default);
    if let Some(a) = c.add_ambient_capabilities.first() {
        return Err(invalid(
            "capabilities.add_ambient_capabilities",
            format!("{a}: ambient capabilities are not supported in pod containers"),
        ));
    }
    let is_all = |n: &String| n.trim().eq_ignore_ascii_case("ALL");
    let names = |list: &[String], field: &str| -> Result<Vec<String>, Status> {
        list.iter()
            .filter(|n| !is_all(n))
            .map(|n| {
                capability_name(n).ok_or_else(|| {
                    invalid(
                        field,
                        format!("unknown capability {n:?} (give a name such as NET_ADMIN, or ALL)"),
                    )
                })
            })
            .collect()
    };
    let add = names(&c.add_capabilities, "capabilities.add_capabilities")?;
    let drop = names(&c.drop_capabilities, "capabilities.drop_capabilities")?;
    let mut caps: Vec<String> = if c.drop_capabilities.iter().any(is_all) {
        Vec::new()
    } else if c.add_capabilities.iter().any(is_all) {
        all_capabilities()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect()
    };
    for a in add {
        if !caps.contains(&a) {
            caps.push(a);
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

/// Host namespaces do not exist for a pod VM; neither do user namespaces for its containers.
/// The PID namespace asked for: the pod's (`POD`), the container's own (`CONTAINER`,
/// kubelet's default) or another container's (`TARGET`).
fn namespaces(ns: &cri::NamespaceOption) -> Result<PidNamespace, Status> {
    let node = cri::NamespaceMode::Node as i32;
    for (field, mode) in [("network", ns.network), ("pid", ns.pid), ("ipc", ns.ipc)] {
        if mode == node {
            return Err(invalid(
                &format!("namespace_options.{field}"),
                "NODE: a pod is its own VM, so it cannot join the node's namespaces",
            ));
        }
    }
    let pid = match cri::NamespaceMode::try_from(ns.pid) {
        Ok(cri::NamespaceMode::Pod) => PidNamespace::Pod,
        Ok(cri::NamespaceMode::Container) => PidNamespace::Container,
        Ok(cri::NamespaceMode::Target) if !ns.target_id.is_empty() => {
            PidNamespace::Target(ns.target_id.clone())
        }
        Ok(cri::NamespaceMode::Target) => {
            return Err(invalid(
                "namespace_options.target_id",
                "TARGET needs the id of the container whose PID namespace to join",
            ))
        }
        _ => {
            return Err(invalid(
                "namespace_options.pid",
                format!("unknown namespace mode {}", ns.pid),
            ))
        }
    };
    if ns
        .userns_options
        .as_ref()
        .is_some_and(|u| u.mode != cri::NamespaceMode::Node as i32)
    {
        return Err(invalid(
            "namespace_options.userns_options",
            "user namespaces are not supported for pod containers",
        ));
    }
    Ok(pid)
}

/// A pod's security settings: its sysctls (namespaced ones only: the pod's containers share
/// the VM's kernel) and whether it is privileged. The pod security context's user, groups,
/// read-only root, SELinux, seccomp and AppArmor fields apply to the sandbox's own (pause)
/// container, which here is the VM's holder process, and are ignored; host namespaces are
/// refused.
///
/// # Errors
/// `InvalidArgument` naming the sysctl or the field.
pub(crate) fn pod_security(
    linux: Option<&cri::LinuxPodSandboxConfig>,
) -> Result<(BTreeMap<String, String>, bool), Status> {
    let Some(linux) = linux else {
        return Ok((BTreeMap::new(), false));
    };
    let mut sysctls = BTreeMap::new();
    for (key, value) in &linux.sysctls {
        check_sysctl("LinuxPodSandboxConfig.sysctls", key, value)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        sysctls.insert(key.clone(), value.clone());
    }
    let privileged = match &linux.security_context {
        Some(sc) => {
            if let Some(ns) = &sc.namespace_options {
                namespaces(ns)?;
            }
            sc.privileged
        }
        None => false,
    };
    Ok((sysctls, privileged))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_of(add: &[&str], drop: &[&str]) -> Vec<String> {
        let sc = cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| (*s).to_owned()).collect(),
                drop_capabilities: drop.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        container_security(Some(&sc)).unwrap().capabilities.unwrap()
    }

    #[test]
    fn no_context_is_containerds_default() {
        let s = container_security(None).unwrap();
        let caps = s.capabilities.unwrap();
        // containerd's default set is Docker's fourteen.
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_CHOWN".to_owned()) && caps.contains(&"CAP_NET_RAW".into()));
        assert!(!caps.contains(&"CAP_NET_ADMIN".to_owned()));
        assert_eq!(s.masked_paths, DEFAULT_MASKED_PATHS);
        assert_eq!(s.readonly_paths, DEFAULT_READONLY_PATHS);
        assert!(!s.no_new_privileges && !s.readonly_rootfs && !s.privileged);
    }

    #[test]
    fn capabilities_follow_containerd() {
        let c = caps_of(&["NET_ADMIN"], &["CHOWN", "net_raw"]);
        assert!(c.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!c.contains(&"CAP_CHOWN".to_owned()) && !c.contains(&"CAP_NET_RAW".to_owned()));
        assert_eq!(c.len(), 13);
        // Drop wins over add, for names and for ALL.
        assert!(!caps_of(&["CHOWN"], &["CHOWN"]).contains(&"CAP_CHOWN".to_owned()));
        assert!(caps_of(&["ALL"], &["ALL"]).is_empty());
        assert_eq!(caps_of(&[], &["ALL"]), Vec::<String>::new());
        // Named adds come after `ALL` is dropped (containerd's order).
        assert_eq!(
            caps_of(&["NET_BIND_SERVICE"], &["ALL"]),
            ["CAP_NET_BIND_SERVICE"]
        );
        let all = caps_of(&["ALL"], &["SYS_ADMIN"]);
        assert_eq!(all.len(), all_capabilities().len() - 1);
        assert!(!all.contains(&"CAP_SYS_ADMIN".to_owned()));
        assert!(caps_of(&["CAP_SYS_TIME"], &[]).contains(&"CAP_SYS_TIME".to_owned()));
    }

    #[test]
    fn privileged_keeps_everything_and_masks_nothing() {
        let sc = cri::LinuxContainerSecurityContext {
            privileged: true,
            masked_paths: vec!["/proc/kcore".into()],
            capabilities: Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = container_security(Some(&sc)).unwrap();
        assert_eq!(s.capabilities, None);
        assert!(s.masked_paths.is_empty() && s.readonly_paths.is_empty() && s.privileged);
    }

    #[test]
    fn given_paths_groups_and_flags_are_kept() {
        let sc = cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/bin/ls".into()],
            readonly_paths: vec!["/tmp".into()],
            supplemental_groups: vec![1234, 5678],
            supplemental_groups_policy: cri::SupplementalGroupsPolicy::Strict as i32,
            no_new_privs: true,
            readonly_rootfs: true,
            ..Default::default()
        };
        let s = container_security(Some(&sc)).unwrap();
        assert_eq!(s.masked_paths, ["/bin/ls"]);
        assert_eq!(s.readonly_paths, ["/tmp"]);
        assert_eq!(s.supplemental_groups, [1234, 5678]);
        assert!(s.strict_groups && s.no_new_privileges && s.readonly_rootfs);
        let g = s.credentials();
        assert_eq!(g.group_add, ["1234", "5678"]);
        assert!(g.no_new_privileges);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = |sc: cri::LinuxContainerSecurityContext| {
            let e = container_security(Some(&sc)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            e.message().to_owned()
        };
        let e = refused(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: vec!["FLY".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(e.contains("add_capabilities") && e.contains("FLY"), "{e}");
        let e = refused(cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(e.contains("ambient"), "{e}");
        let e = refused(cri::LinuxContainerSecurityContext {
            masked_paths: vec!["proc/kcore".into()],
            ..Default::default()
        });
        assert!(
            e.contains("masked_paths") && e.contains("proc/kcore"),
            "{e}"
        );
        let e = refused(cri::LinuxContainerSecurityContext {
            readonly_paths: vec!["/a/../../etc".into()],
            ..Default::default()
        });
        assert!(e.contains("readonly_paths"), "{e}");
        let e = refused(cri::LinuxContainerSecurityContext {
            supplemental_groups: vec![-1],
            ..Default::default()
        });
        assert!(e.contains("supplemental_groups") && e.contains("-1"), "{e}");
        let e = refused(cri::LinuxContainerSecurityContext {
            supplemental_groups_policy: 7,
            ..Default::default()
        });
        assert!(e.contains("supplemental_groups_policy"), "{e}");
        let e = refused(cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(e.contains("namespace_options.network"), "{e}");
    }

    #[test]
    fn pod_sysctls_must_be_namespaced() {
        let linux = |k: &str, v: &str| cri::LinuxPodSandboxConfig {
            sysctls: [(k.to_owned(), v.to_owned())].into(),
            ..Default::default()
        };
        let (s, privileged) = pod_security(Some(&linux("kernel.shm_rmid_forced", "1"))).unwrap();
        assert_eq!(s["kernel.shm_rmid_forced"], "1");
        assert!(!privileged);
        assert!(pod_security(Some(&linux("fs.mqueue.msg_max", "100"))).is_ok());
        assert!(pod_security(Some(&linux("net.ipv4.ip_unprivileged_port_start", "0"))).is_ok());
        let e = pod_security(Some(&linux("vm.swappiness", "1"))).unwrap_err();
        assert!(
            e.message().contains("vm.swappiness") && e.message().contains("not a namespaced"),
            "{}",
            e.message()
        );
        assert!(pod_security(Some(&linux("net.x", "a\nb"))).is_err());
        let privileged = cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                privileged: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(pod_security(Some(&privileged)).unwrap().1);
        let host_net = cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(pod_security(Some(&host_net))
            .unwrap_err()
            .message()
            .contains("namespace_options.network"));
    }
}
