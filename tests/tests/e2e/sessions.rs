//! A live stream lasts as long as its session: it ends with UNAUTHENTICATED
//! when the session is revoked, expires or its client is removed, on
//! whichever replica the stream is open. A client knows when to renew its
//! session, and one whose session ended anyway signs in again and goes on.

use confide_client::Api;
use confide_proto::v1;
use confide_tests::rpc::subscribe;
use confide_tests::{RawMember, TestApp, WAIT, spawn_app, spawn_app_with};
use tonic::Code;

/// An authenticated connection to `app` with a new session of `member`.
async fn session_on(app: &TestApp, member: &RawMember) -> Api {
    let mut api = app.api().await;
    let token = member.new_session(app).await;
    api.set_token(&token).expect("an ASCII session token");
    api
}

/// Waits for the stream to end and asserts it ended with UNAUTHENTICATED
/// and a reason containing `reason`.
async fn expect_ended_unauthenticated(stream: &mut tonic::Streaming<v1::Envelope>, reason: &str) {
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("the stream ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream stayed open");
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(
        ended.message().contains(reason),
        "expected {reason:?}: {ended:?}"
    );
}

async fn revoke(api: &Api) {
    api.auth()
        .revoke_session(api.request(v1::RevokeSessionRequest {}))
        .await
        .expect("revoking the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_stream_ends_when_its_session_is_revoked() {
    let app = spawn_app().await;
    let alice = RawMember::register(&app, "alice", "phone").await;
    let api = session_on(&app, &alice).await;
    let mut stream = subscribe(&api).await;

    revoke(&api).await;
    expect_ended_unauthenticated(&mut stream, "session revoked").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_stream_on_another_replica_ends_when_its_session_is_revoked() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let alice = RawMember::register(&app, "alice", "phone").await;
    let token = alice.new_session(&app).await;
    let mut on_replica = replica.api().await;
    on_replica
        .set_token(&token)
        .expect("an ASCII session token");
    let mut stream = subscribe(&on_replica).await;

    let mut on_app = app.api().await;
    on_app.set_token(&token).expect("an ASCII session token");
    revoke(&on_app).await;
    expect_ended_unauthenticated(&mut stream, "session revoked").await;
}

/// A call that needs nothing but the session: listing one's devices.
async fn call_with_session(api: &Api, user: &str) -> Result<(), tonic::Status> {
    api.devices()
        .list_devices(api.request(v1::ListDevicesRequest {
            user: user.to_owned(),
        }))
        .await
        .map(drop)
}

/// Replicas keep the sessions they checked in memory; one revoked through
/// another replica is refused within moments, not when that memory ages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_on_one_replica_is_refused_by_another_that_just_accepted_it() {
    let app = spawn_app().await;
    let replica = app.spawn_replica().await;
    let alice = RawMember::register(&app, "alice", "phone").await;
    let token = alice.new_session(&app).await;
    let mut on_replica = replica.api().await;
    on_replica
        .set_token(&token)
        .expect("an ASCII session token");
    for _ in 0..3 {
        call_with_session(&on_replica, "alice")
            .await
            .expect("the session is valid");
    }

    let mut on_app = app.api().await;
    on_app.set_token(&token).expect("an ASCII session token");
    revoke(&on_app).await;
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            match call_with_session(&on_replica, "alice").await {
                Ok(()) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the other replica kept accepting the revoked session");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let on_app_refused = call_with_session(&on_app, "alice")
        .await
        .expect_err("the replica that revoked it refuses it at once");
    assert_eq!(on_app_refused.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_stream_ends_when_its_session_expires_on_every_replica() {
    let app = spawn_app_with(|s| s.session_ttl_secs = 4).await;
    let replica = app.spawn_replica().await;
    let alice = RawMember::register(&app, "alice", "phone").await;
    let token = alice.new_session(&app).await;
    let mut on_replica = replica.api().await;
    on_replica
        .set_token(&token)
        .expect("an ASCII session token");
    let mut on_app = app.api().await;
    on_app.set_token(&token).expect("an ASCII session token");
    let mut streams = [subscribe(&on_app).await, subscribe(&on_replica).await];

    for stream in &mut streams {
        expect_ended_unauthenticated(stream, "session expired").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioned_clients_stream_ends_on_another_replica() {
    const ADMIN: &str = "operator secret";
    let app = spawn_app_with(|s| s.admin_token = Some(ADMIN.into())).await;
    let replica = app.spawn_replica().await;
    let laptop = RawMember::register(&app, "alice", "laptop").await;
    let on_replica = session_on(&replica, &laptop).await;
    let mut stream = subscribe(&on_replica).await;

    let mut request = tonic::Request::new(v1::RemoveClientRequest {
        client: Some(laptop.proto_id()),
        ..Default::default()
    });
    request.metadata_mut().insert(
        confide_proto::ADMIN_TOKEN_HEADER,
        ADMIN.parse().expect("an ASCII header value"),
    );
    app.api()
        .await
        .auth()
        .remove_client(request)
        .await
        .expect("the operator removes the laptop");
    expect_ended_unauthenticated(&mut stream, "removed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_knows_to_renew_its_session_before_it_ends_and_signs_in_again_after_it_did() {
    const SESSION: std::time::Duration = std::time::Duration::from_secs(3);
    let app = spawn_app_with(|s| s.session_ttl_secs = SESSION.as_secs()).await;
    let started = std::time::Instant::now();
    let mut alice = app.client("alice", "phone").await;
    let renew_at = alice
        .session_renew_at()
        .expect("the DS said when the session ends");
    assert!(
        renew_at < started + SESSION,
        "renewed before the session ends"
    );

    // A computer that slept through the renewal: time passes.
    tokio::time::sleep(SESSION).await;
    let expired = alice.sync().await.expect_err("the session expired");
    assert!(
        expired.needs_new_session() && !expired.is_connection_lost(),
        "{expired}"
    );
    alice.authenticate().await.expect("signing in again");
    alice.sync().await.expect("the new session works");
}
