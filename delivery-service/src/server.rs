//! Serving: the caller binds the listener and owns the shutdown token
//! (`run(listener, state, shutdown)`), so tests serve on port 0.

use confide_proto::v1::{
    auth_service_server::AuthServiceServer, delivery_service_server::DeliveryServiceServer,
    device_service_server::DeviceServiceServer, group_service_server::GroupServiceServer,
    key_package_service_server::KeyPackageServiceServer,
};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::config::Settings;
use crate::grpc::{AuthApi, DeliveryApi, DeviceApi, GroupApi, KeyPackageApi};
use crate::state::{AppState, Ds, Storage};
use crate::store::postgres::availability;
use crate::transport::{ServeError, limited_incoming, serve_within_grace, tls_config};

/// Keeps health at NOT_SERVING while PostgreSQL cannot be reached, until
/// shutdown (which sets NOT_SERVING for good).
async fn follow_database(state: AppState, mut up: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            changed = up.changed() => if changed.is_err() { return },
        }
        let status = if *up.borrow_and_update() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if state.shutdown.is_cancelled() {
            return;
        }
        crate::health::set_all(&state.health, status).await;
    }
}

/// Builds the state for a store; `shutdown` ends live streams too. Fails if
/// the configured external sender key cannot be read or created.
pub fn state(
    storage: impl Into<Storage>,
    settings: Settings,
    shutdown: CancellationToken,
) -> std::io::Result<AppState> {
    Ds::new(storage.into(), settings, shutdown)
}

/// Every `purge_interval_secs` until shutdown: deletes expired challenges,
/// sessions and device links, and prunes what storage no longer needs
/// (entries every reader acknowledged or past `retention_secs`, expired key
/// packages; [`crate::store::Store::prune`]). Several replicas doing it at
/// once is harmless.
async fn purge_expired(state: AppState) {
    let mut ticks = tokio::time::interval(state.settings.purge_interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = std::time::SystemTime::now();
        match state.store.purge_expired(now).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired challenges, sessions and links deleted"),
            Err(error) => tracing::warn!(%error, "purging expired sessions failed"),
        }
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            () = prune(&state, now) => {}
        }
        state.limits.forget_idle();
    }
}

/// One run of [`crate::store::Store::prune`], logged and counted by what
/// it deleted.
async fn prune(state: &AppState, now: std::time::SystemTime) {
    let report = match state.store.prune(now, state.settings.retention()).await {
        Ok(report) => report,
        Err(error) => return tracing::warn!(%error, "pruning failed"),
    };
    if report.total() == 0 {
        return;
    }
    for (what, count) in [
        ("log_entries", report.log_entries),
        ("memberships", report.memberships),
        ("inbox_entries", report.inbox_entries),
        ("key_packages", report.key_packages),
    ] {
        metrics::counter!("confide_pruned_total", "what" => what).increment(count);
    }
    tracing::info!(
        log_entries = report.log_entries,
        memberships = report.memberships,
        inbox_entries = report.inbox_entries,
        key_packages = report.key_packages,
        "pruned"
    );
}

/// Serves only gRPC health, in plaintext, on `listener` (for probes that
/// cannot speak TLS), reporting the same statuses as the gRPC port. Stops
/// like [`run`]: Watch streams end, and connections still open after the
/// grace period are closed.
pub(crate) async fn serve_health(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let health = crate::health::service(state.health.clone(), shutdown.clone());
    tracing::info!(addr = ?listener.local_addr().ok(), "health serving (plaintext)");
    let close = CancellationToken::new();
    let incoming = limited_incoming(
        listener,
        state.settings.transport.max_connections,
        close.clone(),
    );
    let serving = Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    serve_within_grace(serving, &shutdown, state.settings.shutdown_grace(), &close).await?;
    Ok(())
}

