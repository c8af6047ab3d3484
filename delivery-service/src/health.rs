//! gRPC health: one status for the whole server (`""`) and each
//! `confide.v1` service, set together, and Watch streams that end at
//! shutdown (after telling the client NOT_SERVING), so an open Watch never
//! holds the process up.

use std::pin::Pin;

use confide_proto::v1::{
    auth_service_server::AuthServiceServer, delivery_service_server::DeliveryServiceServer,
    device_service_server::DeviceServiceServer, group_service_server::GroupServiceServer,
    key_package_service_server::KeyPackageServiceServer,
};
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use crate::grpc::{AuthApi, DeliveryApi, DeviceApi, GroupApi, KeyPackageApi};

/// Every name health reports on: the server as a whole, then each service.
const SERVICES: [&str; 6] = [
    "",
    <AuthServiceServer<AuthApi> as NamedService>::NAME,
    <DeviceServiceServer<DeviceApi> as NamedService>::NAME,
    <KeyPackageServiceServer<KeyPackageApi> as NamedService>::NAME,
    <GroupServiceServer<GroupApi> as NamedService>::NAME,
    <DeliveryServiceServer<DeliveryApi> as NamedService>::NAME,
];

/// Sets the server's and every service's status at once: the DS serves all
/// of them or none (they share the store and the shutdown).
pub async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}

/// The health service for `reporter`, whose Watch streams end on `shutdown`.
pub fn service(
    reporter: HealthReporter,
    shutdown: CancellationToken,
) -> HealthServer<EndingHealth> {
    HealthServer::new(EndingHealth {
        inner: HealthService::from_health_reporter(reporter),
        shutdown,
    })
}

/// tonic-health's service, except that Watch ends at shutdown.
pub struct EndingHealth {
    inner: HealthService,
    shutdown: CancellationToken,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for EndingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    /// The statuses as they change, until shutdown; then NOT_SERVING (which
    /// the reporter says by then too, but the stream may end before it saw
    /// that change) and the end of the stream.
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let last = HealthCheckResponse {
            status: tonic_health::pb::health_check_response::ServingStatus::NotServing as i32,
        };
        let stream = statuses
            .take_until(self.shutdown.clone().cancelled_owned())
            .chain(futures::stream::once(async move { Ok(last) }));
        Ok(Response::new(Box::pin(stream)))
    }
}
