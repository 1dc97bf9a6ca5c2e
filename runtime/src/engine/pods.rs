//! Pod sandboxes (the CRI's pods): one MicroVM per pod, written once here for every front end.
//!
//! The pod's VM is a box of the embedded `busybox` image whose workload only sleeps: it holds
//! the pod's VM, hostname and DNS configuration the way Kubernetes' pause container holds a
//! pod's namespaces. Its containers are processes in that VM (see `pod_containers`).
//!
//! A confidential pod (RuntimeClass handler or `io.a3s.box/*` annotations, [`PodTee`]) is the
//! same box in TEE mode: its monitor measures exactly what it boots (the image allow-list is
//! on the measured command line), the guest attests to the KBS and places the secrets in
//! `/run/secrets` before the box reports running, so before RunPodSandbox returns and before
//! any container can start. Any failure removes the box and the record and is audited.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{CreateBox, Engine, EngineError};
use crate::audit::{Event, Outcome};
use crate::boxes::security::{check_sysctl, SecurityConfig};
use crate::boxes::{BoxError, BoxState, CreateRequest, DEFAULT_MEM_MIB};
use crate::pods::share::{PodShare, GUEST_POD_MOUNTS, GUEST_POD_ROOTS};
use crate::pods::tee::{PodTee, HANDLER_SNP};
use crate::pods::{PodError, PodRecord, PodSpec, Pods};
use crate::state::{BoxId, StateError};
use crate::tee::spec::TeeMode;
use crate::volumes::{MountSource, MountSpec};
use a3s_vmm::pod_image::POD_SANDBOX_LABEL;

/// The image of a pod's VM (built on this machine; no registry needed).
const SANDBOX_IMAGE: &str = "busybox";
/// Annotation asking for a confidential pod.
pub use crate::pods::tee::TEE_ANNOTATION;
/// How long a pod's VM gets to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a pod's VM runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// The VM runs.
    Ready,
    /// Stopped, failed or gone.
    NotReady,
}

impl Engine {
    fn pods(&self) -> Pods {
        Pods::open(&self.home)
    }