/// Serves every `confide.v1` service, gRPC health and reflection on
/// `listener` until `shutdown` is cancelled: over TLS when configured (the
/// configuration refuses to load with neither TLS nor `plaintext`), with the
/// configured connection, stream, time and size limits. On shutdown health
/// turns NOT_SERVING (the server's and every service's), every stream ends
/// (Subscribe and health Watch), in-flight calls finish, and connections still
/// open after `shutdown_grace_secs` are closed, so it returns by then. The
/// background tasks and the health it starts with come first ([`start`]).
pub(crate) async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tls = state.settings.tls.as_ref().map(tls_config).transpose()?;
    let on_shutdown = {
        let shutdown = shutdown.clone();
        let state = state.clone();
        async move {
            shutdown.cancelled().await;
            crate::health::set_all(&state.health, ServingStatus::NotServing).await;
            state.shutdown.cancel();
            tracing::info!("shutting down: health is NOT_SERVING, streams end");
        }
    };
    let transport = &state.settings.transport;
    let mut server = Server::builder()
        .max_concurrent_streams(transport.max_concurrent_streams)
        .timeout(transport.request_timeout())
        .http2_keepalive_interval(Some(Duration::from_secs(transport.keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(Duration::from_secs(transport.keepalive_timeout_secs)));
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        tls = state.settings.tls.is_some(),
        "confide-ds serving"
    );
    let close = CancellationToken::new();
    let incoming = limited_incoming(listener, transport.max_connections, close.clone());
    let serving = services(server.layer(crate::telemetry::RpcMetricsLayer), &state)
        .serve_with_incoming_shutdown(incoming, on_shutdown);
    let served =
        serve_within_grace(serving, &shutdown, state.settings.shutdown_grace(), &close).await;
    // Background tasks end with the server, even when serving failed.
    state.shutdown.cancel();
    Ok(served?)
}

/// Starts the background tasks (with PostgreSQL: the bus, which relays the
/// entries other replicas append to this replica's live subscribers, and a watchdog
/// that keeps health NOT_SERVING while the database cannot be reached) and
/// sets every service's health to the status they start with. Called before any port serves: a health check
/// that came first would find the services unregistered (NOT_FOUND).
pub(crate) async fn start(state: &AppState) {
    let serving = start_background_tasks(state);
    crate::health::set_all(&state.health, serving).await;
}

/// Starts what runs beside the server until the state's shutdown: the purge
/// of expired sessions and, with PostgreSQL, the database watchdog and (with
/// `bus: nats`) the bus to the other replicas. Returns the status health starts
/// with: NOT_SERVING while the database cannot be reached.
fn start_background_tasks(state: &AppState) -> ServingStatus {
    let mut serving = ServingStatus::Serving;
    if let Some(store) = &state.postgres {
        if let Some(bus) = &state.bus {
            tokio::spawn(crate::bus::nats::run(
                bus.clone(),
                state.settings.bus.clone(),
                store.clone(),
                state.hub.clone(),
                state.shutdown.clone(),
            ));
        }
        let availability = store.availability();
        let up = availability.subscribe();
        if !*up.borrow() {
            serving = ServingStatus::NotServing;
        }
        tokio::spawn(availability::watch(availability, state.shutdown.clone()));
        tokio::spawn(follow_database(state.clone(), up));
    }
    tokio::spawn(purge_expired(state.clone()));
    serving
}

/// Every service the gRPC port serves: health, reflection and `confide.v1`.
fn services<L: Clone>(
    mut server: Server<L>,
    state: &AppState,
) -> tonic::transport::server::Router<L> {
    let health = crate::health::service(state.health.clone(), state.shutdown.clone());
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(confide_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    // The DS answers requests up to `limits.max_request_bytes` with
    // RESOURCE_EXHAUSTED itself (`Ds::authenticated_client`); tonic's own
    // decode limit (OUT_OF_RANGE) sits above it and only stops absurd frames.
    let max_frame = state.settings.limits.max_request_bytes * 2 + 64 * 1024;
    server
        .add_service(health)
        .add_service(reflection)
        .add_service(
            AuthServiceServer::new(AuthApi(state.clone())).max_decoding_message_size(max_frame),
        )
        .add_service(
            DeviceServiceServer::new(DeviceApi(state.clone())).max_decoding_message_size(max_frame),
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
}
