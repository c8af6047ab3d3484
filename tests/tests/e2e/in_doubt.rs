//! A commit whose answer never came stays pending, in doubt, until the
//! group's log settles it: the DS took it (the committer merges it), another
//! commit took its epoch (the committer drops it and follows the winner), or
//! the DS never got it (the same commit is sent again). Until then the
//! committer builds nothing on the group, and a restart keeps the doubt.

use std::time::Duration;

use confide_client::{Client, ClientError, Event, GroupId, StateLocation};
use confide_tests::{HostileDs, Lost, Member, TestApp, spawn_app};

/// Alice reaches the DS through `link`, which can lose her commits or their
/// answers; Bob and Carol reach it directly. Alice creates a group and adds
/// them. She resends an unanswered commit for milliseconds, not seconds.
async fn alice_behind_a_lossy_link(
    app: &TestApp,
    state: &StateLocation,
) -> (HostileDs, GroupId, Member, Member, Member) {
    let link = HostileDs::in_front_of(app).await;
    let mut alice = link.client_at("alice", "phone", state).await;
    alice.set_commit_resend_pause(Duration::from_millis(1));
    let mut bob = app.client("bob", "phone").await;
    let mut carol = app.client("carol", "phone").await;
    let group = alice.group_with(&mut [&mut bob, &mut carol]).await;
    (link, group, alice, bob, carol)
}

/// Alice removes Carol while `link` loses `loss`; the removal's outcome is
/// in doubt. Returns the epoch it was made in.
async fn remove_carol_in_doubt(
    link: &HostileDs,
    alice: &mut Member,
    group: &[u8],
    loss: Lost,
) -> u64 {
    let epoch = alice.epoch(group).expect("alice is in the group");
    link.lose_commits(loss);
    let removal = alice.remove_users(group, &["carol"]).await;
    assert!(
        matches!(removal, Err(ClientError::CommitInDoubt)),
        "a commit without an answer is in doubt, not refused: {removal:?}"
    );
    epoch
}

fn users(member: &Member, group: &[u8]) -> Vec<String> {
    member
        .members(group)
        .expect("a member of the group")
        .iter()
        .map(|client| client.user().to_string())
        .collect()
}

fn undecryptable(member: &Member) -> Vec<&Event> {
    member
        .events()
        .iter()
        .filter(|event| matches!(event, Event::Undecryptable { .. }))
        .collect()
}

/// Bob, in Alice's epoch, sends; Alice decrypts it, and both show the same
/// safety code.
async fn alice_and_bob_agree(alice: &mut Member, bob: &mut Member, group: &[u8]) {
    bob.expect_epoch(group, alice.epoch(group).expect("alice's epoch"))
        .await;
    let before = alice.messages(group).len();
    bob.send(group, b"in the new epoch")
        .await
        .expect("bob sends");
    let received = alice.expect_messages(group, before + 1).await;
    assert_eq!(received[before].body, b"in the new epoch");
    assert!(undecryptable(alice).is_empty(), "{:#?}", alice.events());
    assert_eq!(
        alice.safety_code(group).expect("alice's safety code"),
        bob.safety_code(group).expect("bob's safety code")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_merged_from_the_log_at_the_next_sync() {
    let app = spawn_app().await;
    let (link, group, mut alice, mut bob, _carol) =
        alice_behind_a_lossy_link(&app, &StateLocation::Memory).await;
    let epoch = remove_carol_in_doubt(&link, &mut alice, &group, Lost::Answer).await;
    // The DS took it.
    bob.expect_epoch(&group, epoch + 1).await;

    link.stop_attacking();
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group).ok(), Some(epoch + 1));
    assert_eq!(users(&alice, &group), ["alice", "bob"]);
    alice_and_bob_agree(&mut alice, &mut bob, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_doubt_that_lost_its_epoch_is_dropped_for_the_winner() {
    let app = spawn_app().await;
    let (link, group, mut alice, mut bob, _carol) =
        alice_behind_a_lossy_link(&app, &StateLocation::Memory).await;
    remove_carol_in_doubt(&link, &mut alice, &group, Lost::Request).await;
    let update = bob.self_update(&group).await.expect("bob's update");

    link.stop_attacking();
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group).ok(), Some(update.epoch));
    assert_eq!(users(&alice, &group), ["alice", "bob", "carol"]);
    alice_and_bob_agree(&mut alice, &mut bob, &group).await;

    // Her removal was never made; made again, it goes through.
    alice
        .remove_users(&group, &["carol"])
        .await
        .expect("removing carol again");
    bob.expect_epoch(&group, update.epoch + 1).await;
    assert_eq!(users(&bob, &group), ["alice", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_doubt_that_never_arrived_is_sent_again_at_the_next_sync() {
    let app = spawn_app().await;
    let (link, group, mut alice, mut bob, _carol) =
        alice_behind_a_lossy_link(&app, &StateLocation::Memory).await;
    let epoch = remove_carol_in_doubt(&link, &mut alice, &group, Lost::Request).await;

    link.stop_attacking();
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group).ok(), Some(epoch + 1));
    bob.expect_epoch(&group, epoch + 1).await;
    assert_eq!(users(&bob, &group), ["alice", "bob"]);
    alice_and_bob_agree(&mut alice, &mut bob, &group).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_after_a_commit_in_doubt_is_sent_in_the_epoch_that_settles_it() {
    let app = spawn_app().await;
    let (link, group, mut alice, mut bob, _carol) =
        alice_behind_a_lossy_link(&app, &StateLocation::Memory).await;
    let epoch = remove_carol_in_doubt(&link, &mut alice, &group, Lost::Answer).await;

    link.stop_attacking();
    let seq = alice
        .send(&group, b"after the removal")
        .await
        .expect("alice sends");
    let log = app.group_log(bob.id(), &group).await;
    let sent = log.iter().find(|e| e.seq == seq).expect("alice's message");
    assert_eq!(sent.epoch, epoch + 1, "not readable by carol, removed");
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"after the removal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_doubt_is_settled_after_the_client_restarts() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("alice.db"));
    let (link, group, mut alice, mut bob, _carol) = alice_behind_a_lossy_link(&app, &state).await;
    let epoch = remove_carol_in_doubt(&link, &mut alice, &group, Lost::Answer).await;
    drop(alice);

    let mut alice = Member::under_attack(Client::open(app.api().await, &state).await?);
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group).ok(), Some(epoch + 1));
    assert_eq!(users(&alice, &group), ["alice", "bob"]);
    alice_and_bob_agree(&mut alice, &mut bob, &group).await;
    Ok(())
}
