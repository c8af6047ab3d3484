//! Replays: a commit, proposal, application message or Welcome sent again —
//! by its author retrying or by anybody replaying captured bytes — is never
//! appended or delivered twice, and a handshake for a past epoch never
//! reaches a member.

use confide_client::GroupId;
use confide_ds::domain::{EntryKind, GroupEntry};
use confide_proto::v1;
use confide_tests::rpc::{claim_key_package, expect_refused, group_stream};
use confide_tests::{Member, RawMember, TestApp, spawn_app};
use tonic::Code;
use tonic_types::StatusExt;

/// Alice and bob in a group (through the client library) with the raw
/// members `raws` added by alice in one commit and joined.
async fn group_with_raw_members<const N: usize>(
    app: &TestApp,
    raws: [&str; N],
) -> (GroupId, Member, Member, [RawMember; N]) {
    let (group, [mut alice, bob]) = app.conversation(["alice", "bob"]).await;
    let mut members = Vec::with_capacity(N);
    for user in raws {
        members.push(RawMember::register(app, user, "laptop").await);
    }
    alice.add_users(&group, &raws).await.expect("adding them");
    for member in &mut members {
        member.join().await;
    }
    let members = members
        .try_into()
        .unwrap_or_else(|_| unreachable!("N members were registered"));
    (group, alice, bob, members)
}

/// How many entries of the log carry exactly `message`.
fn copies(log: &[GroupEntry], message: &[u8]) -> usize {
    log.iter().filter(|e| e.message.as_ref() == message).count()
}

