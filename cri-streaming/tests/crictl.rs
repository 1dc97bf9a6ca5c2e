//! Real `crictl` (cri-tools) against the streaming server: a minimal CRI endpoint answers
//! `Version`, `Exec`, `Attach` and `PortForward` with URLs from the server under test (every
//! other RPC is `Unimplemented`), and crictl streams through them exactly as against a runtime.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::Arc;

use a3s_cri_streaming::{AttachRequest, ExecRequest, PortForwardRequest, Server};
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tonic::{Request, Response, Status};

use crate::support::{serve, text, Attachable, HostBackend};

struct Shim {
    streaming: Server,
}

type RpcResult<T> = Result<Response<T>, Status>;
type RpcFuture<'a, T> = Pin<Box<dyn std::future::Future<Output = RpcResult<T>> + Send + 'a>>;

/// RPCs the shim does not serve, in the shape `#[async_trait]` gives the trait's methods.
macro_rules! unimplemented_rpcs {
    ($($name:ident($req:ident) -> $resp:ident;)*) => {$(
        fn $name<'life0, 'async_trait>(&'life0 self, _: Request<cri::$req>) -> RpcFuture<'async_trait, cri::$resp>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async { Err(Status::unimplemented(stringify!($name))) })
        }
    )*};
}

#[tonic::async_trait]
impl RuntimeService for Shim {
    type GetContainerEventsStream =
        futures_util::stream::Empty<Result<cri::ContainerEventResponse, Status>>;

