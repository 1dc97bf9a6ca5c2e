//! CRI statistics from the engine's figures: a container's come from its cgroup in the pod VM,
//! a pod's from its VM as the guest kernel sees it (CPU, memory, the NIC's counters, processes)
//! plus its containers'. CPU rates (nano cores) are the change of the CPU time between two
//! calls, as containerd computes them.

use std::collections::HashMap;
use std::sync::Mutex;

use a3s_runtime::engine::{ContainerFigures, PodStats};
use a3s_runtime::pod_containers::ContainerRecord;
use a3s_runtime::pods::PodRecord;
use a3s_vmm::proto::GuestStats;
use k8s_cri::v1 as cri;

use crate::containers;

/// Nanoseconds per guest CPU tick (`USER_HZ` is 100 on x86_64).
const NS_PER_TICK: u64 = 10_000_000;

/// Previous CPU samples, for rates.
#[derive(Debug, Default)]
pub(crate) struct CpuRates(Mutex<HashMap<String, (i64, u64)>>);

impl CpuRates {
    /// The rate of `usage_ns` since the last sample of `key` (`None` for the first one).
    pub(crate) fn nano_cores(&self, key: &str, now_ns: i64, usage_ns: u64) -> Option<u64> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = map.insert(key.to_owned(), (now_ns, usage_ns));
        let (then, used) = previous?;
        let elapsed = u64::try_from(now_ns.checked_sub(then)?).ok()?;
        if elapsed == 0 {
            return None;
        }
        let used = usage_ns.checked_sub(used)?;
        u64::try_from(u128::from(used) * 1_000_000_000 / u128::from(elapsed)).ok()
    }
}

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

/// A container's CRI statistics; one that does not run has only its attributes. `fs` is the
/// host directory its writable layer is accounted to, the one ImageFsInfo reports for
/// container filesystems (kubelet looks the mountpoint up on the node).
pub(crate) fn container_stats(
    (rec, figures): &ContainerFigures,
    now_ns: i64,
    rates: &CpuRates,
    fs: &str,
) -> cri::ContainerStats {
    let attributes = Some(cri::ContainerAttributes {
        id: rec.id.clone(),
        metadata: Some(containers::metadata(rec)),
        labels: containers::unsorted(&rec.spec.labels),
        annotations: containers::unsorted(&rec.spec.annotations),
    });
    let Some(s) = figures else {
        return cri::ContainerStats {
            attributes,
            ..Default::default()
        };
    };
    let limit = u64::try_from(s.limits.memory_limit_bytes).unwrap_or(0);
    cri::ContainerStats {
        attributes,
        cpu: Some(cri::CpuUsage {
            timestamp: now_ns,
            usage_core_nano_seconds: value(s.cpu_usage_ns),
            usage_nano_cores: rates
                .nano_cores(&rec.id, now_ns, s.cpu_usage_ns)
                .and_then(value),
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: now_ns,
            working_set_bytes: value(s.memory_working_set_bytes),
            available_bytes: (limit > 0)
                .then(|| limit.saturating_sub(s.memory_working_set_bytes))
                .and_then(value),
            usage_bytes: value(s.memory_usage_bytes),
            rss_bytes: value(s.memory_rss_bytes),
            page_faults: value(s.page_faults),
            major_page_faults: value(s.major_page_faults),
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: now_ns,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: fs.to_owned(),
            }),
            used_bytes: value(s.fs_used_bytes),
            inodes_used: value(s.fs_inodes_used),
        }),
        swap: None,
    }
}

/// A pod's CRI statistics: its VM's figures and its containers'.
pub(crate) fn pod_stats(p: &PodStats, rates: &CpuRates, fs: &str) -> cri::PodSandboxStats {
    let now = p.timestamp_ns;
    let attributes = Some(cri::PodSandboxAttributes {
        id: p.pod.id.clone(),
        metadata: Some(crate::pods::metadata(&p.pod)),
        labels: containers::unsorted(&p.pod.spec.labels),
        annotations: containers::unsorted(&p.pod.spec.annotations),
    });
    let containers = p
        .containers
        .iter()
        .map(|c| container_stats(c, now, rates, fs))
        .collect();
    let Some(vm) = &p.vm else {
        return cri::PodSandboxStats {
            attributes,
            linux: Some(cri::LinuxPodSandboxStats {
                containers,
                ..Default::default()
            }),
            windows: None,
        };
    };
    cri::PodSandboxStats {
        attributes,
        linux: Some(linux_pod(
            vm,
            now,
            &format!("pod:{}", p.pod.id),
            rates,
            containers,
        )),
        windows: None,
    }
}

