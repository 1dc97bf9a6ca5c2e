//! CRI RuntimeService: version, status and runtime configuration. Pods and containers are
//! answered with `Unimplemented` naming what is missing until the engine runs pod VMs.

use std::pin::Pin;

use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use a3s_runtime::engine::Engine;

use crate::error;
use crate::pods;
use crate::{CRI_API_VERSION, RUNTIME_NAME};

/// The RuntimeClass handlers this server will accept (the default one is `""`).
pub(crate) const HANDLERS: [&str; 3] = ["", "a3s-snp", "a3s-simulate"];

/// The RuntimeService of one engine.
#[derive(Clone, Debug)]
pub(crate) struct Runtime {
    engine: Engine,
}

impl Runtime {
    pub(crate) fn new(engine: Engine) -> Self {
        Self { engine }
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

fn pods_missing(call: &str) -> Status {
    Status::unimplemented(format!(
        "{call}: containers inside pods are not implemented in this a3s-box build (pod \
         sandboxes and the image service are); run workloads with `a3s-box run`"
    ))
}

fn streaming_missing(call: &str) -> Status {
    Status::unimplemented(format!(
        "{call}: the streaming server (exec, attach, port-forward URLs) is not part of this \
         a3s-box build yet"
    ))
}

/// The two conditions kubelet reads. Runtime readiness is reported as it is: a node that
/// cannot run pods must not be scheduled onto.
fn conditions() -> Vec<cri::RuntimeCondition> {
    vec![
        cri::RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: false,
            reason: "ContainersUnsupported".into(),
            message: "pod sandboxes run, but containers inside them are not implemented yet".into(),
        },
        cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "CNI pod networking is not implemented in this a3s-box build".into(),
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
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: conditions(),
            }),
            info: Default::default(),
            runtime_handlers: HANDLERS
                .iter()
                .map(|name| cri::RuntimeHandler {
                    name: (*name).into(),
                    features: Some(cri::RuntimeHandlerFeatures::default()),
                })
                .collect(),
            features: Some(cri::RuntimeFeatures::default()),
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
        // kubelet sends the pod CIDR here; pod networking comes from CNI (not yet), so
        // there is nothing to apply.
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = r.into_inner();
        let config = req.config.unwrap_or_default();
        let spec = pods::spec_of(&config, &req.runtime_handler)?;
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
        _r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        Err(pods_missing("CreateContainer"))
    }

    async fn start_container(
        &self,
        _r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        Err(pods_missing("StartContainer"))
    }

    async fn stop_container(
        &self,
        _r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        // No container can exist yet, and stopping an unknown one succeeds (CRI).
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        _r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        // No container can exist yet, and removing an unknown one succeeds (CRI).
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        _r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        Ok(Response::new(cri::ListContainersResponse {
            containers: Vec::new(),
        }))
    }

    async fn container_status(
        &self,
        _r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        Err(pods_missing("ContainerStatus"))
    }

    async fn update_container_resources(
        &self,
        _r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        Err(pods_missing("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        _r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        Err(pods_missing("ReopenContainerLog"))
    }

    async fn exec_sync(
        &self,
        _r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Err(pods_missing("ExecSync"))
    }

    async fn exec(
        &self,
        _r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Err(streaming_missing("Exec"))
    }

    async fn attach(
        &self,
        _r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Err(streaming_missing("Attach"))
    }

    async fn port_forward(
        &self,
        _r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        Err(streaming_missing("PortForward"))
    }

    async fn container_stats(
        &self,
        _r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        Err(pods_missing("ContainerStats"))
    }

    async fn list_container_stats(
        &self,
        _r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: Vec::new(),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        _r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        Err(pods_missing("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Ok(Response::new(cri::ListPodSandboxStatsResponse {
            stats: Vec::new(),
        }))
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
