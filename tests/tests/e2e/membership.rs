//! Adding and removing members: each sees exactly its part of the conversation.

use confide_client::{ClientError, Event};
use confide_ds::domain::EntryKind;
use confide_proto::v1;
use confide_tests::rpc::{
    expect_refused, group_seqs_until_welcome, group_stream, next_group_entry, next_welcome,
    subscribe,
};
use confide_tests::{Member, spawn_app};
use tonic::Code;

/// Every seq of the group's log that `member` can still fetch.
async fn fetchable_seqs(member: &Member, group: &[u8]) -> Vec<u64> {
    let api = member.api();
    api.delivery()
        .fetch(api.request(v1::FetchRequest {
            stream: group_stream(group),
            after_seq: 0,
            limit: 0,
        }))
        .await
        .expect("fetching the group")
        .into_inner()
        .entries
        .into_iter()
        .filter_map(|envelope| match envelope.entry {
            Some(v1::envelope::Entry::Group(entry)) => Some(entry.seq),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_receives_nothing_sent_after_removal_and_cannot_post() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    alice.send(&group, b"before the removal").await?;
    let carols_seq = carol.send(&group, b"carol, before").await?;
    carol.expect_messages(&group, 1).await;

    let removal = alice.remove_users(&group, &["carol"]).await?;
    alice.send(&group, b"after the removal").await?;

    // Carol has not synced yet, so her client still holds the group; the DS
    // no longer takes posts from her.
    match carol.send(&group, b"still here?").await {
        Err(ClientError::Rpc(status)) => assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{}",
            status.message()
        ),
        other => panic!("a removed member's send must be refused, got {other:?}"),
    }

    carol
        .wait_until("learning of the removal", |m| {
            m.events().iter().any(
                |e| matches!(e, Event::Removed { group: g, by } if *g == group && by == alice.id()),
            )
        })
        .await;
    carol.catch_up().await;
    assert_eq!(carol.bodies(&group), ["before the removal"]);
    assert!(!carol.groups().contains(&group), "carol dropped the group");
    let seqs = fetchable_seqs(&carol, &group).await;
    assert_eq!(
        seqs.last(),
        Some(&removal.seq),
        "carol can read up to the commit that removed her, nothing after"
    );

    // Nor can she post by replaying a message she sent as a member.
    let log = app.group_log(alice.id(), &group).await;
    let her_message = log
        .iter()
        .find(|e| e.seq == carols_seq)
        .expect("carol's message in the log");
    let replay = carol.api().request(v1::SendMessageRequest {
        group_id: group.clone().into(),
        message_id: b"a fresh id".to_vec().into(),
        message: her_message.message.clone(),
    });
    expect_refused(
        carol.api().groups().send_message(replay).await,
        Code::PermissionDenied,
        "a removed member replaying an old message",
    );

    // Bob saw everything, and nothing from carol after her removal.
    alice.send(&group, b"marker").await?;
    bob.expect_messages(&group, 4).await;
    assert_eq!(
        bob.bodies(&group),
        [
            "before the removal",
            "carol, before",
            "after the removal",
            "marker"
        ]
    );
    assert_eq!(bob.members(&group)?, [alice.id().clone(), bob.id().clone()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_member_receives_nothing_sent_before_it_joined() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"before dave").await?;
    bob.send(&group, b"also before dave").await?;

    let mut dave = app.client("dave", "phone").await;
    alice.add_users(&group, &["dave"]).await?;
    dave.expect_joined(&group).await;
    let add = app
        .group_log(alice.id(), &group)
        .await
        .into_iter()
        .rfind(|e| e.kind == EntryKind::Commit)
        .expect("the commit that added dave");
    alice.send(&group, b"welcome dave").await?;

    dave.expect_messages(&group, 1).await;
    assert_eq!(dave.bodies(&group), ["welcome dave"]);
    let seqs = fetchable_seqs(&dave, &group).await;
    assert!(
        seqs.iter().all(|&seq| seq > add.seq),
        "dave can fetch only what follows the commit that added him: {seqs:?}"
    );
    let everyone = [alice.id().clone(), bob.id().clone(), dave.id().clone()];
    assert_eq!(dave.members(&group)?, everyone);
    bob.expect_messages(&group, 2).await;
    assert_eq!(bob.members(&group)?, everyone);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_s_live_stream_stops_at_its_removal() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, bob, carol]) = app.conversation(["alice", "bob", "carol"]).await;
    let mut stream = subscribe(carol.api()).await;
    alice.send(&group, b"before").await?;
    let removal = alice.remove_users(&group, &["carol"]).await?;
    alice.send(&group, b"after").await?;

    // Bob invites carol elsewhere: once that Welcome is on her stream,
    // alice's entries before it have been routed too.
    let mut bob = bob;
    let other = bob.create_group().await?;
    bob.add_users(&other, &["carol"]).await?;
    let seen = group_seqs_until_welcome(&mut stream, &group, &other).await;
    assert_eq!(
        seen,
        [removal.seq - 1, removal.seq],
        "carol's stream carries the group up to the commit removing her"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_while_listening_gets_its_welcome_then_only_what_follows()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    alice.send(&group, b"before dave").await?;
    let mut dave = app.client("dave", "phone").await;
    let mut stream = subscribe(dave.api()).await;
    alice.add_users(&group, &["dave"]).await?;
    let seq = alice.send(&group, b"welcome dave").await?;

    let welcome = next_welcome(&mut stream).await;
    assert_eq!(welcome.group_id.as_ref(), group.as_slice());
    let entry = next_group_entry(&mut stream).await;
    assert_eq!(
        entry.seq, seq,
        "the first group entry is the first after the add"
    );
    assert_eq!(welcome.commit_seq, seq - 1);
    drop(stream);

    // And through the library's own live stream.
    let received = dave.expect_live_messages(&group, 1).await;
    assert_eq!(received[0].body, b"welcome dave");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_device_of_a_user_joins_and_leaves_together() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut carol]) = app.conversation(["alice", "carol"]).await;
    let mut phone = app.client("bob", "phone").await;
    let mut laptop = app.client("bob", "laptop").await;
    let added = alice.add_users(&group, &["bob"]).await?;
    assert_eq!(
        added.clients.len(),
        2,
        "one key package per device: {added:?}"
    );
    phone.expect_joined(&group).await;
    laptop.expect_joined(&group).await;

    alice.send(&group, b"hello bob, both of you").await?;
    for device in [&mut phone, &mut laptop] {
        let received = device.expect_messages(&group, 1).await;
        assert_eq!(received[0].body, b"hello bob, both of you");
    }
    phone.send(&group, b"from the phone").await?;
    let received = laptop.expect_messages(&group, 2).await;
    assert_eq!(received[1].sender, *phone.id());

    alice.remove_users(&group, &["bob"]).await?;
    for device in [&mut phone, &mut laptop] {
        device
            .wait_until("the removal", |m| {
                m.events()
                    .iter()
                    .any(|e| matches!(e, Event::Removed { .. }))
            })
            .await;
    }
    carol.catch_up().await;
    assert_eq!(
        carol.members(&group)?,
        [alice.id().clone(), carol.id().clone()]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_again_sees_only_what_follows_its_return() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"first stay").await?;
    bob.expect_messages(&group, 1).await;
    alice.remove_users(&group, &["bob"]).await?;
    alice.send(&group, b"while bob is away").await?;
    bob.wait_until("the removal", |m| {
        m.events()
            .iter()
            .any(|e| matches!(e, Event::Removed { .. }))
    })
    .await;

    alice.add_users(&group, &["bob"]).await?;
    bob.wait_until("joining again", |m| {
        m.events()
            .iter()
            .filter(|e| matches!(e, Event::Joined { .. }))
            .count()
            == 2
    })
    .await;
    alice.send(&group, b"second stay").await?;
    bob.expect_messages(&group, 2).await;
    assert_eq!(bob.bodies(&group), ["first stay", "second stay"]);
    bob.send(&group, b"glad to be back").await?;
    let received = alice.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"glad to be back");
    Ok(())
}