fn linux_pod(
    vm: &GuestStats,
    now: i64,
    key: &str,
    rates: &CpuRates,
    containers: Vec<cri::ContainerStats>,
) -> cri::LinuxPodSandboxStats {
    let cpu_ns = vm.cpu_busy_ticks.saturating_mul(NS_PER_TICK);
    let nic = cri::NetworkInterfaceUsage {
        name: "eth0".into(),
        rx_bytes: value(vm.net_rx_bytes),
        rx_errors: None,
        tx_bytes: value(vm.net_tx_bytes),
        tx_errors: None,
    };
    cri::LinuxPodSandboxStats {
        cpu: Some(cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: value(cpu_ns),
            usage_nano_cores: rates.nano_cores(key, now, cpu_ns).and_then(value),
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: now,
            working_set_bytes: value(vm.mem_used_bytes),
            available_bytes: value(vm.mem_limit_bytes.saturating_sub(vm.mem_used_bytes)),
            usage_bytes: value(vm.mem_used_bytes),
            ..Default::default()
        }),
        network: Some(cri::NetworkUsage {
            timestamp: now,
            default_interface: Some(nic.clone()),
            interfaces: vec![nic],
        }),
        process: Some(cri::ProcessUsage {
            timestamp: now,
            process_count: value(vm.pids),
        }),
        containers,
    }
}

/// Whether a container passes ListContainerStats' filter.
pub(crate) fn container_matches(
    f: Option<&cri::ContainerStatsFilter>,
    rec: &ContainerRecord,
) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || rec.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || rec.pod_id.starts_with(&f.pod_sandbox_id))
        && f.label_selector
            .iter()
            .all(|(k, v)| rec.spec.labels.get(k) == Some(v))
}

/// Whether a pod passes ListPodSandboxStats' filter.
pub(crate) fn pod_matches(f: Option<&cri::PodSandboxStatsFilter>, rec: &PodRecord) -> bool {
    let Some(f) = f else { return true };
    (f.id.is_empty() || rec.id.starts_with(&f.id))
        && f.label_selector
            .iter()
            .all(|(k, v)| rec.spec.labels.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_cpu_time_over_wall_time_from_the_second_sample() {
        let r = CpuRates::default();
        assert_eq!(r.nano_cores("a", 1_000_000_000, 5_000), None);
        // Half a core for two seconds.
        assert_eq!(
            r.nano_cores("a", 3_000_000_000, 1_000_005_000),
            Some(500_000_000)
        );
        // A counter that went back (a new container with the same key) gives no rate.
        assert_eq!(r.nano_cores("a", 4_000_000_000, 0), None);
        assert_eq!(r.nano_cores("b", 4_000_000_000, 0), None);
    }

    #[test]
    fn pod_figures_map_to_cri() {
        let vm = GuestStats {
            mem_used_bytes: 100,
            mem_limit_bytes: 1000,
            cpu_busy_ticks: 3,
            net_rx_bytes: 7,
            net_tx_bytes: 9,
            pids: 4,
            ..Default::default()
        };
        let s = linux_pod(&vm, 1, "pod:x", &CpuRates::default(), Vec::new());
        let cpu = s.cpu.unwrap();
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 30_000_000);
        assert_eq!(s.memory.unwrap().available_bytes.unwrap().value, 900);
        let nic = s.network.unwrap().default_interface.unwrap();
        assert_eq!(
            (nic.rx_bytes.unwrap().value, nic.tx_bytes.unwrap().value),
            (7, 9)
        );
        assert_eq!(s.process.unwrap().process_count.unwrap().value, 4);
    }
}
