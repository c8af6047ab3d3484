//! Limits: a client over its rates is told when to retry (and the client
//! library does), oversized requests are RESOURCE_EXHAUSTED, connections
//! beyond the limit are closed — and nobody else is affected.

use confide_proto::v1::{
    self, auth_service_client::AuthServiceClient, group_service_client::GroupServiceClient,
    key_package_service_client::KeyPackageServiceClient,
};
use confide_tests::rpc::{expect_rate_limited, expect_refused, raw_channel};
use confide_tests::{WAIT, spawn_app_with};
use tokio::time::Instant;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_request_rate_is_told_when_to_retry_and_others_are_served() {
    let app = spawn_app_with(|s| {
        s.limits.requests_per_second = 1;
        s.limits.request_burst = 3;
    })
    .await;
    let alice = app.client("alice", "phone").await;
    let bob = app.client("bob", "phone").await;
    let channel = raw_channel(&app.endpoint).await;
    let count = |api: &confide_client::Api| {
        let mut raw = KeyPackageServiceClient::new(channel.clone());
        let request = api.request(v1::CountKeyPackagesRequest {});
        async move { raw.count_key_packages(request).await }
    };

    // Registering used one of alice's calls (the key package upload); the
    // burst allows a few more, then the DS refuses and says when to retry.
    let mut refused = None;
    for _ in 0..5 {
        if let Err(status) = count(alice.api()).await {
            refused = Some(status);
            break;
        }
    }
    let refused = refused.expect("alice is refused within her burst plus one");
    let delay = expect_rate_limited(&refused, "requests");
    assert!(delay <= std::time::Duration::from_secs(1), "{delay:?}");

    // Bob's allowance is his own.
    count(bob.api()).await.expect("bob is not limited by alice");

    // After the delay the DS asked for, alice is served again.
    tokio::time::sleep(delay).await;
    count(alice.api())
        .await
        .expect("alice is served after the retry delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_library_waits_out_rate_limits_and_every_message_arrives() {
    let app = spawn_app_with(|s| {
        s.limits.requests_per_second = 4;
        s.limits.request_burst = 4;
    })
    .await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let sent: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("message {i}").into_bytes())
        .collect();
    for body in &sent {
        alice
            .send(&group, body)
            .await
            .expect("the library retries after the delay the DS names");
    }
    let received: Vec<Vec<u8>> = bob
        .expect_messages(&group, sent.len())
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(received, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_package_claims_are_limited_per_claimer_and_per_claimed_user() {
    let app = spawn_app_with(|s| {
        s.limits.claims_per_minute = 4;
        s.limits.claims_per_target_per_minute = 2;
    })
    .await;
    let mallory = app.client("mallory", "laptop").await;
    let eve = app.client("eve", "laptop").await;
    for user in ["bob", "carol", "dave"] {
        app.client(user, "phone").await;
    }
    let channel = raw_channel(&app.endpoint).await;
    let claim = |api: &confide_client::Api, user: &str| {
        let mut raw = KeyPackageServiceClient::new(channel.clone());
        let request = api.request(v1::ClaimKeyPackagesRequest { user: user.into() });
        async move { raw.claim_key_packages(request).await }
    };

    claim(mallory.api(), "bob").await.expect("first claim");
    claim(mallory.api(), "bob").await.expect("second claim");
    let status = claim(mallory.api(), "bob")
        .await
        .expect_err("a third claim of bob's key packages within the minute");
    expect_rate_limited(&status, "claims_per_target");
    // The refused claim counted against the claimer too: one left.
    claim(mallory.api(), "carol")
        .await
        .expect("another user's key packages");
    let status = claim(mallory.api(), "dave")
        .await
        .expect_err("more claims than the claimer may make per minute");
    expect_rate_limited(&status, "claims");

    // Another claimer is unaffected: bob still has key packages for eve.
    let claimed = claim(eve.api(), "bob").await.expect("eve claims bob's");
    assert_eq!(claimed.into_inner().key_packages.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_resource_exhausted_and_the_group_goes_on() {
    let app = spawn_app_with(|s| {
        // Above a registration's batch of key packages (about 10 KiB).
        s.max_message_bytes = 6 * 1024;
        s.limits.max_request_bytes = 16 * 1024;
    })
    .await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let channel = raw_channel(&app.endpoint).await;
    let mut raw = GroupServiceClient::new(channel);

    // One field above max_message_bytes.
    let status = raw
        .send_message(alice.api().request(v1::SendMessageRequest {
            group_id: group.clone().into(),
            message_id: b"big".to_vec().into(),
            message: vec![7u8; 6 * 1024 + 1].into(),
        }))
        .await
        .expect_err("an oversized message");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("more than the 6144 allowed"),
        "{status:?}"
    );

    // Every field within its limit, the request above max_request_bytes.
    let status = raw
        .submit_commit(alice.api().request(v1::SubmitCommitRequest {
            group_id: group.clone().into(),
            commit: vec![1u8; 6 * 1024].into(),
            welcome: vec![2u8; 6 * 1024].into(),
            group_info: vec![3u8; 6 * 1024].into(),
        }))
        .await
        .expect_err("an oversized request");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("the request is"), "{status:?}");

    // Far beyond tonic's own decode limit too: still RESOURCE_EXHAUSTED.
    let status = raw
        .send_message(alice.api().request(v1::SendMessageRequest {
            group_id: group.clone().into(),
            message_id: b"huge".to_vec().into(),
            message: vec![7u8; 1024 * 1024].into(),
        }))
        .await
        .expect_err("an absurd frame");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    alice
        .send(&group, b"still here")
        .await
        .expect("the group goes on");
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_and_open_ones_keep_working() {
    let app = spawn_app_with(|s| s.transport.max_connections = 2).await;
    let first = app.client("alice", "phone").await;
    let second = raw_channel(&app.endpoint).await;

    // A third connection is accepted and closed at once: no call goes through.
    let third = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .expect("a valid endpoint")
        .connect()
        .await;
    if let Ok(third) = third {
        // How the closed connection surfaces (cancelled, broken pipe, …)
        // depends on timing; that nothing is served does not.
        KeyPackageServiceClient::new(third)
            .count_key_packages(first.api().request(v1::CountKeyPackagesRequest {}))
            .await
            .expect_err("a call over a connection beyond the limit");
    }

    // The open connections keep working.
    KeyPackageServiceClient::new(second.clone())
        .count_key_packages(first.api().request(v1::CountKeyPackagesRequest {}))
        .await
        .expect("an open connection is served");

    // Closing one frees its slot for a new connection.
    drop(second);
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
                .ok()?
                .connect()
                .await
                .ok()?;
            KeyPackageServiceClient::new(channel)
                .count_key_packages(first.api().request(v1::CountKeyPackagesRequest {}))
                .await
                .ok()
        };
        if attempt.await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection's slot was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_from_one_address_is_rate_limited() {
    let app = spawn_app_with(|s| s.limits.unauthenticated_per_minute = 3).await;
    let mut raw = AuthServiceClient::new(raw_channel(&app.endpoint).await);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let result = raw
            .create_challenge(v1::CreateChallengeRequest {
                client: Some(v1::ClientId {
                    user: format!("nobody{i}"),
                    device: "x".into(),
                }),
            })
            .await;
        statuses.push(result.map(|_| ()));
    }
    // Three unauthenticated calls pass the limiter (and get a challenge, as
    // any client name does); the fourth is refused before anything is
    // looked up.
    for status in &statuses[..3] {
        assert!(status.is_ok(), "a challenge within the limit: {status:?}");
    }
    let refused = expect_refused(
        statuses
            .pop()
            .expect("four calls")
            .map(tonic::Response::new),
        Code::ResourceExhausted,
        "a fourth challenge within the minute",
    );
    expect_rate_limited(&refused, "unauthenticated");
}
