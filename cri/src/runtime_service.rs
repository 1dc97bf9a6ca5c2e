//! CRI RuntimeService: version, status and runtime configuration, pod sandboxes and their
//! containers over the engine.

use std::pin::Pin;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use a3s_runtime::engine::Engine;

use crate::containers;
use crate::error;
use crate::images;
use crate::pods;
use crate::stats;
use crate::{CRI_API_VERSION, RUNTIME_NAME};

/// The RuntimeClass handlers this server will accept (the default one is `""`).
pub(crate) const HANDLERS: [&str; 3] = ["", "a3s-snp", "a3s-simulate"];

/// The RuntimeService of one engine.
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    engine: Engine,
    /// Serves the URLs Exec, Attach and PortForward return.
    streaming: a3s_cri_streaming::Server,
    /// Previous CPU samples of the stats calls (for nano cores).
    rates: std::sync::Arc<stats::CpuRates>,
}

impl Runtime {
    pub(crate) fn new(engine: Engine, streaming: a3s_cri_streaming::Server) -> Self {
        Self {
            engine,
            streaming,
            rates: std::sync::Arc::default(),
        }
    }

    /// A running container's record, for the streaming calls (which fail early, as kubelet
    /// expects, rather than at connection time).
    async fn running(&self, id: String, call: &'static str) -> Result<(), Status> {
        self.blocking(move |engine| {
            let rec = engine.container(&id).map_err(|e| error::status(&e))?;
            if rec.state == a3s_runtime::pod_containers::ContainerState::Running {
                Ok(())
            } else {
                Err(Status::failed_precondition(format!(
                    "{call}: container {} is not running",
                    rec.id
                )))
            }
        })
        .await
    }

    /// A confidential pod refuses host exec, attach and port forwarding unless it opted in
    /// (PermissionDenied, audited by the engine).
    async fn host_access(
        &self,
        container: Option<String>,
        pod: Option<String>,
        what: &'static str,
    ) -> Result<(), Status> {
        self.blocking(move |engine| {
            match (container, pod) {
                (Some(c), _) => engine.check_container_access(&c, what),
                (None, Some(p)) => engine.check_pod_access(&p, what),
                (None, None) => Ok(()),
            }
            .map_err(|e| error::status(&e))
        })
        .await
    }

    /// Runs blocking engine work (VM boots, state files) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Engine) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || f(engine))
            .await
            .map_err(|e| error::join(&e))?
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// CRI timeouts are seconds; 0 or less means none (ExecSync) or at once (StopContainer).
fn seconds(t: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from(t).unwrap_or(0))
}