    /// RunPodSandbox: records the pod, boots its VM (the lock is not held across the boot),
    /// and returns the pod once its VM runs. A failed boot leaves neither box nor record.
    /// A confidential pod's VM runs the trust pipeline during that boot (module docs).
    ///
    /// A pod of the same name, namespace, uid and attempt is returned as it is (a retry).
    ///
    /// # Errors
    /// [`PodError::Invalid`] for wrong confidential settings, [`EngineError::PodUnsupported`]
    /// for an SEV-SNP pod on a host without SEV-SNP (both audited, nothing started), box
    /// creation and boot errors (a failed TEE step names the step).
    pub fn run_pod(&self, spec: &PodSpec) -> Result<PodRecord, EngineError> {
        let tee = self.pod_tee(spec)?;
        let security = Self::pod_security(spec)?;
        let pods = self.pods();
        let id = BoxId::random().as_str().to_owned();
        // A CNI node's configuration is read first: a missing or broken one fails the call
        // before anything exists.
        let network = self.plan_pod_network(&id, spec)?;
        // A plain pod's containers get their host paths through one share (pods::share);
        // a confidential pod's VM takes nothing from the host's files.
        let share = match tee {
            Some(_) => None,
            None => {
                let share = PodShare::of(&self.home, &id);
                share.create()?;
                Some(share)
            }
        };
        // Two shares: the CRI mounts (which the host changes too) and the container roots
        // (which only the VM changes, so they stay cached in it: pods::share).
        let mounts = share
            .iter()
            .flat_map(|s| {
                [
                    (s.dir(), GUEST_POD_MOUNTS, false),
                    (s.roots_dir(), GUEST_POD_ROOTS, true),
                ]
            })
            .map(|(dir, target, guest_only)| MountSpec {
                source: MountSource::Bind {
                    path: dir.to_owned(),
                },
                target: target.into(),
                readonly: false,
                nocopy: false,
                guest_only,
            })
            .collect();
        let mut rec = {
            let _lock = pods.lock()?;
            // kubelet retries a RunPodSandbox whose deadline passed during the boot: the pod
            // it asked for is the one already recorded (as CRI-O answers).
            if let Some(p) = pods
                .list()?
                .into_iter()
                .find(|p| p.spec.full_name() == spec.full_name())
            {
                return Ok(p);
            }
            let request = CreateRequest {
                image: SANDBOX_IMAGE.into(),
                name: Some(format!("k8s-pod-{}", &id[..12])),
                entrypoint: Some("sleep".into()),
                args: vec!["2147483647".into()],
                hostname: spec.hostname.clone(),
                tee: tee.as_ref().map(|t| t.tee.clone()),
                kernel_args: tee.as_ref().map(PodTee::kernel_args).unwrap_or_default(),
                labels: [(POD_SANDBOX_LABEL.to_owned(), id.clone())].into(),
                // Sized for the containers' limits and the overhead kubelet gives; the VM's
                // own processes get no limit (each container has its cgroup).
                vcpus: spec.vcpus.unwrap_or(1),
                mem_mib: u64::from(DEFAULT_MEM_MIB),
                memory_limit_bytes: None,
                pod_memory_bytes: spec.memory_bytes,
                net: Self::pod_box_net(spec, network.is_some()),
                mounts,
                security,
                ..CreateRequest::default()
            };
            let boxed = match self.create(&CreateBox {
                request,
                signatures: None,
            }) {
                Ok(b) => b,
                Err(e) => {
                    if let Some(s) = &share {
                        let _ = s.remove();
                    }
                    return Err(e);
                }
            };
            let rec = PodRecord {
                id: id.clone(),
                spec: spec.clone(),
                box_id: boxed.id.as_str().to_owned(),
                created_ns: now_ns(),
                network,
            };
            if let Err(e) = pods.save(&rec) {
                let _ = self.boxes.remove(&rec.box_id, true);
                if let Some(s) = &share {
                    let _ = s.remove();
                }
                return Err(e.into());
            }
            rec
        };
        let booted = self
            .connect_pod_network(&mut rec)
            .and_then(|()| self.start(&rec.box_id).map(drop));
        if let Err(e) = booted {
            let _ = self.boxes.remove(&rec.box_id, true);
            // ADD may have allocated even when it failed: DEL runs in any case. A DEL that
            // fails keeps the record, so StopPodSandbox/RemovePodSandbox retry it.
            let released = self
                .release_pod_network(&mut rec)
                .and_then(|()| self.remove_pod_netns(&rec));
            // Every cause, so a failed TEE step is named.
            let mut message = crate::pods::tee::chain(&e);
            if let Some(s) = &share {
                let _ = s.remove();
            }
            match released {
                Ok(()) => {
                    if let Ok(_lock) = pods.lock() {
                        let _ = pods.delete(&rec.id);
                    }
                }
                Err(d) => message.push_str(&format!(
                    "; releasing its network failed ({d}): the pod stays listed until \
                     StopPodSandbox or RemovePodSandbox releases it"
                )),
            }
            self.record(
                &Event::new("pod.run", Outcome::Failure, message.as_str())
                    .with("pod", rec.id.as_str())
                    .with("name", spec.full_name()),
            )?;
            return Err(match tee {
                // The step the trust pipeline failed at is in the message; nothing is left.
                Some(_) => PodError::Failed(format!(
                    "confidential pod {} did not start (its VM and record are removed): {message}",
                    spec.full_name()
                ))
                .into(),
                None => e,
            });
        }
        self.record(
            &Event::new("pod.run", Outcome::Success, "pod VM running")
                .with_box(rec.box_id.as_str())
                .with("pod", rec.id.as_str())
                .with("name", spec.full_name()),
        )?;
        Ok(rec)
    }

    /// The pod VM's own security options: only its sysctls, which guest-init writes before
    /// the VM reports running (so before any container starts). The VM's processes keep
    /// every capability (each container gets its own context) and its `/dev/shm`.
    fn pod_security(spec: &PodSpec) -> Result<Option<SecurityConfig>, EngineError> {
        if spec.sysctls.is_empty() {
            return Ok(None);
        }
        for (key, value) in &spec.sysctls {
            check_sysctl("pod sysctl", key, value).map_err(|e| PodError::Invalid(e.to_string()))?;
        }
        Ok(Some(SecurityConfig {
            privileged: true,
            sysctls: spec.sysctls.clone(),
            shm_size: 0,
            ..SecurityConfig::default()
        }))
    }

