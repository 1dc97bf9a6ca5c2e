//! The pod VM's size from RunPodSandbox's `linux.resources` (kubelet's sum of the containers'
//! limits) and `linux.overhead` (the RuntimeClass's pod overhead), as Kata sizes its sandbox:
//! a VM runtime must hold every container's limit in the one VM, where a runc pod draws on the
//! whole node.

use k8s_cri::v1 as cri;
use tonic::Status;

/// What the pod's containers may use together: memory in bytes, vCPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodResources {
    /// The memory limits summed with the overhead's; `None` when neither has one.
    pub(crate) memory_bytes: Option<u64>,
    /// The CPU limits (quota / period, rounded up) summed with the overhead's, at most the
    /// host's CPUs (more vCPUs than cores only makes them wait for each other); `None` when
    /// neither has one.
    pub(crate) vcpus: Option<u32>,
}

/// [`PodResources`] of a sandbox config, on a host with `host_cpus` CPUs.
///
/// # Errors
/// A negative figure (`invalid_argument`, naming the field).
pub(crate) fn of(
    linux: Option<&cri::LinuxPodSandboxConfig>,
    host_cpus: u32,
) -> Result<PodResources, Status> {
    let Some(linux) = linux else {
        return Ok(PodResources::default());
    };
    let parts = [
        ("resources", &linux.resources),
        ("overhead", &linux.overhead),
    ];
    let mut memory: u64 = 0;
    let mut cpus: f64 = 0.0;
    for (what, r) in parts {
        let Some(r) = r else { continue };
        let bytes = u64::try_from(r.memory_limit_in_bytes).map_err(|_| {
            Status::invalid_argument(format!(
                "linux.{what}.memory_limit_in_bytes {} is negative",
                r.memory_limit_in_bytes
            ))
        })?;
        memory = memory.saturating_add(bytes);
        if r.cpu_quota < 0 || r.cpu_period < 0 {
            // -1 is "no quota" in cgroup v1 terms.
            if r.cpu_quota != -1 {
                return Err(Status::invalid_argument(format!(
                    "linux.{what}: cpu_quota {} / cpu_period {} is negative",
                    r.cpu_quota, r.cpu_period
                )));
            }
            continue;
        }
        if r.cpu_quota > 0 {
            let period = if r.cpu_period > 0 {
                r.cpu_period
            } else {
                100_000
            };
            #[allow(clippy::cast_precision_loss)] // microseconds: far below 2^52
            {
                cpus += r.cpu_quota as f64 / period as f64;
            }
        }
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // ceil of a small positive
    let vcpus = (cpus > 0.0).then(|| (cpus.ceil() as u32).clamp(1, host_cpus.max(1)));
    Ok(PodResources {
        memory_bytes: (memory > 0).then_some(memory),
        vcpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(mem: i64, quota: i64, period: i64) -> Option<cri::LinuxContainerResources> {
        Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: mem,
            cpu_quota: quota,
            cpu_period: period,
            ..Default::default()
        })
    }

    #[test]
    fn limits_and_overhead_add_up() {
        let linux = cri::LinuxPodSandboxConfig {
            resources: res(700 << 20, 150_000, 100_000),
            overhead: res(32 << 20, 25_000, 50_000),
            ..Default::default()
        };
        let r = of(Some(&linux), 8).unwrap();
        assert_eq!(r.memory_bytes, Some(732 << 20));
        // 1.5 + 0.5 CPUs.
        assert_eq!(r.vcpus, Some(2));
        // Never more vCPUs than the host has.
        assert_eq!(of(Some(&linux), 1).unwrap().vcpus, Some(1));
    }

    #[test]
    fn nothing_asked_is_the_default_vm() {
        assert_eq!(of(None, 4).unwrap(), PodResources::default());
        let linux = cri::LinuxPodSandboxConfig {
            resources: res(0, -1, 100_000),
            ..Default::default()
        };
        assert_eq!(of(Some(&linux), 4).unwrap(), PodResources::default());
        // A quota without a period is over the kernel's default period.
        let linux = cri::LinuxPodSandboxConfig {
            resources: res(0, 250_000, 0),
            ..Default::default()
        };
        assert_eq!(of(Some(&linux), 4).unwrap().vcpus, Some(3));
    }

    #[test]
    fn negative_figures_are_refused_by_name() {
        let linux = cri::LinuxPodSandboxConfig {
            overhead: res(-5, 0, 0),
            ..Default::default()
        };
        let e = of(Some(&linux), 4).unwrap_err();
        assert!(
            e.message()
                .contains("linux.overhead.memory_limit_in_bytes -5"),
            "{e}"
        );
        let linux = cri::LinuxPodSandboxConfig {
            resources: res(0, -7, 100_000),
            ..Default::default()
        };
        assert!(of(Some(&linux), 4).is_err());
    }
}