fn streaming_error(e: &a3s_cri_streaming::RequestError) -> Status {
    match e {
        a3s_cri_streaming::RequestError::TooManyInFlight { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        _ => Status::invalid_argument(e.to_string()),
    }
}

/// The two conditions kubelet reads. Runtime readiness is reported as it is: a node that
/// cannot run pods must not be scheduled onto. Network readiness is the node's CNI
/// configuration: present and valid, or why not.
fn conditions(engine: &Engine) -> Vec<cri::RuntimeCondition> {
    let (ready, message) = match (engine.cni(), engine.cni_network()) {
        (_, Some(Ok(_))) => (true, String::new()),
        (_, Some(Err(e))) => (false, e.to_string()),
        (Some(node), None) => (
            false,
            format!(
                "no CNI network configuration in {}: pods get user networking (outbound \
                 through the host, hostPorts on 127.0.0.1)",
                node.conf_dir.display()
            ),
        ),
        (None, None) => (false, "CNI is not configured for this server".into()),
    };
    vec![
        cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        },
        cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: ready,
            reason: if ready {
                String::new()
            } else {
                "NetworkPluginNotReady".into()
            },
            message,
        },
    ]
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            // The version of the kubelet runtime API ("0.1.0" for every v1 runtime).
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        _request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let conditions = self.blocking(|engine| Ok(conditions(&engine))).await?;
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info: Default::default(),
            runtime_handlers: HANDLERS
                .iter()
                .map(|name| cri::RuntimeHandler {
                    name: (*name).into(),
                    // Read-only all the way down is set on the host's bind and in the guest.
                    features: Some(cri::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: true,
                        user_namespaces: false,
                    }),
                })
                .collect(),
            // Strict and Merge are applied by guest-init; ContainerStatus reports the user.
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        // Containers run inside their pod's VM; the host cgroup driver is systemd's.
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Systemd as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        _request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // kubelet sends the pod CIDR here; pod addresses come from the node's CNI
        // configuration (its IPAM), so there is nothing to apply.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = r.into_inner();
        let config = req.config.unwrap_or_default();
        let cni = self
            .blocking(|engine| Ok(engine.cni_network().is_some()))
            .await?;
        let spec = pods::spec_of(&config, &req.runtime_handler, cni)?;
        let pod_sandbox_id = self
            .blocking(move |engine| {
                engine
                    .run_pod(&spec)
                    .map(|rec| rec.id)
                    .map_err(|e| error::status(&e))
            })
            .await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        // An unknown pod is stopped already (CRI: idempotent).
        self.blocking(move |engine| {
            engine
                .stop_pod(&id)
                .map(|_| ())
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        self.blocking(move |engine| {
            engine
                .remove_pod(&id)
                .map(|_| ())
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let id = r.into_inner().pod_sandbox_id;
        let status = self
            .blocking(move |engine| {
                let (rec, state) = engine.pod(&id).map_err(|e| error::status(&e))?;
                Ok(pods::status_of(&rec, state))
            })
            .await?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = r.into_inner().filter;
        let items = self
            .blocking(move |engine| {
                let all = engine.list_pods().map_err(|e| error::status(&e))?;
                Ok(all
                    .iter()
                    .filter(|(rec, st)| pods::matches(filter.as_ref(), rec, *st))
                    .map(|(rec, st)| pods::item_of(rec, *st))
                    .collect())
            })
            .await?;
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = r.into_inner();
        let config = req.config.unwrap_or_default();
        let spec = containers::spec_of(&config, req.sandbox_config.as_ref())?;
        let pod = req.pod_sandbox_id;
        let container_id = self
            .blocking(move |engine| {
                let store = engine.image_store().map_err(|e| error::status(&e))?;
                let found = images::find(&store, &spec.image)
                    .map_err(|e| Status::internal(format!("reading the image store: {e}")))?;
                let Some(reference) = found.and_then(|i| i.names.into_iter().next()) else {
                    return Err(Status::not_found(format!(
                        "image {:?} is not in the image store; pull it first (crictl pull)",
                        spec.image
                    )));
                };
                engine
                    .create_container(&pod, spec, &reference.0)
                    .map(|rec| rec.id)
                    .map_err(|e| error::status(&e))
            })
            .await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        self.blocking(move |engine| {
            engine
                .start_container(&id)
                .map(|_| ())
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = r.into_inner();
        // An unknown or stopped container is stopped already (CRI: idempotent).
        self.blocking(move |engine| {
            engine
                .stop_container(&req.container_id, seconds(req.timeout))
                .map(|_| ())
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = r.into_inner().container_id;
        self.blocking(move |engine| {
            engine
                .remove_container(&id)
                .map(|_| ())
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = r.into_inner().filter;
        let containers = self
            .blocking(move |engine| {
                let all = engine.list_containers().map_err(|e| error::status(&e))?;
                Ok(all
                    .iter()
                    .filter(|c| containers::matches(filter.as_ref(), c))
                    .map(containers::item_of)
                    .collect())
            })
            .await?;
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let id = r.into_inner().container_id;
        let status = self
            .blocking(move |engine| {
                let rec = engine.container(&id).map_err(|e| error::status(&e))?;
                Ok(containers::status_of(&rec))
            })
            .await?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(status),
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = r.into_inner();
        if req.windows.is_some() {
            return Err(Status::invalid_argument(
                "UpdateContainerResources: windows resources do not apply to Linux pod VMs",
            ));
        }
        let Some(linux) = req.linux else {
            return Err(Status::invalid_argument(
                "UpdateContainerResources: linux resources are missing",
            ));
        };
        let resources = containers::resources_of(&linux)?;
        self.blocking(move |engine| {
            engine
                .update_container_resources(&req.container_id, resources)
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = r.into_inner().container_id;
        self.blocking(move |engine| {
            engine
                .reopen_container_log(&id)
                .map_err(|e| error::status(&e))
        })
        .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = r.into_inner();
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("ExecSync: cmd is empty"));
        }
        let timeout = Some(seconds(req.timeout)).filter(|t| !t.is_zero());
        let out = self
            .blocking(move |engine| {
                engine
                    .exec_in_container(&req.container_id, req.cmd, timeout)
                    .map_err(|e| error::status(&e))
            })
            .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.code,
        }))
    }

    async fn exec(
        &self,
        r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = r.into_inner();
        self.running(req.container_id.clone(), "Exec").await?;
        self.host_access(Some(req.container_id.clone()), None, "exec")
            .await?;
        let url = self
            .streaming
            .get_exec(&a3s_cri_streaming::ExecRequest {
                container_id: req.container_id,
                cmd: req.cmd,
                tty: req.tty,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
            })
            .map_err(|e| streaming_error(&e))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let req = r.into_inner();
        self.running(req.container_id.clone(), "Attach").await?;
        self.host_access(Some(req.container_id.clone()), None, "attach")
            .await?;
        let url = self
            .streaming
            .get_attach(&a3s_cri_streaming::AttachRequest {
                container_id: req.container_id,
                stdin: req.stdin,
                tty: req.tty,
                stdout: req.stdout,
                stderr: req.stderr,
            })
            .map_err(|e| streaming_error(&e))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let req = r.into_inner();
        let pod = req.pod_sandbox_id.clone();
        self.blocking(move |engine| engine.pod(&pod).map(|_| ()).map_err(|e| error::status(&e)))
            .await?;
        self.host_access(None, Some(req.pod_sandbox_id.clone()), "port forwarding")
            .await?;
        let url = self
            .streaming
            .get_port_forward(&a3s_cri_streaming::PortForwardRequest {
                pod_sandbox_id: req.pod_sandbox_id,
                port: req.port,
            })
            .map_err(|e| streaming_error(&e))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let key = r.into_inner().container_id;
        let rates = self.rates.clone();
        let stats = self
            .blocking(move |engine| {
                let id = engine.container(&key).map_err(|e| error::status(&e))?.id;
                let figures = engine.container_stats().map_err(|e| error::status(&e))?;
                let fs = writable_layer_fs(&engine)?;
                let now = now_ns();
                Ok(figures
                    .iter()
                    .find(|(rec, _)| rec.id == id)
                    .map(|f| stats::container_stats(f, now, &rates, &fs)))
            })
            .await?;
        Ok(Response::new(cri::ContainerStatsResponse { stats }))
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = r.into_inner().filter;
        let rates = self.rates.clone();
        let stats = self
            .blocking(move |engine| {
                let figures = engine.container_stats().map_err(|e| error::status(&e))?;
                let fs = writable_layer_fs(&engine)?;
                let now = now_ns();
                Ok(figures
                    .iter()
                    .filter(|(rec, _)| stats::container_matches(filter.as_ref(), rec))
                    .map(|f| stats::container_stats(f, now, &rates, &fs))
                    .collect())
            })
            .await?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let key = r.into_inner().pod_sandbox_id;
        let rates = self.rates.clone();
        let stats = self
            .blocking(move |engine| {
                let id = engine.pod(&key).map_err(|e| error::status(&e))?.0.id;
                let pods = engine.pod_stats().map_err(|e| error::status(&e))?;
                let fs = writable_layer_fs(&engine)?;
                Ok(pods
                    .iter()
                    .find(|p| p.pod.id == id)
                    .map(|p| stats::pod_stats(p, &rates, &fs)))
            })
            .await?;
        Ok(Response::new(cri::PodSandboxStatsResponse { stats }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let filter = r.into_inner().filter;
        let rates = self.rates.clone();
        let stats = self
            .blocking(move |engine| {
                let pods = engine.pod_stats().map_err(|e| error::status(&e))?;
                let fs = writable_layer_fs(&engine)?;
                Ok(pods
                    .iter()
                    .filter(|p| stats::pod_matches(filter.as_ref(), &p.pod))
                    .map(|p| stats::pod_stats(p, &rates, &fs))
                    .collect())
            })
            .await?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "CheckpointContainer: container checkpointing is not supported by a3s-box",
        ))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(Status::unimplemented(
            "GetContainerEvents: evented PLEG is not supported; kubelet falls back to polling",
        ))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: Vec::new(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: Vec::new(),
        }))
    }
}

/// The node directory pod containers' writable layers are accounted to: the one ImageFsInfo
/// reports for container filesystems.
fn writable_layer_fs(engine: &a3s_runtime::engine::Engine) -> Result<String, Status> {
    Ok(engine
        .image_store()
        .map_err(|e| error::status(&e))?
        .dir()
        .display()
        .to_string())
}
