//! PostgreSQL out of reach: calls get UNAVAILABLE with a retry delay, health
//! says NOT_SERVING, the log names the cause without a line per call, and
//! once the database is back the DS serves again with nothing acknowledged
//! lost. A DS started while the database is out of reach waits for it.
//! The machine's PostgreSQL serves other tests, so a [`DbProxy`] plays dead.

use std::time::Instant;

use confide_proto::v1;
use confide_tests::rpc::{group_stream, raw_channel};
use confide_tests::{DbProxy, TestApp, WAIT, captured_ds_logs, database_behind, spawn_app_on};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_types::StatusExt;

/// Polls the DS's health port until the server as a whole reports `wanted`.
async fn expect_health(app: &TestApp, wanted: ServingStatus) {
    let mut health = HealthClient::new(raw_channel(&app.health_endpoint).await);
    let deadline = Instant::now() + WAIT;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health answers")
            .into_inner()
            .status();
        if status == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "health stayed {status:?}, not {wanted:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A raw Fetch of the group's log, so the answer is exactly the DS's.
async fn fetch(
    api: &confide_client::Api,
    group: &[u8],
) -> Result<tonic::Response<v1::FetchResponse>, tonic::Status> {
    api.delivery()
        .fetch(api.request(v1::FetchRequest {
            stream: group_stream(group),
            after_seq: 0,
            limit: 10,
        }))
        .await
}

/// Log lines of the DSs in this process that contain `text`.
fn log_lines(text: &str) -> Vec<String> {
    String::from_utf8_lossy(&captured_ds_logs())
        .lines()
        .filter(|line| line.contains(text))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_postgres_is_unreachable_calls_get_unavailable_with_a_retry_delay_and_health_is_not_serving()
 {
    let proxy = DbProxy::start().await;
    let app = spawn_app_on(database_behind(&proxy).await, |_| {}).await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"before").await.expect("sending before");
    expect_health(&app, ServingStatus::Serving).await;

    proxy.cut();
    let deadline = Instant::now() + WAIT;
    let refused = loop {
        match fetch(alice.api(), &group).await {
            Ok(_) => assert!(Instant::now() < deadline, "calls kept succeeding"),
            Err(status) => break status,
        }
    };
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let delay = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("UNAVAILABLE says when to retry (RetryInfo)");
    assert!(!delay.is_zero());
    expect_health(&app, ServingStatus::NotServing).await;
    let cause = log_lines("PostgreSQL is unreachable");
    assert!(
        cause.iter().any(|line| line.contains("cause=")),
        "the log names why: {cause:#?}"
    );

    // Many refused calls, few log lines.
    let before = log_lines("the database is unavailable").len();
    for _ in 0..50 {
        let status = fetch(alice.api(), &group)
            .await
            .expect_err("the database is still out of reach");
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    }
    let logged = log_lines("the database is unavailable").len() - before;
    assert!(logged <= 5, "{logged} log lines for 50 refused calls");

    proxy.restore();
    expect_health(&app, ServingStatus::Serving).await;
    alice.send(&group, b"after").await.expect("sending after");
    let bodies: Vec<Vec<u8>> = bob
        .expect_messages(&group, 2)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [b"before".to_vec(), b"after".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ds_started_while_postgres_is_unreachable_comes_up_once_it_is_back() {
    let proxy = DbProxy::start().await;
    let database_url = database_behind(&proxy).await;
    proxy.cut();
    let starting = tokio::spawn(spawn_app_on(database_url, |_| {}));

    // It keeps trying, and says why it waits.
    let deadline = Instant::now() + WAIT;
    while proxy.refused() < 2 {
        assert!(!starting.is_finished(), "the DS gave up on the database");
        assert!(Instant::now() < deadline, "the DS did not retry");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        !starting.is_finished(),
        "the DS came up without its database"
    );
    assert!(!log_lines("waiting for PostgreSQL").is_empty());

    proxy.restore();
    let app = tokio::time::timeout(WAIT, starting)
        .await
        .expect("the DS did not come up once the database was back")
        .expect("starting the DS panicked");
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"hello").await.expect("sending");
    bob.expect_messages(&group, 1).await;
}
