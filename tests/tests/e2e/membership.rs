//! Adding and removing members, and members leaving: each sees exactly its
//! part of the conversation.

use std::time::Duration;

use confide_client::{ClientError, Event, GroupId, Leave, StateLocation};
use confide_ds::domain::EntryKind;
use confide_proto::v1;
use confide_tests::rpc::{
    expect_refused, group_seqs_until_welcome, group_stream, next_group_entry, next_welcome,
    subscribe,
};
use confide_tests::{HostileDs, Lost, Member, TestApp, spawn_app};
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
                |e| matches!(e, Event::Removed { group: g, by, .. } if *g == group && by == alice.id()),
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

/// Whether `member` saw `user` leave `group` (every device of it).
fn saw_leave(member: &Member, group: &[u8], user: &str) -> bool {
    member.events().iter().any(|e| {
        matches!(e, Event::MembersLeft { group: g, members }
            if g == group && members.iter().all(|m| m.client.user() == user))
    })
}

/// Whether `member` learnt that it is out of `group`.
fn saw_removed(member: &Member, group: &[u8]) -> bool {
    member
        .events()
        .iter()
        .any(|e| matches!(e, Event::Removed { group: g, .. } if g == group))
}

fn users(member: &Member, group: &[u8]) -> Vec<String> {
    let mut users: Vec<String> = member
        .members(group)
        .expect("a member of the group")
        .iter()
        .map(|client| client.user().to_string())
        .collect();
    users.dedup();
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_committed_out_by_the_others_syncing_and_reads_nothing_after()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;

    let asked = bob.leave(&group).await?;
    assert!(
        matches!(&asked, Leave::Proposed { devices, .. } if devices == std::slice::from_ref(bob.id())),
        "{asked:?}"
    );
    // Nobody is asked to commit it: syncing is enough, whoever is first.
    bob_is_out(&group, [&mut alice, &mut carol], &mut bob).await;
    assert!(!bob.groups().contains(&group), "bob forgot the group");
    assert!(
        bob.events()
            .iter()
            .any(|e| matches!(e, Event::Removed { left: true, .. })),
        "bob is told he left, not that he was removed: {:#?}",
        bob.events()
    );
    // The committer's history too says bob left; nobody removed him.
    for member in [&alice, &carol] {
        let history = member.history(&group, 100)?;
        let events: Vec<&Event> = history.iter().map(|entry| &entry.event).collect();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::MembersLeft { .. }))
                && !events
                    .iter()
                    .any(|e| matches!(e, Event::MembersRemoved { .. })),
            "{events:#?}"
        );
    }

    let seq = alice.send(&group, b"after bob left").await?;
    carol.expect_messages(&group, 1).await;
    bob.catch_up().await;
    assert!(bob.messages(&group).is_empty(), "{:#?}", bob.events());
    assert!(
        !fetchable_seqs(&bob, &group).await.contains(&seq),
        "the DS serves bob nothing sent after he left"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_leaving_takes_every_device_of_theirs_along() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    let mut phone = app.client("bob", "phone").await;
    let mut laptop = app.client("bob", "laptop").await;
    alice.add_users(&group, &["bob"]).await?;
    phone.expect_joined(&group).await;
    laptop.expect_joined(&group).await;

    let asked = laptop.leave(&group).await?;
    let Leave::Proposed { mut devices, .. } = asked else {
        panic!("{asked:?}");
    };
    devices.sort();
    assert_eq!(devices, [laptop.id().clone(), phone.id().clone()]);
    // The phone, on its way out, cannot commit anything: the commit would
    // have to carry its own removal.
    phone.catch_up().await;
    let update = phone.self_update(&group).await;
    assert!(
        matches!(update, Err(ClientError::RemovalPending)),
        "{update:?}"
    );
    alice
        .wait_until("bob leaving", |m| saw_leave(m, &group, "bob"))
        .await;
    assert_eq!(alice.members(&group)?, [alice.id().clone()]);
    for device in [&mut phone, &mut laptop] {
        device
            .wait_until("being out", |m| saw_removed(m, &group))
            .await;
    }
    Ok(())
}

