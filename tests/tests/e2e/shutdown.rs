//! Graceful shutdown: health turns NOT_SERVING for the server as a whole and
//! every service, every stream ends (Subscribe and health Watch alike), and
//! the DS stops within its grace period whatever its clients do.

use confide_proto::v1;
use confide_tests::rpc::{raw_channel, subscribe};
use confide_tests::{RawMember, WAIT, spawn_app_with};
use tonic::codegen::http::uri::PathAndQuery;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

async fn watch(
    channel: &tonic::transport::Channel,
    service: &str,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("watching {service:?}: {e}"))
        .into_inner()
}

/// The statuses a Watch stream reports until it ends.
async fn statuses_until_the_end(
    mut watch: tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> Vec<ServingStatus> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(response) = watch.message().await.expect("the Watch stream failed") {
            seen.push(response.status());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the Watch stream stayed open, after {seen:?}"));
    seen
}

/// A call whose request never ends: the client keeps the call, and so its
/// connection, open for as long as the DS lets it.
async fn call_that_never_finishes(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec =
        tonic_prost::ProstCodec::<v1::GetServiceInfoRequest, v1::GetServiceInfoResponse>::default();
    let request = tonic::Request::new(futures::stream::pending::<v1::GetServiceInfoRequest>());
    grpc.client_streaming(
        request,
        PathAndQuery::from_static("/confide.v1.AuthService/GetServiceInfo"),
        codec,
    )
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_shutdown_health_turns_not_serving_every_stream_ends_and_the_ds_stops_within_its_grace()
{
    let app = spawn_app_with(|s| s.shutdown_grace_secs = 1).await;
    let channel = raw_channel(&app.endpoint).await;
    let mut overall = watch(&channel, "").await;
    let first = overall
        .message()
        .await
        .expect("a status")
        .expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);
    let delivery = watch(&channel, "confide.v1.DeliveryService").await;
    let alice = RawMember::register(&app, "alice", "phone").await;
    let mut live = subscribe(alice.api()).await;
    let stuck = tokio::spawn(call_that_never_finishes(raw_channel(&app.endpoint).await));

    let stopped = tokio::spawn(app.stop());

    assert_eq!(
        statuses_until_the_end(overall).await.last(),
        Some(&ServingStatus::NotServing),
        "the server as a whole"
    );
    assert_eq!(
        statuses_until_the_end(delivery).await.last(),
        Some(&ServingStatus::NotServing),
        "confide.v1.DeliveryService"
    );
    let ended = tokio::time::timeout(WAIT, async {
        while let Ok(Some(_)) = live.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the Subscribe stream stayed open");
    stopped
        .await
        .expect("stopping the DS panicked (it did not stop within the grace period)");
    let cut = tokio::time::timeout(WAIT, stuck)
        .await
        .expect("the unfinished call outlived the DS")
        .expect("the unfinished call panicked");
    assert!(
        cut.is_err(),
        "a call that never sent its request cannot succeed"
    );
}
