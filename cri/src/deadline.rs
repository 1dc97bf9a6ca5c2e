//! The client's `grpc-timeout` as gRPC's DEADLINE_EXCEEDED.
//!
//! tonic's server enforces the header too, but answers CANCELLED when it expires; kubelet
//! and critest ("public image should timeout if requested") expect DEADLINE_EXCEEDED, as
//! the gRPC spec says. This layer sits inside tonic's and starts its timer first, so it
//! always answers before tonic's does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;

/// The header a gRPC client puts its deadline in.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Wraps services with [`Deadline`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeadlineLayer;

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// Answers DEADLINE_EXCEEDED when the request's `grpc-timeout` passes first.
#[derive(Clone, Debug)]
pub(crate) struct Deadline<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers()
            .get(GRPC_TIMEOUT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let call = self.inner.call(req);
        let Some(timeout) = timeout else {
            return Box::pin(call);
        };
        // Created before tonic's own timer (which it makes after calling us), so it is due
        // no later than tonic's; and tonic polls us first.
        let expiry = tokio::time::sleep(timeout);
        Box::pin(async move {
            tokio::select! {
                biased;
                answer = call => answer,
                () = expiry => Ok(tonic::Status::deadline_exceeded(format!(
                    "the client's deadline ({timeout:?}) passed before the call finished"
                ))
                .into_http()),
            }
        })
    }
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
    use k8s_cri::v1::*;
    use tonic::{Request, Response, Status};

    #[test]
    fn grpc_timeout_values_parse_as_the_spec_writes_them() {
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("999m"), Some(Duration::from_millis(999)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S", "1é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// An image service whose pulls never finish.
    struct NeverPulls;

    #[tonic::async_trait]
    impl ImageService for NeverPulls {
        async fn list_images(
            &self,
            _: Request<ListImagesRequest>,
        ) -> Result<Response<ListImagesResponse>, Status> {
            Ok(Response::new(ListImagesResponse::default()))
        }
        async fn image_status(
            &self,
            _: Request<ImageStatusRequest>,
        ) -> Result<Response<ImageStatusResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn pull_image(
            &self,
            _: Request<PullImageRequest>,
        ) -> Result<Response<PullImageResponse>, Status> {
            std::future::pending().await
        }
        async fn remove_image(
            &self,
            _: Request<RemoveImageRequest>,
        ) -> Result<Response<RemoveImageResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
        async fn image_fs_info(
            &self,
            _: Request<ImageFsInfoRequest>,
        ) -> Result<Response<ImageFsInfoResponse>, Status> {
            Err(Status::unimplemented("test"))
        }
    }

    /// Sends one unary call with only a `grpc-timeout` header, over raw HTTP/2 (tonic's
    /// and grpc-go's clients also enforce the deadline themselves, racing the server), and
    /// returns the server's `grpc-status`.
    async fn grpc_status_of(socket: &std::path::Path, method: &str, timeout: &str) -> String {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .expect("connect");
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .expect("handshake");
        tokio::spawn(conn);
        // An empty message: no compression flag, zero length.
        let body = http_body_util::Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]));
        let request = http::Request::post(format!("http://localhost/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header(GRPC_TIMEOUT, timeout)
            .body(body)
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        if let Some(status) = parts.headers.get("grpc-status") {
            return status.to_str().expect("ascii").to_owned();
        }
        let collected = http_body_util::BodyExt::collect(body).await.expect("body");
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let status = trailers.get("grpc-status").expect("grpc-status trailer");
        status.to_str().expect("ascii").to_owned()
    }

    /// Through tonic's real server on a Unix socket. Without this layer the answer was 1
    /// (CANCELLED, "Timeout expired"), which failed critest's "public image should timeout
    /// if requested" whenever the server answered before critest's own timer fired.
    #[tokio::test]
    async fn a_passed_client_deadline_is_deadline_exceeded_not_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("cri.sock");
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(DeadlineLayer)
                .add_service(ImageServiceServer::new(NeverPulls))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
        let pull = "runtime.v1.ImageService/PullImage";
        assert_eq!(
            grpc_status_of(&socket, pull, "30m").await,
            "4",
            "DEADLINE_EXCEEDED"
        );
        // A call that finishes in time is untouched by the layer.
        let list = "runtime.v1.ImageService/ListImages";
        assert_eq!(grpc_status_of(&socket, list, "10S").await, "0", "OK");
        server.abort();
    }
}