    async fn version(&self, _: Request<cri::VersionRequest>) -> RpcResult<cri::VersionResponse> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "a3s-streaming-test".into(),
            runtime_version: "0".into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn exec(&self, req: Request<cri::ExecRequest>) -> RpcResult<cri::ExecResponse> {
        let r = req.into_inner();
        let url = self
            .streaming
            .get_exec(&ExecRequest {
                container_id: r.container_id,
                cmd: r.cmd,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(&self, req: Request<cri::AttachRequest>) -> RpcResult<cri::AttachResponse> {
        let r = req.into_inner();
        let url = self
            .streaming
            .get_attach(&AttachRequest {
                container_id: r.container_id,
                stdin: r.stdin,
                tty: r.tty,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        req: Request<cri::PortForwardRequest>,
    ) -> RpcResult<cri::PortForwardResponse> {
        let r = req.into_inner();
        let url = self
            .streaming
            .get_port_forward(&PortForwardRequest {
                pod_sandbox_id: r.pod_sandbox_id,
                port: r.port,
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> RpcResult<Self::GetContainerEventsStream> {
        Err(Status::unimplemented("get_container_events"))
    }

    unimplemented_rpcs! {
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
        create_container(CreateContainerRequest) -> CreateContainerResponse;
        start_container(StartContainerRequest) -> StartContainerResponse;
        stop_container(StopContainerRequest) -> StopContainerResponse;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
        list_containers(ListContainersRequest) -> ListContainersResponse;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
        status(StatusRequest) -> StatusResponse;
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    }
}

/// crictl checks the image API on connect (`ImageFsInfo`); nothing else of it is used here.
struct Images;

#[tonic::async_trait]
impl ImageService for Images {
    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> RpcResult<cri::ImageFsInfoResponse> {
        Ok(Response::new(cri::ImageFsInfoResponse::default()))
    }

    unimplemented_rpcs! {
        list_images(ListImagesRequest) -> ListImagesResponse;
        image_status(ImageStatusRequest) -> ImageStatusResponse;
        pull_image(PullImageRequest) -> PullImageResponse;
        remove_image(RemoveImageRequest) -> RemoveImageResponse;
    }
}

/// A CRI endpoint on a Unix socket in a fresh directory, streaming through `backend`.
struct Endpoint {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

async fn endpoint(backend: Arc<HostBackend>) -> Endpoint {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    // crictl's own configuration file, so that it neither warns nor reads the host's.
    let config = dir.path().join("crictl.yaml");
    let endpoint = format!("unix://{}", socket.display());
    std::fs::write(
        &config,
        format!("runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 20\n"),
    )
    .unwrap();
    let shim = Shim {
        streaming: serve(backend, |_| {}),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(shim))
            .add_service(ImageServiceServer::new(Images))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
    );
    Endpoint { _dir: dir, config }
}

fn crictl() -> &'static Path {
    let path = Path::new("/usr/local/bin/crictl");
    assert!(
        path.exists(),
        "crictl (cri-tools v1.34.0) is not installed at {}; run scripts/setup",
        path.display()
    );
    path
}

impl Endpoint {
    fn args(&self) -> Vec<String> {
        vec!["--config".into(), self.config.display().to_string()]
    }

    async fn crictl(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(crictl())
            .args(self.args())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).await.unwrap();
        drop(input);
        child.wait_with_output().await.unwrap()
    }

    /// `crictl <args>` on a pseudo-terminal of `cols`x`rows` (crictl's `-t` needs one).
    async fn crictl_on_a_terminal(&self, args: &[&str], cols: u16, rows: u16) -> Output {
        let mut line = format!("stty cols {cols} rows {rows}; exec {}", crictl().display());
        for arg in self
            .args()
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
        {
            line.push_str(&format!(" '{}'", arg.replace('\'', "'\\''")));
        }
        Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_exec_streams_and_reports_exit_codes() {
    let ep = endpoint(Arc::new(HostBackend::default())).await;
    for transport in ["spdy", "websocket"] {
        let out = ep
            .crictl(
                &[
                    "exec",
                    "-i",
                    "--transport",
                    transport,
                    "host",
                    "sh",
                    "-c",
                    "cat; echo err >&2",
                ],
                b"via crictl\n",
            )
            .await;
        assert!(out.status.success(), "{transport}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "via crictl\n", "{transport}");
        assert_eq!(text(&out.stderr), "err\n", "{transport}");

        let out = ep
            .crictl(
                &[
                    "exec",
                    "--transport",
                    transport,
                    "host",
                    "sh",
                    "-c",
                    "exit 5",
                ],
                b"",
            )
            .await;
        assert!(!out.status.success(), "{transport}");
        assert!(
            text(&out.stderr).contains("command terminated with exit code 5"),
            "{transport}: {}",
            text(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_exec_it_runs_on_a_terminal_of_the_callers_size() {
    let ep = endpoint(Arc::new(HostBackend::default())).await;
    for transport in ["spdy", "websocket"] {
        let out = ep
            .crictl_on_a_terminal(
                &[
                    "exec",
                    "-it",
                    "--transport",
                    transport,
                    "host",
                    "sh",
                    "-c",
                    "stty size; tty >/dev/null && echo on-a-tty",
                ],
                111,
                33,
            )
            .await;
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{transport}: {stdout} {}",
            text(&out.stderr)
        );
        assert!(stdout.contains("33 111\r\n"), "{transport}: {stdout:?}");
        assert!(stdout.contains("on-a-tty"), "{transport}: {stdout:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_attach_reaches_the_running_process() {
    let backend = Arc::new(HostBackend::default());
    let ep = endpoint(Arc::clone(&backend)).await;
    let mut process = Command::new("sh")
        .args(["-c", "while read l; do echo \"main got $l\"; done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    backend.containers.lock().unwrap().insert(
        "main".into(),
        Attachable {
            stdin: process.stdin.take().unwrap(),
            stdout: process.stdout.take().unwrap(),
        },
    );
    let out = ep.crictl(&["attach", "-i", "main"], b"one\ntwo\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "main got one\nmain got two\n");
    assert!(process.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn crictl_port_forward_carries_real_bytes() {
    let ep = endpoint(Arc::new(HostBackend::default())).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pod_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let (mut r, mut w) = conn.split();
                r.read_to_end(&mut request).await.unwrap();
                request.reverse();
                w.write_all(&request).await.unwrap();
            });
        }
    });
    for transport in ["spdy", "websocket"] {
        let mut child = Command::new(crictl())
            .args(ep.args())
            .args([
                "port-forward",
                "--transport",
                transport,
                "pod",
                &format!(":{pod_port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // "Forwarding from 127.0.0.1:<local> -> <pod_port>"
        let line = lines.next_line().await.unwrap().unwrap_or_default();
        let local: u16 = line
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{transport}: unexpected crictl output {line:?}"));
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", local))
            .await
            .unwrap();
        conn.write_all(b"0123456789").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"9876543210", "{transport}");
        child.kill().await.unwrap();
    }
}
