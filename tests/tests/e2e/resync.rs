//! Recovery by external commit (RFC 9420 §12.4.3.2): a member that lost its
//! state file, restored from its backup (its user's identity key and its
//! own signature key), or that a commit it
//! could not process left behind, rejoins the group removing its own old
//! leaf, and reads what is sent afterwards; the other members see it
//! re-joined. Nobody else may commit externally, and two rejoins racing
//! for one epoch are settled like any two commits.

use confide_client::{Backup, Client, ClientError, ClientId, Event, GroupId, StateLocation};
use confide_proto::v1;
use confide_tests::{HostileDs, Member, TestApp, spawn_app};

/// The members `member`'s view of the group reported as re-joined.
fn rejoined(member: &Member, group: &[u8]) -> Vec<String> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::MemberRejoined {
                group: g, member, ..
            } if g == group => Some(member.to_string()),
            _ => None,
        })
        .collect()
}

/// How often `member` decided by itself to rejoin the group.
fn resyncs(member: &Member, group: &[u8]) -> usize {
    member
        .events()
        .iter()
        .filter(|event| matches!(event, Event::Resyncing { group: g, .. } if g == group))
        .count()
}

/// The clients in the group as `member` sees them, as text.
fn names(member: &Member, group: &[u8]) -> Vec<String> {
    member
        .members(group)
        .expect("a member of the group")
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// Alice talks to the DS directly, Bob through `hostile`; Alice creates a
/// group and adds Bob.
async fn alice_and_bob_behind(app: &TestApp) -> (HostileDs, GroupId, Member, Member) {
    let hostile = HostileDs::in_front_of(app).await;
    let mut alice = app.client("alice", "phone").await;
    let mut bob = hostile.client("bob", "phone").await;
    let group = alice.create_group().await.expect("creating the group");
    alice.add_users(&group, &["bob"]).await.expect("adding bob");
    bob.expect_joined(&group).await;
    (hostile, group, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_state_file_is_deleted_rejoins_from_its_backup_and_reads_what_follows()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let state = dir.path().join("bob.sqlite");
    let location = StateLocation::File(state.clone());
    let mut alice = app.client("alice", "phone").await;
    let mut bob = Member::new(app.register("bob", "phone", &location).await?);
    let group = alice.create_group().await?;
    alice.add_users(&group, &["bob"]).await?;
    bob.expect_joined(&group).await;
    alice.send(&group, b"before").await?;
    bob.expect_messages(&group, 1).await;
    let backup = bob.backup()?.to_secret_bytes()?;
    let old_fingerprint = bob.fingerprint();
    drop(bob);
    confide_client::store::remove(&state);

    let (restored, groups) = Client::restore(
        app.api().await,
        ClientId::new("bob", "phone")?,
        &location,
        "",
        Backup::from_secret_bytes(&backup)?,
    )
    .await?;
    let mut bob = Member::new(restored);
    assert_eq!(
        groups,
        std::slice::from_ref(&group),
        "bob rejoins the group he was in"
    );
    assert_eq!(bob.fingerprint(), old_fingerprint, "with its backed-up key");
    // Alice has seen the rejoin, so she writes in an epoch bob is in.
    alice.catch_up().await;
    alice.send(&group, b"after").await?;

    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"after");
    alice
        .wait_until("bob's old leaf removed", |m| {
            names(m, &group) == ["alice/phone", "bob/phone"]
        })
        .await;
    assert_eq!(rejoined(&alice, &group), ["bob/phone"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_wedged_by_a_commit_it_cannot_process_resyncs_by_itself_once() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    // Every entry bob fetches is corrupted: he cannot process alice's
    // commit and is stuck in the old epoch.
    hostile.rewrite_entries(|_, entries| {
        entries
            .into_iter()
            .map(|mut entry| {
                let mut message = entry.message.to_vec();
                *message.last_mut().expect("a non-empty message") ^= 0x01;
                entry.message = message.into();
                entry
            })
            .collect()
    });
    alice.self_update(&group).await.expect("updating");

    bob.wait_until("resyncing", |m| {
        m.events()
            .iter()
            .any(|e| matches!(e, Event::Resynced { group: g, .. } if g == &group))
    })
    .await;
    hostile.stop_attacking();
    alice.catch_up().await;
    alice.send(&group, b"after").await.expect("sending");

    bob.wait_until("the message after the resync", |m| {
        m.bodies(&group) == ["after"]
    })
    .await;
    assert_eq!(resyncs(&bob, &group), 1, "one resync for the epoch");
    assert_eq!(bob.epoch(&group).ok(), alice.epoch(&group).ok());
    alice.catch_up().await;
    assert_eq!(rejoined(&alice, &group), ["bob/phone"]);
    assert_eq!(names(&alice, &group), ["alice/phone", "bob/phone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_commit_by_a_stranger_is_refused() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut mallory = app.client("mallory", "phone").await;
    // Mallory got hold of the GroupInfo (from a member, or the operator).
    let info: v1::GetGroupInfoResponse = bob.group_info(&group).await.expect("bob's GroupInfo");
    let epoch = alice.epoch(&group).expect("alice is in the group");

    let refused = mallory.rejoin_from(&group, Some(info)).await;

    match refused {
        Err(ClientError::Rpc(status)) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}")
        }
        other => panic!("a stranger's external commit was not refused: {other:?}"),
    }
    alice.catch_up().await;
    assert_eq!(alice.epoch(&group).ok(), Some(epoch));
    assert_eq!(names(&alice, &group), ["alice/phone", "bob/phone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_resyncs_racing_for_one_epoch_end_with_one_accepted_and_the_other_retried() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    // Both build on the same epoch's GroupInfo; bob's reaches the DS first.
    let stale = carol.group_info(&group).await.expect("the GroupInfo");

    let first = bob.rejoin(&group).await.expect("bob rejoins");
    let second = carol
        .rejoin_from(&group, Some(stale))
        .await
        .expect("carol rejoins");

    assert_eq!(first.retries, 0);
    assert_eq!(
        second.retries, 1,
        "carol lost the race once and built again"
    );
    assert_eq!(second.epoch, first.epoch + 1);
    alice.catch_up().await;
    alice.send(&group, b"after").await.expect("sending");
    for member in [&mut bob, &mut carol] {
        member
            .wait_until("the message after the resyncs", |m| {
                m.bodies(&group) == ["after"]
            })
            .await;
    }
    alice.catch_up().await;
    assert_eq!(rejoined(&alice, &group), ["bob/phone", "carol/phone"]);
    assert_eq!(
        names(&alice, &group),
        ["alice/phone", "bob/phone", "carol/phone"]
    );
}
