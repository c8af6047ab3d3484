//! Prometheus metrics: a process-wide recorder, the `/metrics` endpoint on
//! its own port, and a layer that counts and times every RPC. Labels are
//! method names, status codes and limit names only: never a group id, a
//! client id or anything a client sent.

use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;

use crate::transport::ServeError;

/// The process's recorder, installed on first use. Several DSs in one
/// process (tests) share it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` until
/// `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> Result<(), ServeError> {
    let handle = prometheus();
    let upkeep = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => handle.run_upkeep(),
                }
            }
        }
    };
    tokio::spawn(upkeep);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(handle.render())),
    );
    tracing::info!(addr = ?listener.local_addr().ok(), "metrics serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(ServeError::Metrics)
}

/// The edge of every gRPC call:
/// - counts and times it by method and status code
///   (`confide_rpc_requests_total`, `confide_rpc_duration_seconds`; a stream
///   is timed to its first response). A path the server does not serve is
///   labelled `unknown`, so a client cannot write into the metrics;
/// - answers a request beyond tonic's own decode limit (which tonic refuses
///   with OUT_OF_RANGE) with RESOURCE_EXHAUSTED, like every other request
///   above the configured size;
/// - answers a request body that is not a protobuf of the request type
///   (which tonic's codec refuses with INTERNAL) with INVALID_ARGUMENT: the
///   fault is the client's, not the server's.
#[derive(Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> RpcMetrics<S> {
        RpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        // The clone is not ready; the one that was polled ready serves.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let started = Instant::now();
            let mut response = inner.call(request).await?;
            // Errors come as a trailers-only response; otherwise the call
            // started well (its final status is in the trailers).
            let mut code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from);
            if code == tonic::Code::OutOfRange && frame_too_large(response.headers()) {
                code = tonic::Code::ResourceExhausted;
                let headers = response.headers_mut();
                headers.insert("grpc-status", http::HeaderValue::from(code as i32));
                headers.insert(
                    "grpc-message",
                    http::HeaderValue::from_static("the%20request%20is%20larger%20than%20allowed"),
                );
            }
            if code == tonic::Code::Internal && undecodable(response.headers()) {
                code = tonic::Code::InvalidArgument;
                let headers = response.headers_mut();
                headers.insert("grpc-status", http::HeaderValue::from(code as i32));
                headers.insert(
                    "grpc-message",
                    http::HeaderValue::from_static(
                        "the%20request%20is%20not%20a%20valid%20protobuf%20message%20of%20its%20type",
                    ),
                );
            }
            let method = if code == tonic::Code::Unimplemented {
                "unknown".to_string()
            } else {
                path
            };
            let code = format!("{code:?}");
            metrics::counter!("confide_rpc_requests_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("confide_rpc_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

/// Whether a trailers-only OUT_OF_RANGE response is tonic's decode limit.
fn frame_too_large(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        })
}

/// Whether a trailers-only INTERNAL response is tonic's protobuf decode
/// error (the DS's own internal errors say only "internal error").
fn undecodable(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed%20to%20decode%20Protobuf%20message")
                || m.starts_with("failed to decode Protobuf message")
        })
}
