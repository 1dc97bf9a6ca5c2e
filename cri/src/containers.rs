//! CRI container messages ⇄ the engine's pod containers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use a3s_runtime::pod_containers::{ContainerRecord, ContainerSpec, ContainerState};
use a3s_runtime::pods::share::{HostMount, Propagation};
use a3s_vmm::proto::{ContainerDevice, ContainerResources};
use k8s_cri::v1 as cri;
use tonic::Status;

/// What the engine is asked to create, from CreateContainer's configs.
pub(crate) fn spec_of(
    config: &cri::ContainerConfig,
    sandbox: Option<&cri::PodSandboxConfig>,
) -> Result<ContainerSpec, Status> {
    let meta = config
        .metadata
        .as_ref()
        .filter(|m| !m.name.is_empty())
        .ok_or_else(|| Status::invalid_argument("ContainerConfig.metadata.name is missing"))?;
    if config.image.as_ref().is_none_or(|i| i.image.is_empty()) {
        return Err(Status::invalid_argument(
            "ContainerConfig.image.image is missing (name the image to run)",
        ));
    }
    let mounts = config
        .mounts
        .iter()
        .map(mount_of)
        .collect::<Result<Vec<_>, _>>()?;
    let log_path = match (
        sandbox.map(|s| s.log_directory.as_str()),
        config.log_path.as_str(),
    ) {
        (Some(dir), file) if !dir.is_empty() && !file.is_empty() => {
            if Path::new(file).is_absolute() || file.split('/').any(|c| c == "..") {
                return Err(Status::invalid_argument(format!(
                    "log_path {file:?} must be relative to the pod's log directory, without `..`"
                )));
            }
            Some(Path::new(dir).join(file))
        }
        _ => None,
    };
    let security = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let mut context = crate::security::container_security(security)?;
    context.devices = config
        .devices
        .iter()
        .map(device_of)
        .collect::<Result<_, _>>()?;
    // As runc: a group without a user would run as root with that group.
    if let Some(s) = security {
        if s.run_as_group.is_some() && s.run_as_user.is_none() && s.run_as_username.is_empty() {
            return Err(Status::invalid_argument(
                "security_context.run_as_group needs run_as_user or run_as_username",
            ));
        }
    }
    let user = security.and_then(|s| {
        let group = s.run_as_group.as_ref().map(|g| g.value);
        let user = match (&s.run_as_user, s.run_as_username.as_str()) {
            (Some(u), _) => u.value.to_string(),
            (None, "") => return None,
            (None, name) => name.to_owned(),
        };
        Some(match group {
            Some(g) => format!("{user}:{g}"),
            None => user,
        })
    });
    Ok(ContainerSpec {
        name: meta.name.clone(),
        attempt: meta.attempt,
        image: config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        command: config.command.clone(),
        args: config.args.clone(),
        env: config
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect(),
        workdir: Some(config.working_dir.clone()).filter(|w| !w.is_empty()),
        user,
        tty: config.tty,
        stdin: config.stdin,
        labels: sorted(&config.labels),
        annotations: sorted(&config.annotations),
        log_path,
        resources: match config.linux.as_ref().and_then(|l| l.resources.as_ref()) {
            Some(r) => resources_of(r)?,
            None => ContainerResources::default(),
        },
        mounts,
        security: Some(context),
    })
}

