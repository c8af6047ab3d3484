//! A hostile delivery service: whatever it does to the group log on its way
//! to a member, the member's client notices. Tampering fails authentication,
//! a dropped or reordered entry is refilled from the log in order, a replay
//! is never shown twice, entries withheld for good are reported as a gap,
//! and a member forked onto another history shows another safety code.

use std::collections::VecDeque;

use confide_client::{Event, GroupId};
use confide_proto::v1;
use confide_tests::{HostileDs, Member, TestApp, Via, spawn_app};

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

/// The entry with one bit of its MLS message flipped, in its last byte (the
/// AEAD tag of a PrivateMessage, the membership tag of a PublicMessage).
fn tampered(mut entry: v1::GroupEntry) -> v1::GroupEntry {
    let mut message = entry.message.to_vec();
    *message.last_mut().expect("a non-empty message") ^= 0x01;
    entry.message = message.into();
    entry
}

/// The seqs of the entries `member` could not process.
fn refused(member: &Member) -> Vec<u64> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::Undecryptable { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

/// The gaps `member` reported, as (last seq before, next seq after).
fn gaps(member: &Member) -> Vec<(u64, u64)> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::Gap { after, next, .. } => Some((*after, *next)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_message_fails_authentication_and_is_never_shown() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    let one = alice.send(&group, b"one").await.expect("sending");
    hostile.rewrite_entries(move |_, entries| {
        entries
            .into_iter()
            .map(|e| if e.seq == one { tampered(e) } else { e })
            .collect()
    });
    alice.send(&group, b"two").await.expect("sending");

    bob.wait_until("the second message", |m| m.bodies(&group) == ["two"])
        .await;
    assert_eq!(refused(&bob), [one], "the tampered entry is reported");
    assert!(gaps(&bob).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_commit_is_refused_and_the_member_rejoins_rather_than_apply_it() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    let members = bob.members(&group).expect("bob is in the group");
    hostile.rewrite_entries(|_, entries| entries.into_iter().map(tampered).collect());
    let update = alice.self_update(&group).await.expect("updating");

    bob.wait_until("the commit", |m| !refused(m).is_empty())
        .await;
    assert_eq!(refused(&bob), [update.seq]);
    // Stuck in the old epoch, bob re-syncs by external commit from the
    // GroupInfo (`resync.rs`): the tampered bytes are never applied.
    assert!(
        bob.events()
            .iter()
            .any(|e| matches!(e, Event::Resynced { epoch, .. } if *epoch == update.epoch + 1)),
        "{:#?}",
        bob.events()
    );
    assert_eq!(bob.members(&group).expect("still in the group"), members);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_dropped_from_the_live_stream_is_refilled_from_the_log() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    let one = alice.send(&group, b"one").await.expect("sending");
    hostile.rewrite_entries(move |via, entries| {
        entries
            .into_iter()
            .filter(|e| !(via == Via::Live && e.seq == one))
            .collect()
    });
    for body in ["two", "three"] {
        alice.send(&group, body.as_bytes()).await.expect("sending");
    }

    let received = bob.expect_live_messages(&group, 3).await;
    assert_eq!(bob.bodies(&group), ["one", "two", "three"]);
    assert!(received.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(gaps(&bob).is_empty() && refused(&bob).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_sent_out_of_order_are_shown_in_log_order() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    // Live: each entry is held back until the next one has gone out.
    // Fetched pages: reversed.
    let mut held: VecDeque<v1::GroupEntry> = VecDeque::new();
    hostile.rewrite_entries(move |via, mut entries| match via {
        Via::Live => {
            held.extend(entries);
            if held.len() > 1 {
                let first = held.pop_front().expect("two held");
                let mut out: Vec<_> = held.drain(..).collect();
                out.push(first);
                out
            } else {
                Vec::new()
            }
        }
        Via::Fetch => {
            entries.reverse();
            entries
        }
    });
    for body in ["one", "two", "three", "four"] {
        alice.send(&group, body.as_bytes()).await.expect("sending");
    }

    bob.expect_live_messages(&group, 4).await;
    assert_eq!(bob.bodies(&group), ["one", "two", "three", "four"]);
    assert!(gaps(&bob).is_empty() && refused(&bob).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_message_is_never_shown_twice() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    let one = alice.send(&group, b"one").await.expect("sending");
    let two = alice.send(&group, b"two").await.expect("sending");
    // Every entry is sent twice, and "one" comes again in place of "two",
    // under two's number.
    let mut first = None;
    hostile.rewrite_entries(move |_, entries| {
        let mut out = Vec::new();
        for entry in entries {
            if entry.seq == one {
                first = Some(entry.clone());
            }
            let entry = match (&first, entry.seq == two) {
                (Some(first), true) => v1::GroupEntry {
                    seq: two,
                    ..first.clone()
                },
                _ => entry,
            };
            out.push(entry.clone());
            out.push(entry);
        }
        out
    });
    let three = alice.send(&group, b"three").await.expect("sending");

    bob.wait_until("the third message", |m| m.bodies(&group).len() >= 2)
        .await;
    bob.catch_up().await;
    assert_eq!(bob.bodies(&group), ["one", "three"]);
    assert_eq!(
        refused(&bob),
        [two],
        "the replay under a new number is refused"
    );
    assert!(bob.messages(&group).iter().any(|m| m.seq == three));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_withheld_from_stream_and_log_are_reported_as_a_gap() {
    let app = spawn_app().await;
    let (hostile, group, mut alice, mut bob) = alice_and_bob_behind(&app).await;
    let one = alice.send(&group, b"one").await.expect("sending");
    let two = alice.send(&group, b"two").await.expect("sending");
    hostile
        .rewrite_entries(move |_, entries| entries.into_iter().filter(|e| e.seq != two).collect());
    let three = alice.send(&group, b"three").await.expect("sending");

    bob.wait_until("the third message", |m| m.bodies(&group).len() >= 2)
        .await;
    assert_eq!(bob.bodies(&group), ["one", "three"]);
    assert_eq!(gaps(&bob), [(one, three)]);
    assert_eq!(two + 1, three);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_forked_onto_another_history_shows_another_safety_code() {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let mut alice = app.client("alice", "phone").await;
    let mut bob = app.client("bob", "phone").await;
    let mut carol = hostile.client("carol", "phone").await;
    let group = alice.group_with(&mut [&mut bob, &mut carol]).await;
    let code = alice.safety_code(&group).expect("a member");
    assert_eq!(bob.safety_code(&group).expect("a member"), code);
    assert_eq!(carol.safety_code(&group).expect("a member"), code);

    // The DS tells Carol her commit was accepted, keeps it from everyone
    // else, and shows her Alice's commit for the same epoch as her own.
    let log = app.group_log(alice.id(), &group).await;
    let next = log.last().expect("the group has a log").seq + 1;
    let epoch = alice.epoch(&group).expect("a member");
    hostile.answer_commits(move |_| {
        Some(v1::SubmitCommitResponse {
            seq: next,
            epoch: epoch + 1,
        })
    });
    carol.self_update(&group).await.expect("carol's commit");
    let update = alice.self_update(&group).await.expect("alice's commit");
    assert_eq!(update.seq, next);
    bob.expect_epoch(&group, epoch + 1).await;
    carol.catch_up().await;

    assert_eq!(carol.epoch(&group).expect("a member"), epoch + 1);
    let code = alice.safety_code(&group).expect("a member");
    assert_eq!(bob.safety_code(&group).expect("a member"), code);
    assert_ne!(carol.safety_code(&group).expect("a member"), code);
    assert_ne!(
        carol.epoch_authenticator(&group).expect("a member"),
        alice.epoch_authenticator(&group).expect("a member")
    );

    // From then on Carol reads nothing of the real group.
    let hello = alice
        .send(&group, b"after the fork")
        .await
        .expect("sending");
    bob.expect_messages(&group, 1).await;
    carol
        .wait_until("alice's message", |m| refused(m).contains(&hello))
        .await;
    assert!(carol.bodies(&group).is_empty());
}
