//! Nothing acknowledged is lost: a DS restarted between a send and the
//! receive still delivers everything; shutting down ends live streams.

use confide_tests::rpc::{next_group_entry, subscribe};
use confide_tests::{WAIT, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ds_restarted_between_send_and_receive_loses_nothing() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let body = format!("before the restart {i}");
        let seq = alice.send(&group, body.as_bytes()).await?;
        sent.push((seq, body.into_bytes()));
    }

    let app = app.restart().await;
    bob.reconnect(app.api().await).await?;
    let received: Vec<(u64, Vec<u8>)> = bob
        .expect_messages(&group, 5)
        .await
        .into_iter()
        .map(|m| (m.seq, m.body))
        .collect();
    assert_eq!(received, sent);

    // The group carries on through the new process: a commit and a message.
    alice.reconnect(app.api().await).await?;
    let update = alice.self_update(&group).await?;
    bob.send(&group, b"after the restart").await?;
    let last = alice.expect_messages(&group, 1).await;
    assert_eq!(last[0].body, b"after the restart");
    bob.expect_epoch(&group, update.epoch).await;
    assert_eq!(
        bob.epoch_authenticator(&group)?,
        alice.epoch_authenticator(&group)?
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_ends_live_streams() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, bob]) = app.conversation(["alice", "bob"]).await;
    let mut stream = subscribe(bob.api()).await;
    alice.send(&group, b"hello").await?;
    next_group_entry(&mut stream).await;

    // `stop` fails the test unless the DS stops within the limit, which it
    // cannot while the stream is held open.
    app.stop().await;
    let ended = tokio::time::timeout(WAIT, async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the live stream ended with the DS");
    Ok(())
}
