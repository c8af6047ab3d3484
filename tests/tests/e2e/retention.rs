//! Bounded storage: the DS prunes group log entries every member
//! acknowledged, and those older than its retention whoever acknowledged
//! them. A member that was away while entries it had not read were pruned is
//! told so (FAILED_PRECONDITION, `ENTRIES_PRUNED`), never skipped ahead in
//! silence, and its client re-syncs the group by external commit and goes on.

use std::time::{Duration, SystemTime};

use confide_client::error::entries_pruned;
use confide_client::{ClientError, Event};
use confide_proto::v1;
use confide_tests::{Member, TestApp, WAIT, spawn_app, spawn_app_with};
use tokio::time::Instant;

/// A retention the test's own sends never reach, unless the DS is told
/// it is `LATER`.
const RETENTION: Duration = Duration::from_secs(3600);
const LATER: Duration = Duration::from_secs(2 * 3600);

fn selector(group: &[u8]) -> v1::StreamSelector {
    v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::GroupId(group.to_vec().into())),
    }
}

/// The events of `member` about re-syncing `group`: the reasons it gave,
/// and whether it rejoined.
fn resync_reasons(events: &[Event], group: &[u8]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Resyncing { group: g, reason } if g == group => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn resynced(events: &[Event], group: &[u8]) -> bool {
    events
        .iter()
        .any(|event| matches!(event, Event::Resynced { group: g, .. } if g == group))
}

/// How many rows the DS's group log holds now.
async fn log_rows(app: &TestApp) -> i64 {
    let (db, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test database");
    tokio::spawn(connection);
    db.query_one("SELECT count(*) FROM group_log", &[])
        .await
        .expect("counting the log")
        .get(0)
}

/// Waits until the purge has emptied the log, failing after [`WAIT`].
async fn drained(app: &TestApp, what: &str) {
    let deadline = Instant::now() + WAIT;
    while log_rows(app).await > 0 {
        assert!(Instant::now() < deadline, "{what} were never pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alice sends while Bob is away, and the DS prunes past its retention.
async fn bob_away_while_pruned(app: &TestApp) -> (Vec<u8>, Member, Member) {
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"before").await.expect("sending");
    bob.expect_messages(&group, 1).await;
    for i in 0..5 {
        alice
            .send(&group, format!("while bob was away {i}").as_bytes())
            .await
            .expect("sending");
    }
    alice.catch_up().await;
    let report = app
        .store
        .prune(SystemTime::now() + LATER, RETENTION)
        .await
        .expect("pruning");
    assert!(report.log_entries >= 6, "{report:?}");
    (group, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_while_its_entries_were_pruned_is_told_and_resyncs_then_reads_on()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, mut alice, mut bob) = bob_away_while_pruned(&app).await;

    // What the DS tells Bob's device when it reads on from where it was.
    let status = match bob.api().fetch(selector(&group), 0, 100).await {
        Err(ClientError::Rpc(status)) => status,
        other => panic!("expected ENTRIES_PRUNED, got {other:?}"),
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let (pruned_group, first_seq) = entries_pruned(&status).expect("ENTRIES_PRUNED details");
    assert_eq!(pruned_group, group);
    assert_eq!(log_rows(&app).await, 0, "the whole log was past retention");

    bob.catch_up().await;
    let reasons = resync_reasons(bob.events(), &group);
    assert_eq!(reasons.len(), 1, "{:#?}", bob.events());
    assert!(
        reasons[0].contains("no longer holds entries"),
        "{}",
        reasons[0]
    );
    assert!(resynced(bob.events(), &group), "{:#?}", bob.events());

    // Alice has seen the rejoin, so she writes in an epoch Bob is in.
    alice.catch_up().await;
    alice.send(&group, b"after bob came back").await?;
    let messages = bob.expect_messages(&group, 2).await;
    assert_eq!(messages[1].body, b"after bob came back");
    assert!(messages[1].seq > first_seq);
    // And alice reads Bob's messages in the epoch he rejoined at.
    bob.send(&group, b"bob is back").await?;
    assert_eq!(
        alice.expect_messages(&group, 1).await[0].body,
        b"bob is back"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_stream_that_meets_pruned_entries_resyncs_and_streams_on() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, mut alice, mut bob) = bob_away_while_pruned(&app).await;

    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while !resynced(&seen, &group) {
        let event = tokio::time::timeout_at(deadline, bob.next_event())
            .await
            .unwrap_or_else(|_| panic!("bob's live stream never re-synced; it saw {seen:#?}"))?;
        seen.push(event);
    }
    assert_eq!(resync_reasons(&seen, &group).len(), 1, "{seen:#?}");

    alice.catch_up().await;
    alice.send(&group, b"live after the resync").await?;
    let messages = bob.expect_live_messages(&group, 2).await;
    assert_eq!(messages[1].body, b"live after the resync");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_is_bounded_under_retention() -> anyhow::Result<()> {
    let app = spawn_app_with(|settings| {
        settings.purge_interval_secs = 1;
        settings.retention_secs = 6;
    })
    .await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;

    // Everyone reads and acknowledges: after each round the log drains.
    const ROUND: usize = 20;
    for round in 1..=4 {
        for i in 0..ROUND {
            alice
                .send(&group, format!("round {round} message {i}").as_bytes())
                .await?;
        }
        assert!(log_rows(&app).await >= ROUND as i64);
        bob.expect_messages(&group, round * ROUND).await;
        carol.expect_messages(&group, round * ROUND).await;
        alice.catch_up().await;
        drained(&app, "acknowledged entries").await;
    }

    assert!(
        app.metrics()
            .await
            .contains("confide_pruned_total{what=\"log_entries\"}"),
        "the purge counts what it pruned"
    );

    // Carol stops reading: past the retention her entries go anyway.
    for i in 0..ROUND {
        alice
            .send(&group, format!("carol is away {i}").as_bytes())
            .await?;
    }
    bob.expect_messages(&group, 5 * ROUND).await;
    alice.catch_up().await;
    assert!(log_rows(&app).await >= ROUND as i64);
    drained(&app, "entries past the retention").await;
    // Carol comes back: she is told, re-syncs, and reads what follows.
    carol.catch_up().await;
    assert!(resynced(carol.events(), &group), "{:#?}", carol.events());
    alice.catch_up().await;
    alice.send(&group, b"welcome back carol").await?;
    let messages = carol.expect_messages(&group, 4 * ROUND + 1).await;
    assert_eq!(
        messages.last().map(|m| m.body.clone()),
        Some(b"welcome back carol".to_vec())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_whose_removal_was_pruned_forgets_the_group_and_reads_its_others()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (one, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let two = alice.group_with(&mut [&mut bob]).await;
    // Bob is away while alice removes him from one, and long enough for
    // the DS to prune his removal.
    alice.remove_users(&one, &["bob"]).await?;
    alice.send(&one, b"bob is gone").await?;
    alice.catch_up().await;
    app.store
        .prune(SystemTime::now() + LATER, RETENTION)
        .await
        .expect("pruning");

    bob.catch_up().await;
    assert!(
        !bob.groups().contains(&one),
        "bob cannot rejoin a group he was removed from"
    );
    assert_eq!(
        resync_reasons(bob.events(), &one).len(),
        1,
        "{:#?}",
        bob.events()
    );
    // Nothing is asked again: a second sync is quiet, and the live stream
    // opens and delivers the other group.
    assert!(bob.catch_up().await.is_empty());
    alice.send(&two, b"still here").await?;
    let messages = bob.expect_live_messages(&two, 1).await;
    assert_eq!(messages[0].body, b"still here");
    Ok(())
}