    /// The confidential settings of a pod about to run, refused (audited, nothing started)
    /// when they are wrong or this host cannot honour them.
    fn pod_tee(&self, spec: &PodSpec) -> Result<Option<PodTee>, EngineError> {
        let deny = |e: EngineError| -> Result<Option<PodTee>, EngineError> {
            self.record(
                &Event::new("pod.run", Outcome::Denied, e.to_string())
                    .with("name", spec.full_name()),
            )?;
            Err(e)
        };
        let tee = match PodTee::of(spec) {
            Ok(t) => t,
            Err(e) => return deny(e.into()),
        };
        if tee.as_ref().is_some_and(|t| t.tee.mode == TeeMode::Snp) {
            let host = a3s_vmm::snp::check_host(std::path::Path::new("/"))
                .and_then(|()| a3s_vmm::snp::SnpConfig::from_env().map(drop));
            if let Err(e) = host {
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                return deny(EngineError::PodUnsupported(format!(
                    "runtime handler {HANDLER_SNP}: this host has no SEV-SNP hardware it can \
                     launch guests on: {e}{hint}; nothing was started (use runtime handler \
                     a3s-simulate for the simulated trust pipeline)"
                )));
            }
        }
        Ok(tee)
    }

    /// The confidential settings of a recorded pod (`None`: a plain pod).
    pub(crate) fn recorded_pod_tee(rec: &PodRecord) -> Result<Option<PodTee>, EngineError> {
        Ok(PodTee::of(&rec.spec)?)
    }

    /// Refuses host access (`what`: exec, attach, port-forward) to a confidential pod that
    /// did not opt in with `io.a3s.box/allow-exec: "true"`; the refusal is audited.
    pub(crate) fn refuse_pod_access(
        &self,
        pod: &PodRecord,
        container: Option<&str>,
        what: &str,
    ) -> Result<(), EngineError> {
        let Some(tee) = Self::recorded_pod_tee(pod)? else {
            return Ok(());
        };
        if tee.tee.allow_exec {
            return Ok(());
        }
        let why = format!(
            "{what} refused: pod {} is confidential and did not opt in to host access \
             (annotation {}: \"true\")",
            pod.id,
            crate::pods::tee::ALLOW_EXEC_ANNOTATION
        );
        let mut event = Event::new(
            if container.is_some() {
                "container.exec"
            } else {
                "pod.exec"
            },
            Outcome::Denied,
            why.as_str(),
        )
        .with("pod", pod.id.as_str());
        if let Some(c) = container {
            event = event.with("container", c);
        }
        self.record(&event)?;
        Err(PodError::Denied(why).into())
    }

    /// Refuses (audited) host `what` (exec, attach) in container `key` of a confidential pod
    /// without the opt-in: for front ends that hand out streaming URLs before any session.
    ///
    /// # Errors
    /// [`PodError::Denied`], not found, store errors.
    pub fn check_container_access(&self, key: &str, what: &str) -> Result<(), EngineError> {
        let rec = self.container(key)?;
        let pod = self.pods().find(&rec.pod_id)?;
        self.refuse_pod_access(&pod, Some(&rec.id), what)
    }

    /// [`Engine::check_container_access`] for a pod (port forwarding).
    ///
    /// # Errors
    /// [`PodError::Denied`], not found, store errors.
    pub fn check_pod_access(&self, key: &str, what: &str) -> Result<(), EngineError> {
        let pod = self.pods().find(key)?;
        self.refuse_pod_access(&pod, None, what)
    }