/// Asserts `status` is a wrong-epoch refusal naming `current`.
#[track_caller]
fn expect_wrong_epoch(status: &tonic::Status, current: u64, what: &str) {
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{what}: {status:?}"
    );
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("{what}: a wrong epoch carries an ErrorInfo: {status:?}"));
    assert_eq!(info.reason, confide_proto::REASON_WRONG_EPOCH, "{what}");
    assert_eq!(
        info.metadata
            .get(confide_proto::META_CURRENT_EPOCH)
            .map(String::as_str),
        Some(current.to_string().as_str()),
        "{what}: the current epoch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_commit_for_a_past_epoch_gets_its_original_result_and_is_logged_once() {
    let app = spawn_app().await;
    let (group, mut alice, mut bob, [mut rita]) = group_with_raw_members(&app, ["rita"]).await;
    let carol = RawMember::register(&app, "carol", "laptop").await;
    let carols = claim_key_package(rita.api(), "carol").await;
    let add = rita.craft_add(&carols);
    let accepted = rita
        .submit(add.request())
        .await
        .expect("rita's commit")
        .into_inner();
    assert_eq!(accepted.epoch, add.epoch + 1);
    // The group moves on past the epoch the commit started.
    alice.self_update(&group).await.expect("alice updating");
    let now = accepted.epoch + 1;
    bob.expect_epoch(&group, now).await;

    // The same commit again, by its author and by another member: the
    // original result, never a second entry, never a second Welcome.
    for (who, api) in [("rita", rita.api()), ("alice", alice.api())] {
        match api.groups().submit_commit(api.request(add.request())).await {
            Ok(replayed) => {
                let replayed = replayed.into_inner();
                assert_eq!(
                    (replayed.seq, replayed.epoch),
                    (accepted.seq, accepted.epoch),
                    "{who} replaying rita's commit got another result"
                );
            }
            Err(status) => expect_wrong_epoch(&status, now, &format!("{who} replaying")),
        }
    }
    let log = app.group_log(alice.id(), &group).await;
    assert_eq!(copies(&log, &add.commit), 1, "the commit is logged once");
    assert_eq!(
        app.commit_epochs(alice.id(), &group).await,
        (0..now).collect::<Vec<_>>(),
        "one commit per epoch"
    );
    let invitations = carol.welcomes().await;
    assert_eq!(invitations.len(), 1, "carol is invited once");
    assert_eq!(invitations[0].welcome.as_ref(), add.welcome.as_slice());

    // The members saw each commit once and agree on the group.
    alice
        .send(&group, b"after the replay")
        .await
        .expect("sending");
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        alice.epoch_authenticator(&group).expect("in the group"),
        bob.epoch_authenticator(&group).expect("in the group")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proposal_for_a_past_epoch_is_refused_and_a_replayed_one_is_not_appended_again() {
    let app = spawn_app().await;
    let (group, mut alice, mut bob, [mut rita]) = group_with_raw_members(&app, ["rita"]).await;
    let submitted = rita.propose_self_update();
    let kept = rita.propose_self_update();
    let first = rita
        .submit_proposal(&group, submitted.clone())
        .await
        .expect("rita's proposal")
        .into_inner()
        .seq;
    let epoch = rita_epoch(&app, &alice, &group).await;
    // Alice commits (the pending proposal with it): a new epoch.
    alice.self_update(&group).await.expect("alice committing");
    bob.expect_epoch(&group, epoch + 1).await;

    // A proposal of the past epoch that was never submitted is refused
    // with the current epoch.
    let status = rita
        .submit_proposal(&group, kept)
        .await
        .expect_err("a proposal for a past epoch must be refused");
    expect_wrong_epoch(&status, epoch + 1, "a proposal for a past epoch");
    assert!(!status.message().is_empty());
    // The accepted one again, by its author or another member: at most its
    // original seq, never a second entry.
    for (who, api) in [("rita", rita.api()), ("bob", bob.api())] {
        let replayed = api
            .groups()
            .submit_proposal(api.request(v1::SubmitProposalRequest {
                group_id: group.clone().into(),
                proposal: submitted.clone().into(),
            }))
            .await;
        match replayed {
            Ok(response) => assert_eq!(
                response.into_inner().seq,
                first,
                "{who} replaying got another entry"
            ),
            Err(status) => expect_wrong_epoch(&status, epoch + 1, &format!("{who} replaying")),
        }
    }
    let log = app.group_log(alice.id(), &group).await;
    assert_eq!(copies(&log, &submitted), 1, "the proposal is logged once");
    assert_eq!(
        log.last().map(|e| e.kind),
        Some(EntryKind::Commit),
        "nothing was appended after alice's commit"
    );
    alice.send(&group, b"still in step").await.expect("sending");
    bob.expect_messages(&group, 1).await;
}

/// The epoch of the group as its last commit left it.
async fn rita_epoch(app: &TestApp, reader: &Member, group: &[u8]) -> u64 {
    app.commit_epochs(reader.id(), group)
        .await
        .last()
        .map_or(0, |e| e + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_application_message_is_delivered_once_whoever_replays_it() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    let seq = alice.send(&group, b"once").await.expect("sending");
    let original = app
        .group_log(alice.id(), &group)
        .await
        .into_iter()
        .find(|e| e.seq == seq)
        .expect("alice's message in the log")
        .message;

    // Replayed by its sender under a new id, by another member, and after
    // the epoch moved on (still within the window).
    let replay = async |who: &str, api: &confide_client::Api, id: &[u8]| {
        let result = api
            .groups()
            .send_message(api.request(v1::SendMessageRequest {
                group_id: group.clone().into(),
                message_id: id.to_vec().into(),
                message: original.clone(),
            }))
            .await;
        match result {
            Ok(response) => assert_eq!(
                response.into_inner().seq,
                seq,
                "{who}'s replay was accepted as a new message"
            ),
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        Code::InvalidArgument | Code::FailedPrecondition
                    ),
                    "{who}'s replay: {status:?}"
                );
                assert!(!status.message().is_empty(), "{who}'s replay: no reason");
            }
        }
    };
    replay("alice", alice.api(), b"another id").await;
    replay("bob", bob.api(), b"bob's id").await;
    carol.self_update(&group).await.expect("updating");
    replay("bob", bob.api(), b"after the update").await;

    alice.send(&group, b"twice?").await.expect("sending");
    for member in [&mut bob, &mut carol] {
        let bodies: Vec<Vec<u8>> = member
            .expect_messages(&group, 2)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(
            bodies,
            [b"once".to_vec(), b"twice?".to_vec()],
            "{}",
            member.id()
        );
    }
    let log = app.group_log(alice.id(), &group).await;
    assert_eq!(copies(&log, &original), 1, "the message is logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_of_a_commit_that_lost_the_race_reaches_nobody() {
    let app = spawn_app().await;
    let (group, mut alice, mut bob, [mut rita, mut sam]) =
        group_with_raw_members(&app, ["rita", "sam"]).await;
    let carol = RawMember::register(&app, "carol", "laptop").await;
    let dave = RawMember::register(&app, "dave", "laptop").await;
    // Rita adds carol and sam adds dave, both at the same epoch.
    let ritas = rita.craft_add(&claim_key_package(rita.api(), "carol").await);
    let sams = sam.craft_add(&claim_key_package(sam.api(), "dave").await);
    assert_eq!(ritas.epoch, sams.epoch);
    let won = rita
        .submit(ritas.request())
        .await
        .expect("the first commit for the epoch")
        .into_inner();
    for attempt in ["sam's commit", "sam's commit again"] {
        let status = sam
            .submit(sams.request())
            .await
            .expect_err("the loser's commit must be refused");
        expect_wrong_epoch(&status, won.epoch, attempt);
    }

    assert!(
        dave.welcomes().await.is_empty(),
        "the loser's Welcome reached dave"
    );
    let invitations = carol.welcomes().await;
    assert_eq!(invitations.len(), 1, "carol is invited once");
    assert_eq!(invitations[0].welcome.as_ref(), ritas.welcome.as_slice());
    let log = app.group_log(alice.id(), &group).await;
    assert_eq!(
        copies(&log, &sams.commit),
        0,
        "the loser's commit is logged"
    );
    assert_eq!(
        app.commit_epochs(alice.id(), &group).await,
        (0..won.epoch).collect::<Vec<_>>(),
        "one commit per epoch"
    );
    // Dave is no member: the group is closed to him.
    expect_refused(
        dave.api()
            .delivery()
            .fetch(dave.api().request(v1::FetchRequest {
                stream: group_stream(&group),
                after_seq: 0,
                limit: 0,
            }))
            .await,
        Code::PermissionDenied,
        "dave reading the group",
    );
    alice.expect_epoch(&group, won.epoch).await;
    bob.expect_epoch(&group, won.epoch).await;
}