/// One CRI device, checked. A pod VM's devices are its own: the host path names the device
/// at the same path in the VM (virtual devices such as `/dev/fuse` and `/dev/net/tun`, which
/// the guest kernel provides); guest-init refuses one the VM lacks. Access is read and
/// write: without a device cgroup filter a read-only or write-only grant could not be held,
/// so it is refused rather than widened.
fn device_of(d: &cri::Device) -> Result<ContainerDevice, Status> {
    let refuse = |why: &str| {
        Err(Status::invalid_argument(format!(
            "device {:?} -> {:?}: {why}",
            d.host_path, d.container_path
        )))
    };
    let under_dev = |p: &str| {
        p.strip_prefix("/dev/")
            .is_some_and(|r| !r.is_empty() && !r.split('/').any(|c| c == ".." || c.is_empty()))
    };
    if !under_dev(&d.host_path) {
        return refuse("the host path must be a path under /dev/, without `..`");
    }
    let container_path = if d.container_path.is_empty() {
        d.host_path.clone()
    } else {
        d.container_path.clone()
    };
    if !under_dev(&container_path) {
        return refuse("the container path must be under /dev/, without `..`");
    }
    let permissions = if d.permissions.is_empty() {
        "rwm"
    } else {
        d.permissions.as_str()
    };
    if permissions.chars().any(|c| !"rwm".contains(c)) {
        return refuse("permissions are letters of \"rwm\"");
    }
    if !(permissions.contains('r') && permissions.contains('w')) {
        return refuse(
            "a pod VM cannot limit a device to reading or writing only; grant \"rw\" (or leave \
             the device out)",
        );
    }
    Ok(ContainerDevice {
        path: d.host_path.clone(),
        container_path,
    })
}

/// One CRI mount, checked; what a pod VM cannot honour is refused naming the mount.
fn mount_of(m: &cri::Mount) -> Result<HostMount, Status> {
    let refuse = |why: &str| {
        Err(Status::invalid_argument(format!(
            "mount {:?} -> {:?}: {why}",
            m.host_path, m.container_path
        )))
    };
    if m.image.is_some() {
        return refuse("image volume mounts are not supported");
    }
    if !m.container_path.starts_with('/') || m.container_path.split('/').any(|c| c == "..") {
        return refuse("the container path must be absolute, without `..`");
    }
    if !m.host_path.starts_with('/') {
        return refuse("the host path must be absolute");
    }
    let propagation =
        match cri::MountPropagation::try_from(m.propagation) {
            Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
            Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
            // The host path reaches the VM through virtiofs; a mount made inside the VM is the
            // guest kernel's and cannot appear on the host.
            Ok(cri::MountPropagation::PropagationBidirectional) => return refuse(
                "PROPAGATION_BIDIRECTIONAL: mounts made inside a pod VM cannot reach the host; \
                 use PROPAGATION_HOST_TO_CONTAINER or PROPAGATION_PRIVATE",
            ),
            Err(_) => return refuse(&format!("unknown propagation {}", m.propagation)),
        };
    // CRI: a recursive read-only mount must be read-only and private.
    if m.recursive_read_only && !m.readonly {
        return refuse("recursive_read_only needs readonly: true");
    }
    if m.recursive_read_only && propagation != Propagation::Private {
        return refuse("recursive_read_only needs PROPAGATION_PRIVATE");
    }
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return refuse(
            "id-mapped mounts are not supported (pod containers have no user namespaces)",
        );
    }
    // selinux_relabel: the pod VM has no SELinux, and the host path is read by virtiofsd as
    // root, so there is nothing to relabel.
    Ok(HostMount {
        host_path: m.host_path.clone().into(),
        container_path: m.container_path.clone(),
        readonly: m.readonly,
        recursive_readonly: m.recursive_read_only,
        propagation,
    })
}

/// CRI's Linux resources as the pod VM's cgroup limits; what a VM cannot honour is refused
/// naming the field (cpuset CPUs outside the VM are refused by the guest, which knows them).
pub(crate) fn resources_of(r: &cri::LinuxContainerResources) -> Result<ContainerResources, Status> {
    let refuse = |field: &str, why: &str| {
        Err(Status::invalid_argument(format!(
            "LinuxContainerResources.{field}: {why}"
        )))
    };
    if let Some(h) = r.hugepage_limits.iter().find(|h| h.limit > 0) {
        return refuse(
            "hugepage_limits",
            &format!(
                "{} of {} hugepages: pod VMs have no hugepages; remove the limit",
                h.limit, h.page_size
            ),
        );
    }
    // A pod VM has one memory node.
    if !matches!(r.cpuset_mems.as_str(), "" | "0") {
        return refuse(
            "cpuset_mems",
            &format!("{:?}: a pod VM has only memory node 0", r.cpuset_mems),
        );
    }
    if let Some(k) = r.unified.keys().next() {
        return refuse(
            "unified",
            &format!("{k}: raw cgroup v2 settings are not applied in pod VMs"),
        );
    }
    let non_negative = |field: &str, v: i64| {
        u64::try_from(v).map_err(|_| {
            Status::invalid_argument(format!("LinuxContainerResources.{field}: {v} is negative"))
        })
    };
    Ok(ContainerResources {
        cpu_period: non_negative("cpu_period", r.cpu_period)?,
        cpu_quota: r.cpu_quota,
        cpu_shares: non_negative("cpu_shares", r.cpu_shares)?,
        memory_limit_bytes: r.memory_limit_in_bytes,
        cpuset_cpus: r.cpuset_cpus.clone(),
        oom_score_adj: r.oom_score_adj,
    })
}