    /// StopPodSandbox: stops the pod's VM. An unknown pod is not an error (`None`), as CRI
    /// requires of stop.
    ///
    /// # Errors
    /// Store and monitor errors.
    pub fn stop_pod(&self, key: &str) -> Result<Option<PodRecord>, EngineError> {
        let mut rec = match self.pods().find(key) {
            Ok(r) => r,
            Err(PodError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // kubelet stops containers first with their grace periods; what still runs is killed.
        for id in self.pod_container_ids(&rec.id)? {
            self.stop_container(&id, Duration::ZERO)?;
        }
        match self.boxes.find(&rec.box_id) {
            Ok(b) if b.state.is_active() => {
                self.stop(&rec.box_id, STOP_TIMEOUT)?;
            }
            Ok(_) | Err(BoxError::State(StateError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
        // The pod's address and port mappings go with its VM (CNI DEL, once).
        self.release_pod_network(&mut rec)?;
        self.record(
            &Event::new("pod.stop", Outcome::Success, "stopped")
                .with("pod", rec.id.as_str())
                .with("name", rec.spec.full_name()),
        )?;
        Ok(Some(rec))
    }

    /// RemovePodSandbox: stops the pod's VM if needed and removes the box and the record; an
    /// unknown pod is not an error (`None`).
    ///
    /// # Errors
    /// Store and monitor errors.
    pub fn remove_pod(&self, key: &str) -> Result<Option<PodRecord>, EngineError> {
        let pods = self.pods();
        let mut rec = match pods.find(key) {
            Ok(r) => r,
            Err(PodError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for id in self.pod_container_ids(&rec.id)? {
            self.stop_container(&id, Duration::ZERO)?;
            self.forget_container(&id)?;
        }
        match self.boxes.remove(&rec.box_id, true) {
            Ok(_) | Err(BoxError::State(StateError::NotFound(_))) => {}
            Err(e) => return Err(e.into()),
        }
        // Without a StopPodSandbox first, DEL runs here; then the namespace goes.
        self.release_pod_network(&mut rec)?;
        self.remove_pod_netns(&rec)?;
        // Only unmounts the host paths bound for its containers; their files stay.
        PodShare::of(&self.home, &rec.id).remove()?;
        {
            let _lock = pods.lock()?;
            pods.delete(&rec.id)?;
        }
        self.record(
            &Event::new("pod.remove", Outcome::Success, "removed")
                .with("pod", rec.id.as_str())
                .with("name", rec.spec.full_name()),
        )?;
        Ok(Some(rec))
    }

    /// One pod and whether its VM runs.
    ///
    /// # Errors
    /// [`PodError::NotFound`], store errors.
    pub fn pod(&self, key: &str) -> Result<(PodRecord, PodState), EngineError> {
        let rec = self.pods().find(key)?;
        let state = self.pod_state(&rec)?;
        Ok((rec, state))
    }

    /// Every pod, oldest first, with its state.
    ///
    /// # Errors
    /// Store errors.
    pub fn list_pods(&self) -> Result<Vec<(PodRecord, PodState)>, EngineError> {
        let mut out = Vec::new();
        for rec in self.pods().list()? {
            let state = self.pod_state(&rec)?;
            out.push((rec, state));
        }
        Ok(out)
    }

    /// Port forwarding: a session relaying its stdin/stdout to TCP `port` on the pod's
    /// localhost, through the pod VM's own `nc` (the pod's root is busybox), as containerd once
    /// relayed with `socat` in the pod's namespace. Audited (`pod.port_forward`).
    ///
    /// # Errors
    /// Not found, the pod's VM not running, monitor errors.
    pub fn pod_port_session(
        &self,
        key: &str,
        port: u16,
    ) -> Result<std::os::unix::net::UnixStream, EngineError> {
        let rec = self.pods().find(key)?;
        self.refuse_pod_access(&rec, None, "port forwarding")?;
        let boxed = self.boxes.find(&rec.box_id)?;
        if !matches!(boxed.state, BoxState::Running { .. }) {
            return Err(PodError::WrongState(format!(
                "pod sandbox {} is not ready; port forwarding needs its VM running",
                rec.id
            ))
            .into());
        }
        self.record(
            &Event::new("pod.port_forward", Outcome::Success, format!("port {port}"))
                .with("pod", rec.id.as_str()),
        )?;
        let process = a3s_vmm::proto::ProcessSpec {
            argv: vec!["nc".into(), "127.0.0.1".into(), port.to_string()],
            stdin: true,
            ..Default::default()
        };
        Ok(self.boxes.exec(&boxed, process)?)
    }

    fn pod_state(&self, rec: &PodRecord) -> Result<PodState, EngineError> {
        match self.boxes.find(&rec.box_id) {
            Ok(b) if matches!(b.state, BoxState::Running { .. }) => Ok(PodState::Ready),
            Ok(_) | Err(BoxError::State(StateError::NotFound(_))) => Ok(PodState::NotReady),
            Err(e) => Err(e.into()),
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_sysctls_become_the_vms_only_security_option() {
        let mut spec = PodSpec::default();
        assert!(Engine::pod_security(&spec).unwrap().is_none());
        spec.sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        let guest = Engine::pod_security(&spec).unwrap().unwrap().guest();
        assert_eq!(guest.sysctls["kernel.shm_rmid_forced"], "1");
        // The VM's own processes keep every capability and the VM's /dev/shm.
        assert_eq!(
            guest.capabilities.map(|c| c.len()),
            Some(crate::boxes::security::all_capabilities().len())
        );
        assert_eq!(guest.shm_size_bytes, None);
        assert!(!guest.read_only_root && !guest.no_new_privileges);
        spec.sysctls.insert("kernel.hostname".into(), "x".into());
        let e = Engine::pod_security(&spec).unwrap_err().to_string();
        assert!(
            e.contains("kernel.hostname") && e.contains("not a namespaced"),
            "{e}"
        );
    }
}