/// Alice reaches the DS through `link`, which can lose her commits; Bob,
/// whose state is the file `bob`, and Carol reach it directly.
async fn alice_behind_a_lossy_link_and_bob_in_a_file(
    app: &TestApp,
    bob: &StateLocation,
) -> (HostileDs, GroupId, Member, Member, Member) {
    let link = HostileDs::in_front_of(app).await;
    let mut alice = link.client("alice", "phone").await;
    alice.set_commit_resend_pause(Duration::from_millis(1));
    let mut bob = Member::new(app.register("bob", "phone", bob).await.expect("bob"));
    let mut carol = app.client("carol", "phone").await;
    let group = alice.group_with(&mut [&mut bob, &mut carol]).await;
    (link, group, alice, bob, carol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_overtaken_by_another_commit_is_proposed_again_even_after_a_restart()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("bob.db"));
    let (link, group, mut alice, bob, mut carol) =
        alice_behind_a_lossy_link_and_bob_in_a_file(&app, &state).await;
    let epoch = alice.epoch(&group)?;
    // Alice's update, built before bob asks to leave, does not reach the DS
    // yet: it is in doubt, and sent again at her next sync.
    link.lose_commits(Lost::Request);
    let update = alice.self_update(&group).await;
    assert!(
        matches!(update, Err(ClientError::CommitInDoubt)),
        "{update:?}"
    );
    let mut bob = bob;
    let asked = bob.leave(&group).await?;
    assert!(
        matches!(asked, Leave::Proposed { epoch: e, .. } if e == epoch),
        "{asked:?}"
    );
    drop(bob);

    // The update takes the epoch without bob's proposal, which dies with it.
    link.stop_attacking();
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group)?, epoch + 1);
    carol.catch_up().await;
    assert_eq!(carol.epoch(&group)?, epoch + 1);
    assert_eq!(users(&carol, &group), ["alice", "bob", "carol"]);

    // Bob, restarted, sees the new epoch while still leaving, and proposes
    // again; the others' syncs commit it.
    let mut bob = Member::new(confide_client::Client::open(app.api().await, &state).await?);
    bob.catch_up().await;
    let proposals_after = app
        .group_log(carol.id(), &group)
        .await
        .iter()
        .filter(|e| e.kind == EntryKind::Proposal && e.epoch == epoch + 1)
        .count();
    assert_eq!(proposals_after, 1, "bob proposed again in the new epoch");
    bob_is_out(&group, [&mut carol, &mut alice], &mut bob).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_member_who_leaves_forgets_the_group_at_once() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice]) = app.conversation(["alice"]).await;
    let mut laptop = app.client("alice", "laptop").await;
    alice.add_users(&group, &["alice"]).await?;
    laptop.expect_joined(&group).await;

    assert_eq!(alice.leave(&group).await?, Leave::Alone);
    assert!(!alice.groups().contains(&group));
    laptop
        .wait_until("being out", |m| saw_removed(m, &group))
        .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_its_way_out_is_told_so_when_it_sends() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;

    bob.leave(&group).await?;
    let refused = bob.send(&group, b"one last word").await;
    assert!(
        matches!(refused, Err(ClientError::RemovalPending)),
        "{refused:?}"
    );
    alice.catch_up().await;
    assert_eq!(users(&alice, &group), ["alice"]);
    alice.send(&group, b"bye bob").await?;
    bob.wait_until("being out", |m| saw_removed(m, &group))
        .await;
    assert!(bob.messages(&group).is_empty(), "{:#?}", bob.events());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_yourself_is_refused_with_the_way_to_leave() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, _bob]) = app.conversation(["alice", "bob"]).await;
    let refused = alice.remove_users(&group, &["alice"]).await;
    let error = refused.expect_err("removing oneself").to_string();
    assert!(error.contains("leave the group instead"), "{error}");
    Ok(())
}

/// Waits until alice and carol (in `others`, syncing in that order) saw bob
/// leave and have only each other left, and bob saw himself removed.
async fn bob_is_out(group: &[u8], others: [&mut Member; 2], bob: &mut Member) {
    for member in others {
        member
            .wait_until("bob leaving", |m| saw_leave(m, group, "bob"))
            .await;
        assert_eq!(users(member, group), ["alice", "carol"]);
    }
    bob.wait_until("being out", |m| saw_removed(m, group)).await;
}
