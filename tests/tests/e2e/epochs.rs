//! Epochs: exactly one commit per epoch; a commit or message for the wrong
//! epoch is refused with the current one, and the library retries by itself.

use std::sync::Arc;

use confide_client::error::wrong_epoch;
use confide_ds::Settings;
use confide_proto::v1;
use confide_tests::rpc::expect_refused;
use confide_tests::{RawMember, spawn_app};
use tokio::sync::Barrier;
use tokio::task::LocalSet;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_members_committing_at_once_all_succeed_one_commit_per_epoch() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, members) = app
        .conversation(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"])
        .await;
    let start_epoch = members[0].epoch(&group)?;
    let reader = members[0].id().clone();

    // Each task owns its member. They share one thread (`spawn_local`):
    // `Client`'s futures are not `Send`, so `tokio::spawn` cannot take them;
    // the commits still race at the DS, which runs on its own threads.
    let barrier = Arc::new(Barrier::new(members.len()));
    let tasks = LocalSet::new();
    let handles: Vec<_> = members
        .into_iter()
        .map(|mut member| {
            let (barrier, group) = (barrier.clone(), group.clone());
            tasks.spawn_local(async move {
                barrier.wait().await;
                let summary = member.self_update(&group).await;
                (member, summary)
            })
        })
        .collect();
    let finished = tasks
        .run_until(futures::future::try_join_all(handles))
        .await?;
    let mut members = Vec::new();
    let mut summaries = Vec::new();
    for (member, summary) in finished {
        let summary = summary.unwrap_or_else(|e| panic!("{}'s self-update: {e}", member.id()));
        members.push(member);
        summaries.push(summary);
    }

    // Each commit started its own epoch, and the losers caught up and retried.
    let mut epochs: Vec<u64> = summaries.iter().map(|s| s.epoch).collect();
    epochs.sort();
    assert_eq!(
        epochs,
        (start_epoch + 1..=start_epoch + 8).collect::<Vec<_>>()
    );
    assert!(
        summaries.iter().any(|s| s.retries > 0),
        "eight commits at once should have lost some races: {summaries:?}"
    );

    // The DS accepted exactly one commit per epoch: the whole log's commits
    // were made for consecutive, distinct epochs.
    let commit_epochs = app.commit_epochs(&reader, &group).await;
    let first = commit_epochs[0];
    assert_eq!(
        commit_epochs,
        (first..first + commit_epochs.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(commit_epochs.last(), Some(&(start_epoch + 7)));

    // Everyone ends in the same epoch with the same secrets.
    let final_epoch = start_epoch + 8;
    for member in &mut members {
        member.expect_epoch(&group, final_epoch).await;
    }
    let authenticator = members[0].epoch_authenticator(&group)?;
    for member in &members {
        assert_eq!(
            member.epoch_authenticator(&group)?,
            authenticator,
            "{} forked",
            member.id()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_commit_is_refused_with_the_current_epoch() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;

    // Rita's commit is delayed; meanwhile bob's wins the epoch.
    let late = rita.craft_self_update();
    let update = bob.self_update(&group).await?;
    assert_eq!(update.epoch, late.epoch + 1);
    let status = expect_refused(
        rita.submit(late.request()).await,
        Code::FailedPrecondition,
        "a commit for a past epoch",
    );
    assert_eq!(
        wrong_epoch(&status),
        Some(update.epoch),
        "the refusal carries the current epoch: {status:?}"
    );

    // Only bob's commit reached anyone.
    alice.expect_epoch(&group, update.epoch).await;
    assert_eq!(
        alice.epoch_authenticator(&group)?,
        bob.epoch_authenticator(&group)?
    );
    let commit_epochs = app.commit_epochs(alice.id(), &group).await;
    assert_eq!(
        commit_epochs,
        (0..update.epoch).collect::<Vec<_>>(),
        "one commit per epoch"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_from_an_epoch_outside_the_window_is_refused_with_the_current_epoch()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let seq = alice.send(&group, b"from long ago").await?;
    let old = app
        .group_log(alice.id(), &group)
        .await
        .into_iter()
        .find(|e| e.seq == seq)
        .expect("alice's message");

    // The group moves past the window of epochs messages are accepted for.
    let lag = Settings::for_tests().max_epoch_lag;
    let mut current = old.epoch;
    for _ in 0..=lag {
        current = bob.self_update(&group).await?.epoch;
    }
    let api = alice.api();
    let status = expect_refused(
        api.groups()
            .send_message(api.request(v1::SendMessageRequest {
                group_id: group.clone().into(),
                message_id: b"late".to_vec().into(),
                message: old.message,
            }))
            .await,
        Code::FailedPrecondition,
        "a message from an epoch outside the window",
    );
    assert_eq!(wrong_epoch(&status), Some(current), "{status:?}");

    // The library recovers by itself: it catches up and sends in the new epoch.
    alice.send(&group, b"now").await?;
    let received = bob.expect_messages(&group, 2).await;
    assert_eq!(received[1].body, b"now");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmitting_an_accepted_commit_returns_its_original_result() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice.add_users(&group, &["rita"]).await?;
    rita.join().await;
    let commit = rita.craft_self_update();
    let submit = async || rita.submit(commit.request()).await.map(|r| r.into_inner());

    let first = submit().await?;
    assert_eq!(submit().await?, first, "a retry right away");
    bob.self_update(&group).await?;
    assert_eq!(submit().await?, first, "a retry after the group moved on");

    let log = app.group_log(alice.id(), &group).await;
    let copies = log
        .iter()
        .filter(|e| e.message.as_ref() == commit.commit.as_slice())
        .count();
    assert_eq!(copies, 1, "the commit is in the log once");
    alice.expect_epoch(&group, first.epoch + 1).await;
    Ok(())
}
