//! Honouring the DS's rate limits: a call refused with RESOURCE_EXHAUSTED and
//! a `google.rpc.RetryInfo` detail is sent again after the delay it names, a
//! few times, below every RPC of [`crate::Api`]. A refusal without retry
//! information (a request that is too large) is returned at once.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tonic_types::StatusExt;

/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 5;
/// Longest single wait; a longer requested delay is returned to the caller.
const MAX_WAIT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long the DS asks the caller to wait, if `status` is a rate limit.
pub fn retry_after(status: &tonic::Status) -> Option<Duration> {
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    status.get_details_retry_info()?.retry_delay
}

/// A [`Channel`] that waits out rate limits.
#[derive(Clone)]
pub struct RetryRateLimited {
    channel: Channel,
}

impl RetryRateLimited {
    pub fn new(channel: Channel) -> Self {
        Self { channel }
    }
}

impl tower::Service<http::Request<Body>> for RetryRateLimited {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the one that was polled ready sends first.
        let clone = self.channel.clone();
        let mut channel = std::mem::replace(&mut self.channel, clone);
        Box::pin(async move {
            // Every Confide RPC sends one request message, so the body is
            // small and can be kept for a resend.
            let (parts, body) = request.into_parts();
            let body: Bytes = body.collect().await?.to_bytes();
            let mut attempt = 1;
            loop {
                let mut resend = http::Request::new(Body::new(Full::new(body.clone())));
                *resend.method_mut() = parts.method.clone();
                *resend.uri_mut() = parts.uri.clone();
                *resend.version_mut() = parts.version;
                *resend.headers_mut() = parts.headers.clone();
                std::future::poll_fn(|cx| tower::Service::poll_ready(&mut channel, cx)).await?;
                let response = tower::Service::call(&mut channel, resend).await?;
                let wait = tonic::Status::from_header_map(response.headers())
                    .as_ref()
                    .and_then(retry_after)
                    .filter(|wait| *wait <= MAX_WAIT);
                match wait {
                    Some(wait) if attempt < MAX_ATTEMPTS => {
                        tracing::debug!(?wait, attempt, "rate limited; waiting to retry");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    _ => return Ok(response),
                }
            }
        })
    }
}
