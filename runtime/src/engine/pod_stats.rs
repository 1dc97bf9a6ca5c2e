//! Pod containers' resources and statistics, read from and written to their cgroups inside the
//! pod VM by guest-init (see guest `container_cgroup`); a pod's statistics are its VM's figures
//! (memory, CPU, NIC counters as the guest kernel sees them) plus its containers'.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use a3s_vmm::proto::{ContainerResources, ContainerStats, GuestStats};

use super::{Engine, EngineError};
use crate::audit::Outcome;
use crate::boxes::client::{ClientMsg, MonitorMsg};
use crate::boxes::BoxRecord;
use crate::pod_containers::{ContainerRecord, ContainerState};
use crate::pods::{PodError, PodRecord};

/// A container and its figures (`None`: not running, or its VM did not answer).
pub type ContainerFigures = (ContainerRecord, Option<ContainerStats>);

/// A pod's figures.
#[derive(Clone, Debug)]
pub struct PodStats {
    /// The pod.
    pub pod: PodRecord,
    /// When they were read, nanoseconds since the epoch.
    pub timestamp_ns: i64,
    /// Its VM as the guest kernel sees it (`None`: the VM does not run).
    pub vm: Option<GuestStats>,
    /// Its containers.
    pub containers: Vec<ContainerFigures>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// An update over the limits in effect: as containerd does, a zero (or empty) field keeps
/// the current value (kubelet sends only what it changes).
pub(crate) fn merged(
    current: &ContainerResources,
    update: ContainerResources,
) -> ContainerResources {
    let keep = |new: u64, old: u64| if new == 0 { old } else { new };
    let keep_i = |new: i64, old: i64| if new == 0 { old } else { new };
    ContainerResources {
        cpu_period: keep(update.cpu_period, current.cpu_period),
        cpu_quota: keep_i(update.cpu_quota, current.cpu_quota),
        cpu_shares: keep(update.cpu_shares, current.cpu_shares),
        memory_limit_bytes: keep_i(update.memory_limit_bytes, current.memory_limit_bytes),
        cpuset_cpus: if update.cpuset_cpus.is_empty() {
            current.cpuset_cpus.clone()
        } else {
            update.cpuset_cpus
        },
        oom_score_adj: keep_i(update.oom_score_adj, current.oom_score_adj),
    }
}

impl Engine {
    /// UpdateContainerResources: applies `resources` to a running container's cgroup in its
    /// pod VM and records them (ContainerStatus reports them). Audited (`container.update`).
    ///
    /// # Errors
    /// Not found, not running, pod not ready; the guest's refusal naming the field it cannot
    /// honour.
    pub fn update_container_resources(
        &self,
        key: &str,
        resources: ContainerResources,
    ) -> Result<ContainerRecord, EngineError> {
        let mut rec = self.container(key)?;
        if rec.state != ContainerState::Running {
            return Err(PodError::WrongState(format!(
                "container {} is not running; resources are changed on a running container",
                rec.id
            ))
            .into());
        }
        let (_, boxed) = self.running_pod(&rec.pod_id)?;
        let resources = merged(&rec.spec.resources, resources);
        let msg = ClientMsg::ContainerUpdate {
            id: rec.id.clone(),
            resources: resources.clone(),
        };
        match self.boxes.ask(&boxed, &msg) {
            Ok(MonitorMsg::ContainerStats { .. }) => {}
            Ok(other) => {
                return Err(EngineError::context(
                    "updating container resources",
                    std::io::Error::other(format!("unexpected answer {other:?}")),
                ))
            }
            Err(e) => {
                let message = e.to_string();
                self.record_container("container.update", &rec, Outcome::Failure, &message)?;
                return Err(PodError::WrongState(format!(
                    "container {}: the pod VM cannot apply these resources: {message}",
                    rec.id
                ))
                .into());
            }
        }
        rec.spec.resources = resources;
        self.update_container(&rec)?;
        self.record_container("container.update", &rec, Outcome::Success, "resources")?;
        Ok(rec)
    }

