//! Serving: the caller binds the listener and owns the shutdown token
//! (`run(listener, state, shutdown)`), so tests serve on port 0.

use std::sync::Arc;

use confide_proto::v1::{
    auth_service_server::AuthServiceServer, delivery_service_server::DeliveryServiceServer,
    group_service_server::GroupServiceServer, key_package_service_server::KeyPackageServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

use crate::config::{Settings, StoreKind};
use crate::grpc::{AuthApi, DeliveryApi, GroupApi, KeyPackageApi};
use crate::state::{AppState, Ds};
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;
use crate::store::{Store, StoreError};

/// Opens the configured store; PostgreSQL is migrated before use.
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match settings.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Postgres => {
            let store =
                PostgresStore::connect(&settings.database.url, settings.database.max_connections)
                    .await?;
            store.migrate().await?;
            Arc::new(store)
        }
    })
}

/// Builds the state for a store; `shutdown` ends live streams too.
pub fn state(store: Arc<dyn Store>, settings: Settings, shutdown: CancellationToken) -> AppState {
    Ds::new(store, settings, shutdown)
}

/// Serves every `confide.v1` service, gRPC health and reflection on
/// `listener` until `shutdown` is cancelled. On shutdown health turns
/// NOT_SERVING, live streams end and in-flight calls finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GroupServiceServer<GroupApi>>()
        .await;
    health_reporter
        .set_serving::<AuthServiceServer<AuthApi>>()
        .await;
    health_reporter
        .set_serving::<KeyPackageServiceServer<KeyPackageApi>>()
        .await;
    health_reporter
        .set_serving::<DeliveryServiceServer<DeliveryApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(confide_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");

    // Application-level limits are enforced per field; tonic's own decode
    // limit only guards against absurd frames.
    let max_frame = state.settings.max_message_bytes * 2 + 64 * 1024;
    let on_shutdown = {
        let shutdown = shutdown.clone();
        let state = state.clone();
        async move {
            shutdown.cancelled().await;
            health_reporter
                .set_not_serving::<GroupServiceServer<GroupApi>>()
                .await;
            state.shutdown.cancel();
            tracing::info!("shutting down: health is NOT_SERVING, streams end");
        }
    };
    tracing::info!(addr = ?listener.local_addr().ok(), "confide-ds serving");
    Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            AuthServiceServer::new(AuthApi(state.clone())).max_decoding_message_size(max_frame),
        )
        .add_service(
            KeyPackageServiceServer::new(KeyPackageApi(state.clone()))
                .max_decoding_message_size(max_frame),
        )
        .add_service(
            GroupServiceServer::new(GroupApi(state.clone())).max_decoding_message_size(max_frame),
        )
        .add_service(
            DeliveryServiceServer::new(DeliveryApi(state.clone()))
                .max_decoding_message_size(max_frame),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), on_shutdown)
        .await
}