/// The identity the main process started with, as CRI reports it (its primary group among
/// the supplementary ones, as guest-init sets them for a container).
fn user_of(u: &a3s_vmm::proto::ProcessUser) -> cri::ContainerUser {
    cri::ContainerUser {
        linux: Some(cri::LinuxContainerUser {
            uid: i64::from(u.uid),
            gid: i64::from(u.gid),
            supplemental_groups: u.groups.iter().map(|g| i64::from(*g)).collect(),
        }),
    }
}

/// The resources in effect, as CRI reports them.
fn linux_resources(r: &ContainerResources) -> cri::ContainerResources {
    cri::ContainerResources {
        linux: Some(cri::LinuxContainerResources {
            cpu_period: i64::try_from(r.cpu_period).unwrap_or(i64::MAX),
            cpu_quota: r.cpu_quota,
            cpu_shares: i64::try_from(r.cpu_shares).unwrap_or(i64::MAX),
            memory_limit_in_bytes: r.memory_limit_bytes,
            oom_score_adj: r.oom_score_adj,
            cpuset_cpus: r.cpuset_cpus.clone(),
            ..Default::default()
        }),
        windows: None,
    }
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn unsorted(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn state(s: ContainerState) -> i32 {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
    }
}

pub(crate) fn metadata(rec: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: rec.spec.name.clone(),
        attempt: rec.spec.attempt,
    }
}

fn image(rec: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: rec.spec.image.clone(),
        ..Default::default()
    }
}

/// The ListContainers item of `rec`.
pub(crate) fn item_of(rec: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: rec.id.clone(),
        pod_sandbox_id: rec.pod_id.clone(),
        metadata: Some(metadata(rec)),
        image: Some(image(rec)),
        image_ref: rec.image_id.clone(),
        state: state(rec.state),
        created_at: rec.created_ns,
        labels: unsorted(&rec.spec.labels),
        annotations: unsorted(&rec.spec.annotations),
        image_id: rec.image_id.clone(),
    }
}

/// The ContainerStatus of `rec`.
pub(crate) fn status_of(rec: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: Some(metadata(rec)),
        state: state(rec.state),
        created_at: rec.created_ns,
        started_at: rec.started_ns,
        finished_at: rec.finished_ns,
        exit_code: rec.exit_code,
        image: Some(image(rec)),
        image_ref: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: unsorted(&rec.spec.labels),
        annotations: unsorted(&rec.spec.annotations),
        log_path: rec
            .spec
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        image_id: rec.image_id.clone(),
        resources: Some(linux_resources(&rec.spec.resources)),
        user: rec.process_user.as_ref().map(user_of),
        mounts: rec
            .spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.display().to_string(),
                readonly: m.readonly,
                recursive_read_only: m.recursive_readonly,
                propagation: match m.propagation {
                    Propagation::Private => cri::MountPropagation::PropagationPrivate,
                    Propagation::HostToContainer => {
                        cri::MountPropagation::PropagationHostToContainer
                    }
                } as i32,
                ..Default::default()
            })
            .collect(),
    }
}