    /// Figures of the running containers among `recs`, asked of `boxed` in one request.
    fn figures_in(
        &self,
        boxed: &BoxRecord,
        recs: Vec<ContainerRecord>,
    ) -> Result<Vec<ContainerFigures>, EngineError> {
        let ids: Vec<String> = recs
            .iter()
            .filter(|r| r.state == ContainerState::Running)
            .map(|r| r.id.clone())
            .collect();
        let mut by_id: HashMap<String, ContainerStats> = if ids.is_empty() {
            HashMap::new()
        } else {
            match self.boxes.ask(boxed, &ClientMsg::ContainerStats { ids })? {
                MonitorMsg::ContainerStats { stats } => {
                    stats.into_iter().map(|s| (s.id.clone(), s)).collect()
                }
                _ => HashMap::new(),
            }
        };
        Ok(recs
            .into_iter()
            .map(|r| {
                let mut s = by_id.remove(&r.id);
                // A root on the pod's share: its writable layer is on the host.
                if let (Some(s), Some(_)) = (s.as_mut(), &r.root) {
                    let share = crate::pods::share::PodShare::of(&self.home, &r.pod_id);
                    (s.fs_used_bytes, s.fs_inodes_used) = share.writable_usage(&r.id);
                }
                (r, s)
            })
            .collect())
    }

    /// ContainerStats / ListContainerStats: the figures of every container (`None` for those
    /// not running), grouped by pod VM so each VM is asked once.
    ///
    /// # Errors
    /// Store errors; a pod VM's answer.
    pub fn container_stats(&self) -> Result<Vec<ContainerFigures>, EngineError> {
        let mut by_pod: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
        for rec in self.list_containers()? {
            by_pod.entry(rec.pod_id.clone()).or_default().push(rec);
        }
        let mut out = Vec::new();
        for (pod, recs) in by_pod {
            match self.running_pod(&pod) {
                Ok((_, boxed)) => out.extend(self.figures_in(&boxed, recs)?),
                Err(_) => out.extend(recs.into_iter().map(|r| (r, None))),
            }
        }
        out.sort_by_key(|(r, _)| r.created_ns);
        Ok(out)
    }

    /// PodSandboxStats / ListPodSandboxStats: every pod's VM figures and its containers'.
    ///
    /// # Errors
    /// Store errors; a pod VM's answer.
    pub fn pod_stats(&self) -> Result<Vec<PodStats>, EngineError> {
        let containers = self.list_containers()?;
        let mut out = Vec::new();
        for (pod, _) in self.list_pods()? {
            let recs: Vec<ContainerRecord> = containers
                .iter()
                .filter(|c| c.pod_id == pod.id)
                .cloned()
                .collect();
            let timestamp_ns = now_ns();
            let (vm, containers) = match self.running_pod(&pod.id) {
                Ok((_, boxed)) => {
                    let vm = match self.boxes.ask(&boxed, &ClientMsg::Stats)? {
                        MonitorMsg::Stats(s) => Some(s),
                        _ => None,
                    };
                    (vm, self.figures_in(&boxed, recs)?)
                }
                Err(_) => (None, recs.into_iter().map(|r| (r, None)).collect()),
            };
            out.push(PodStats {
                pod,
                timestamp_ns,
                vm,
                containers,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let current = ContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            oom_score_adj: 10,
        };
        let only_memory = ContainerResources {
            memory_limit_bytes: 32 << 20,
            ..Default::default()
        };
        let m = merged(&current, only_memory);
        assert_eq!(m.memory_limit_bytes, 32 << 20);
        assert_eq!(
            (m.cpu_quota, m.cpu_period, m.cpu_shares),
            (50_000, 100_000, 512)
        );
        assert_eq!((m.cpuset_cpus.as_str(), m.oom_score_adj), ("0", 10));
        assert_eq!(merged(&current, ContainerResources::default()), current);
    }
}