/// Whether `rec` passes ListContainers' filter (id prefix, state, pod, labels).
pub(crate) fn matches(filter: Option<&cri::ContainerFilter>, rec: &ContainerRecord) -> bool {
    let Some(f) = filter else { return true };
    (f.id.is_empty() || rec.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || rec.pod_id.starts_with(&f.pod_sandbox_id))
        && f.state.as_ref().is_none_or(|v| v.state == state(rec.state))
        && f.label_selector
            .iter()
            .all(|(k, v)| rec.spec.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: "web".into(),
                attempt: 1,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            command: vec!["sh".into()],
            envs: vec![cri::KeyValue {
                key: "A".into(),
                value: "b=c".into(),
            }],
            log_path: "web/1.log".into(),
            labels: [("app".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        }
    }

    fn sandbox() -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            log_directory: "/var/log/pods/x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn translates_a_container_config() {
        let spec = spec_of(&config(), Some(&sandbox())).unwrap();
        assert_eq!((spec.name.as_str(), spec.attempt), ("web", 1));
        assert_eq!(spec.env, ["A=b=c"]);
        assert_eq!(
            spec.log_path.as_deref(),
            Some(Path::new("/var/log/pods/x/web/1.log"))
        );
        assert_eq!(spec.labels["app"], "web");
        assert_eq!(spec_of(&config(), None).unwrap().log_path, None);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        let mut c = config();
        c.metadata = None;
        assert!(spec_of(&c, None).unwrap_err().message().contains("name"));
        let mut c = config();
        c.log_path = "../../etc/x".into();
        assert!(spec_of(&c, Some(&sandbox())).is_err());
        let refused = |m: cri::Mount| {
            let mut c = config();
            c.mounts.push(m);
            let e = spec_of(&c, None).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
            e.message().to_owned()
        };
        let mount = |host: &str, container: &str| cri::Mount {
            host_path: host.into(),
            container_path: container.into(),
            ..Default::default()
        };
        assert!(refused(mount("/h", "c")).contains("absolute"));
        assert!(refused(mount("/h", "/a/../b")).contains(".."));
        assert!(refused(mount("h", "/c")).contains("host path"));
        assert!(refused(cri::Mount {
            propagation: cri::MountPropagation::PropagationBidirectional as i32,
            ..mount("/h", "/c")
        })
        .contains("PROPAGATION_BIDIRECTIONAL"));
        assert!(refused(cri::Mount {
            recursive_read_only: true,
            ..mount("/h", "/c")
        })
        .contains("needs readonly"));
        assert!(refused(cri::Mount {
            recursive_read_only: true,
            readonly: true,
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..mount("/h", "/c")
        })
        .contains("needs PROPAGATION_PRIVATE"));
        let mut c = config();
        c.mounts.push(cri::Mount {
            recursive_read_only: true,
            readonly: true,
            ..mount("/h", "/c")
        });
        c.mounts.push(cri::Mount {
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..mount("/h2", "/c2")
        });
        let spec = spec_of(&c, None).unwrap();
        assert!(spec.mounts[0].recursive_readonly && spec.mounts[0].readonly);
        assert_eq!(spec.mounts[1].propagation, Propagation::HostToContainer);
        assert!(refused(cri::Mount {
            image: Some(cri::ImageSpec::default()),
            ..mount("", "/c")
        })
        .contains("image"));
    }

    #[test]
    fn devices_name_the_vms_own_and_need_read_write() {
        let dev = |host: &str, container: &str, permissions: &str| cri::Device {
            host_path: host.into(),
            container_path: container.into(),
            permissions: permissions.into(),
        };
        let given = device_of(&dev("/dev/fuse", "", "")).unwrap();
        assert_eq!(
            given.container_path, "/dev/fuse",
            "the host path by default"
        );
        let renamed = device_of(&dev("/dev/net/tun", "/dev/tun0", "rw")).unwrap();
        assert_eq!(
            (renamed.path.as_str(), renamed.container_path.as_str()),
            ("/dev/net/tun", "/dev/tun0")
        );
        for (d, why) in [
            (dev("/dev/fuse", "", "r"), "reading or writing only"),
            (dev("/dev/fuse", "", "rwx"), "letters"),
            (dev("/etc/passwd", "", "rw"), "under /dev/"),
            (dev("/dev/../etc", "", "rw"), "under /dev/"),
            (dev("/dev/fuse", "/fuse", "rw"), "container path"),
        ] {
            let e = device_of(&d).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(why), "{}", e.message());
        }
        let mut c = config();
        c.devices.push(dev("/dev/fuse", "", "rwm"));
        let spec = spec_of(&c, None).unwrap();
        let security = spec.security.unwrap();
        assert_eq!(security.devices, [given]);
    }

    #[test]
    fn mounts_translate_in_order() {
        let mut c = config();
        c.mounts = vec![
            cri::Mount {
                host_path: "/var/lib/kubelet/pods/u/etc-hosts".into(),
                container_path: "/etc/hosts".into(),
                ..Default::default()
            },
            cri::Mount {
                host_path: "/var/lib/kubelet/pods/u/volumes/token".into(),
                container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                readonly: true,
                selinux_relabel: true,
                ..Default::default()
            },
        ];
        let spec = spec_of(&c, None).unwrap();
        assert_eq!(spec.mounts.len(), 2);
        assert_eq!(
            spec.mounts[0].host_path,
            Path::new("/var/lib/kubelet/pods/u/etc-hosts")
        );
        assert_eq!(
            spec.mounts[1].container_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert!(spec.mounts[1].readonly && !spec.mounts[0].readonly);
    }

    #[test]
    fn resources_translate_and_what_a_vm_lacks_is_refused_by_name() {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 << 20,
                oom_score_adj: 100,
                ..Default::default()
            }),
            ..Default::default()
        });
        let spec = spec_of(&c, None).unwrap();
        assert_eq!(spec.resources.cpu_quota, 50_000);
        assert_eq!(spec.resources.cpu_shares, 512);
        assert_eq!(spec.resources.memory_limit_bytes, 64 << 20);
        let rec_status = linux_resources(&spec.resources).linux.unwrap();
        assert_eq!(rec_status.cpu_period, 100_000);
        assert_eq!(rec_status.oom_score_adj, 100);
        let refused =
            |r: cri::LinuxContainerResources| resources_of(&r).unwrap_err().message().to_owned();
        let huge = refused(cri::LinuxContainerResources {
            hugepage_limits: vec![cri::HugepageLimit {
                page_size: "2MB".into(),
                limit: 1 << 21,
            }],
            ..Default::default()
        });
        assert!(huge.contains("hugepage_limits"), "{huge}");
        let mems = refused(cri::LinuxContainerResources {
            cpuset_mems: "1".into(),
            ..Default::default()
        });
        assert!(mems.contains("cpuset_mems"), "{mems}");
        let unified = refused(cri::LinuxContainerResources {
            unified: [("memory.high".to_owned(), "1".to_owned())].into(),
            ..Default::default()
        });
        assert!(unified.contains("unified"), "{unified}");
        let negative = refused(cri::LinuxContainerResources {
            cpu_shares: -1,
            ..Default::default()
        });
        assert!(negative.contains("cpu_shares"), "{negative}");
    }

    #[test]
    fn status_reports_the_identity_the_main_process_started_with() {
        let spec = spec_of(&config(), None).unwrap();
        let mut rec = ContainerRecord {
            id: "c".repeat(64),
            pod_id: "p".repeat(64),
            spec,
            image_ref: "busybox".into(),
            image_id: "sha256:00".into(),
            argv: vec!["sh".into()],
            env: Vec::new(),
            workdir: None,
            user: None,
            stop_signal: 15,
            state: ContainerState::Running,
            created_ns: 1,
            started_ns: 2,
            finished_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            mounts: Vec::new(),
            process_user: None,
            root: None,
        };
        assert_eq!(status_of(&rec).user, None);
        rec.process_user = Some(a3s_vmm::proto::ProcessUser {
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 1234, 50000],
        });
        let user = status_of(&rec).user.unwrap().linux.unwrap();
        assert_eq!((user.uid, user.gid), (1000, 1000));
        assert_eq!(user.supplemental_groups, [1000, 1234, 50000]);
    }

    #[test]
    fn users_come_from_the_security_context() {
        let mut c = config();
        c.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                run_as_user: Some(cri::Int64Value { value: 1000 }),
                run_as_group: Some(cri::Int64Value { value: 50 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(spec_of(&c, None).unwrap().user.as_deref(), Some("1000:50"));
        let mut group_only = c.clone();
        if let Some(sc) = group_only
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
        {
            sc.run_as_user = None;
        }
        let e = spec_of(&group_only, None).unwrap_err();
        assert!(e.message().contains("run_as_group"), "{}", e.message());
    }
}
