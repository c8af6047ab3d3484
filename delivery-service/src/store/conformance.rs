//! The behaviour every [`Store`] must show, as one `pub async fn` per check.
//! Each store runs every check on a fresh, empty instance with
//! [`conformance_tests!`], which generates one `#[tokio::test]` per check:
//!
//! ```text
//! #[cfg(test)]
//! mod tests {
//!     crate::store::conformance::conformance_tests!(super::MemoryStore::new());
//! }
//! ```
//!
//! The checks use made-up bytes where MLS messages would go: a store never
//! parses MLS.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{
    AppendOutcome, ClaimedKeyPackage, ClientRecord, CommitAccepted, CommitOutcome, CommitRecord,
    DedupKey, KeyPackageCount, KeyPackageRecord, Membership, NewGroup, NewMessage, Registration,
    Store, StoreError, StoreResult, StoredGroupState,
};
use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId, InboxEntry, InboxItem, StreamRef};

/// Generates one `#[tokio::test]` per conformance check. The argument is an
/// expression (it may use `.await`) that yields a fresh, empty store; it is
/// evaluated once per test.
#[cfg(test)]
macro_rules! conformance_tests {
    ($store:expr) => {
        $crate::store::conformance::conformance_tests!(@checks $store;
            registration_binds_key,
            challenge_is_single_use,
            sessions_expire,
            a_revoked_session_is_gone_and_others_remain,
            a_removed_client_loses_sessions_and_key_packages_and_stays_removed,
            key_package_claim_hands_each_out_once,
            concurrent_claims_never_hand_out_twice,
            the_low_pool_notice_is_taken_once_per_publish,
            create_group_rejects_taken_id,
            commit_is_accepted_once_per_epoch,
            concurrent_commits_for_one_epoch_accept_one,
            duplicate_commit_returns_original,
            append_assigns_gap_free_sequence,
            duplicate_message_returns_original_seq,
            replayed_message_bytes_return_the_original_entry,
            a_non_member_learns_nothing_from_duplicates,
            state_writes_from_an_old_version_are_refused,
            non_member_cannot_append,
            epoch_window_enforced,
            removed_member_sees_nothing_after_removal,
            joiner_sees_nothing_before_join,
            welcome_lands_in_joiner_inbox,
            inbox_is_per_client_and_gap_free,
            memberships_cover_current_and_past_groups,
            acks_are_monotonic,
            ack_beyond_the_end_is_refused,
            read_group_pages_in_order,
        );
    };
    (@checks $store:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let store: ::std::sync::Arc<dyn $crate::store::Store> =
                    ::std::sync::Arc::new($store);
                $crate::store::conformance::$check(store).await;
            }
        )*
    };
}
#[cfg(test)]
pub(crate) use conformance_tests;

// --- clients and sessions ---

/// A client is bound to the first key it registers with.
pub async fn registration_binds_key(store: Arc<dyn Store>) {
    let phone = client("alice", "phone");
    let record = ClientRecord {
        id: phone.clone(),
        signature_key: b"key one".to_vec(),
    };
    assert_eq!(
        ok(store.register_client(&record).await),
        Registration::Created
    );
    assert_eq!(
        ok(store.register_client(&record).await),
        Registration::AlreadyRegistered
    );
    let other_key = ClientRecord {
        signature_key: b"key two".to_vec(),
        ..record.clone()
    };
    assert_eq!(
        ok(store.register_client(&other_key).await),
        Registration::KeyMismatch
    );
    assert_eq!(ok(store.client(&phone).await), Some(record));
    assert_eq!(ok(store.client(&client("alice", "laptop")).await), None);

    let laptop = register(&*store, "alice", "laptop").await;
    register(&*store, "bob", "phone").await;
    let mut devices = ok(store.devices("alice").await);
    devices.sort();
    assert_eq!(devices, vec![laptop, phone]);
    assert_eq!(ok(store.devices("carol").await), Vec::<ClientId>::new());
}

/// A challenge works once, only for its client and only before it expires.
pub async fn challenge_is_single_use(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let t0 = SystemTime::now();
    let later = t0 + Duration::from_secs(60);

    ok(store.put_challenge(&alice, b"first", later).await);
    assert!(ok(store.take_challenge(&alice, b"first", t0).await));
    assert!(!ok(store.take_challenge(&alice, b"first", t0).await));
    assert!(!ok(store.take_challenge(&alice, b"never issued", t0).await));

    ok(store.put_challenge(&alice, b"second", later).await);
    assert!(!ok(store.take_challenge(&bob, b"second", t0).await));
    assert!(ok(store.take_challenge(&alice, b"second", t0).await));

    ok(store.put_challenge(&alice, b"third", later).await);
    let after_expiry = later + Duration::from_secs(1);
    assert!(!ok(store
        .take_challenge(&alice, b"third", after_expiry)
        .await));
    assert!(!ok(store.take_challenge(&alice, b"third", t0).await));
}

/// A session names its client until it expires.
pub async fn sessions_expire(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let t0 = SystemTime::now();
    let expires_at = t0 + Duration::from_secs(60);
    let token = dedup_key("alice's token");

    ok(store.put_session(&token, &alice, expires_at).await);
    assert_eq!(
        session_client(&*store, &token, t0).await,
        Some(alice.clone())
    );
    // Its expiry is known (to the stored precision), so a stream can end then.
    let stored = ok(store.session(&token, t0).await).expect("a live session");
    let skew = match stored.expires_at.duration_since(expires_at) {
        Ok(later) => later,
        Err(earlier) => earlier.duration(),
    };
    assert!(
        skew < Duration::from_millis(1),
        "expiry stored as {skew:?} off"
    );
    let after_expiry = expires_at + Duration::from_secs(1);
    assert_eq!(session_client(&*store, &token, after_expiry).await, None);
    assert_eq!(
        session_client(&*store, &dedup_key("unknown token"), t0).await,
        None
    );

    // Purging removes what expired and keeps what is still valid.
    let fresh = dedup_key("alice's later token");
    ok(store
        .put_session(&fresh, &alice, after_expiry + Duration::from_secs(60))
        .await);
    ok(store
        .put_challenge(&alice, b"old challenge", expires_at)
        .await);
    assert_eq!(ok(store.purge_expired(after_expiry).await), 2);
    assert_eq!(session_client(&*store, &token, t0).await, None);
    assert_eq!(
        session_client(&*store, &fresh, after_expiry).await,
        Some(alice)
    );
    assert_eq!(ok(store.purge_expired(after_expiry).await), 0);
}

/// Revoking ends exactly that session.
pub async fn a_revoked_session_is_gone_and_others_remain(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let now = SystemTime::now();
    let later = now + Duration::from_secs(60);
    let (revoked, kept) = (dedup_key("revoked"), dedup_key("kept"));
    ok(store.put_session(&revoked, &alice, later).await);
    ok(store.put_session(&kept, &alice, later).await);
    ok(store.revoke_session(&revoked).await);
    assert_eq!(session_client(&*store, &revoked, now).await, None);
    assert_eq!(session_client(&*store, &kept, now).await, Some(alice));
    // Revoking an unknown session is harmless.
    ok(store.revoke_session(&dedup_key("never issued")).await);
}

/// A removed client is a tombstone: no sessions, challenges or key
/// packages, not listed among its user's devices, never registered again.
pub async fn a_removed_client_loses_sessions_and_key_packages_and_stays_removed(
    store: Arc<dyn Store>,
) {
    let laptop = register(&*store, "alice", "laptop").await;
    let phone = register(&*store, "alice", "phone").await;
    let now = SystemTime::now();
    let later = now + Duration::from_secs(60);
    ok(store
        .put_session(&dedup_key("laptop"), &laptop, later)
        .await);
    ok(store.put_session(&dedup_key("phone"), &phone, later).await);
    ok(store.put_challenge(&laptop, b"pending", later).await);
    ok(store
        .publish_key_packages(
            &laptop,
            key_packages("laptop", 0..2),
            Some(key_package("laptop lr", 0)),
        )
        .await);

    assert!(ok(store.remove_client(&laptop).await), "newly removed");
    assert!(!ok(store.remove_client(&laptop).await), "removed before");
    assert!(matches!(
        store.remove_client(&client("alice", "tablet")).await,
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(
        session_client(&*store, &dedup_key("laptop"), now).await,
        None
    );
    assert_eq!(
        session_client(&*store, &dedup_key("phone"), now).await,
        Some(phone.clone())
    );
    assert!(!ok(store.take_challenge(&laptop, b"pending", now).await));
    assert_eq!(ok(store.claim_key_package(&laptop).await), None);
    assert_eq!(ok(store.client(&laptop).await), None);
    assert_eq!(ok(store.devices("alice").await), vec![phone]);
    let again = ClientRecord {
        id: laptop.clone(),
        signature_key: format!("signature key of {laptop}").into_bytes(),
    };
    assert_eq!(
        ok(store.register_client(&again).await),
        Registration::Removed
    );
}

// --- key packages ---

/// The right to tell a client its pool is low is taken once, by one of
/// concurrent takers, and every publish gives it back.
pub async fn the_low_pool_notice_is_taken_once_per_publish(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    for batch in 0..2 {
        ok(store
            .publish_key_packages(&alice, key_packages("alice", batch..batch + 1), None)
            .await);
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                let alice = alice.clone();
                tokio::spawn(async move { ok(store.take_low_pool_notice(&alice).await) })
            })
            .collect();
        let mut taken = 0;
        for taker in takers {
            taken += usize::from(taker.await.expect("a taker task"));
        }
        assert_eq!(taken, 1, "after publish {batch}");
        assert!(!ok(store.take_low_pool_notice(&alice).await));
    }
    // Publishing only a last-resort key package counts too, for its client only.
    ok(store
        .publish_key_packages(&bob, Vec::new(), Some(key_package("bob lr", 0)))
        .await);
    assert!(ok(store.take_low_pool_notice(&bob).await));
    assert!(!ok(store.take_low_pool_notice(&alice).await));
}

/// Each key package is handed out once; then the last-resort one, repeatedly.
pub async fn key_package_claim_hands_each_out_once(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    assert_eq!(ok(store.claim_key_package(&alice).await), None);
    assert_eq!(
        ok(store.count_key_packages(&alice).await),
        KeyPackageCount::default()
    );

    let published = ok(store
        .publish_key_packages(
            &alice,
            key_packages("alice", 0..3),
            Some(key_package("alice lr", 0)),
        )
        .await);
    assert_eq!(published, 3);
    // Package 2 again is ignored, package 3 is new.
    let published = ok(store
        .publish_key_packages(&alice, key_packages("alice", 2..4), None)
        .await);
    assert_eq!(published, 4);
    assert_eq!(
        ok(store.count_key_packages(&alice).await),
        KeyPackageCount {
            available: 4,
            has_last_resort: true
        }
    );

    let mut handed_out = BTreeSet::new();
    for remaining in (0..4).rev() {
        let claimed = claim(&*store, &alice).await;
        assert_eq!(claimed.client, alice);
        assert!(!claimed.last_resort, "the pool is not empty yet");
        assert_eq!(claimed.remaining, remaining);
        assert!(handed_out.insert(claimed.data), "a key package came twice");
    }
    let expected: BTreeSet<Bytes> = key_packages("alice", 0..4)
        .into_iter()
        .map(|kp| kp.data)
        .collect();
    assert_eq!(handed_out, expected);

    for _ in 0..2 {
        let claimed = claim(&*store, &alice).await;
        assert!(claimed.last_resort);
        assert_eq!(claimed.data, key_package("alice lr", 0).data);
        assert_eq!(claimed.remaining, 0);
    }
    assert_eq!(
        ok(store.count_key_packages(&alice).await),
        KeyPackageCount {
            available: 0,
            has_last_resort: true
        }
    );

    let published = ok(store
        .publish_key_packages(&alice, Vec::new(), Some(key_package("alice lr", 1)))
        .await);
    assert_eq!(published, 0);
    assert_eq!(
        claim(&*store, &alice).await.data,
        key_package("alice lr", 1).data
    );

    let bob = register(&*store, "bob", "phone").await;
    assert_eq!(ok(store.claim_key_package(&bob).await), None);
}

/// Twenty concurrent claims on ten key packages hand out each exactly once
/// and the last-resort one to the other ten.
pub async fn concurrent_claims_never_hand_out_twice(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    ok(store
        .publish_key_packages(
            &alice,
            key_packages("alice", 0..10),
            Some(key_package("alice lr", 0)),
        )
        .await);

    let claims = (0..20).map(|_| {
        let (store, alice) = (store.clone(), alice.clone());
        tokio::spawn(async move { store.claim_key_package(&alice).await })
    });
    let mut one_time = Vec::new();
    let mut last_resort = 0;
    for claim in futures::future::join_all(claims).await {
        let claimed = ok(claim.expect("claim task panicked")).expect("nothing to claim");
        if claimed.last_resort {
            assert_eq!(claimed.data, key_package("alice lr", 0).data);
            last_resort += 1;
        } else {
            one_time.push(claimed.data);
        }
    }
    let distinct: BTreeSet<Bytes> = one_time.iter().cloned().collect();
    assert_eq!(
        one_time.len(),
        10,
        "every one-time key package is handed out"
    );
    assert_eq!(distinct.len(), 10, "no key package is handed out twice");
    assert_eq!(last_resort, 10);
    assert_eq!(ok(store.count_key_packages(&alice).await).available, 0);
}

// --- groups ---

/// A group id is taken once; its creator is its only member from the start.
pub async fn create_group_rejects_taken_id(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    let again = store.create_group(new_group("g", &bob)).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "expected AlreadyExists, got {again:?}"
    );
    assert_eq!(
        ok(store.group_state(&group).await),
        Some(StoredGroupState {
            epoch: 0,
            state: state_at(0),
            version: 0,
        })
    );
    assert_eq!(
        ok(store.group_info(&group).await),
        Some((0, group_info_at(0)))
    );
    assert_eq!(
        ok(store.membership(&alice, &group).await),
        Some(Membership {
            group_id: group.clone(),
            joined_seq: 0,
            left_seq: None,
            acked_seq: 0,
        })
    );
    assert_eq!(ok(store.membership(&bob, &group).await), None);
    assert_eq!(ok(store.group_state(&group_id("other")).await), None);
    assert_eq!(ok(store.group_info(&group_id("other")).await), None);
}

/// Only the first commit for an epoch is accepted; the others learn the
/// current epoch.
pub async fn commit_is_accepted_once_per_epoch(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    let accepted = accept(&*store, commit(&group, 0, "first")).await;
    assert_eq!(
        accepted.entry,
        GroupEntry {
            group_id: group.clone(),
            seq: 1,
            epoch: 0,
            kind: EntryKind::Commit,
            message: Bytes::from_static(b"commit first"),
        }
    );
    assert!(accepted.welcomes.is_empty());
    assert_eq!(
        ok(store.group_state(&group).await),
        Some(StoredGroupState {
            epoch: 1,
            state: b"state after first".to_vec(),
            version: 1,
        })
    );
    assert_eq!(
        ok(store.group_info(&group).await),
        Some((1, Bytes::from_static(b"group info after first")))
    );
    assert_eq!(ok(store.group_state_version(&group).await), Some(1));
    assert_eq!(
        ok(store.group_state_version(&group_id("missing")).await),
        None
    );

    assert_wrong_epoch(store.accept_commit(commit(&group, 0, "rival")).await, 1);
    assert_wrong_epoch(store.accept_commit(commit(&group, 2, "ahead")).await, 1);
    assert_eq!(
        ok(store.find_entry(&group, &dedup_key("rival")).await),
        None
    );

    let second = accept(&*store, commit(&group, 1, "second")).await;
    assert_eq!((second.entry.seq, second.entry.epoch), (2, 1));
    assert_eq!(seqs(&read_all(&*store, &alice, &group).await), vec![1, 2]);

    let missing = store
        .accept_commit(commit(&group_id("missing"), 0, "x"))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "expected NotFound, got {missing:?}"
    );
}

/// Of several commits racing for one epoch exactly one wins.
pub async fn concurrent_commits_for_one_epoch_accept_one(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    let commits = (0..8).map(|i| {
        let store = store.clone();
        let record = commit(&group, 0, &format!("racer {i}"));
        tokio::spawn(async move { store.accept_commit(record).await })
    });
    let mut accepted = 0;
    for outcome in futures::future::join_all(commits).await {
        match outcome.expect("commit task panicked") {
            Ok(CommitOutcome::Accepted(_)) => accepted += 1,
            Err(StoreError::WrongEpoch { current: 1 }) => {}
            other => panic!("expected Accepted or WrongEpoch {{ current: 1 }}, got {other:?}"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(seqs(&read_all(&*store, &alice, &group).await), vec![1]);
    assert_eq!(
        ok(store.group_state(&group).await).map(|s| s.epoch),
        Some(1)
    );
}

/// Resubmitting an accepted commit returns its original entry, even after
/// the group has moved on, and changes nothing.
pub async fn duplicate_commit_returns_original(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    let add_bob = CommitRecord {
        added: vec![bob.clone()],
        welcome: Some(Bytes::from_static(b"welcome bob")),
        ..commit(&group, 0, "add bob")
    };
    let original = accept(&*store, add_bob.clone()).await.entry;
    assert_duplicate_commit(store.accept_commit(add_bob.clone()).await, &original);

    accept(&*store, commit(&group, 1, "next")).await;
    assert_duplicate_commit(store.accept_commit(add_bob.clone()).await, &original);

    assert_eq!(
        ok(store.find_entry(&group, &add_bob.dedup_key).await),
        Some(original)
    );
    assert_eq!(seqs(&read_all(&*store, &alice, &group).await), vec![1, 2]);
    assert_eq!(ok(store.read_inbox(&bob, 0, 10).await).len(), 1);
    assert_eq!(
        ok(store.group_state(&group).await).map(|s| s.epoch),
        Some(2)
    );
}

/// Concurrent sends get consecutive sequence numbers with no gaps, and every
/// member reads them in that order.
pub async fn append_assigns_gap_free_sequence(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;

    let sends = (0..20).map(|i| {
        let store = store.clone();
        let sender = if i % 2 == 0 { &alice } else { &bob };
        let message = application(&group, sender, 1, &format!("message {i}"));
        tokio::spawn(async move { store.append(message).await })
    });
    let mut sent = Vec::new();
    for outcome in futures::future::join_all(sends).await {
        match ok(outcome.expect("append task panicked")) {
            AppendOutcome::Appended(entry) => sent.push(entry),
            duplicate => panic!("distinct messages must not be duplicates: {duplicate:?}"),
        }
    }
    sent.sort_by_key(|entry| entry.seq);
    assert_eq!(seqs(&sent), (2..=21).collect::<Vec<_>>());

    let seen_by_alice = read_all(&*store, &alice, &group).await;
    assert_eq!(seqs(&seen_by_alice), (1..=21).collect::<Vec<_>>());
    assert_eq!(seen_by_alice[1..], sent[..]);
    assert_eq!(read_all(&*store, &bob, &group).await, sent);
}

/// A retried send returns the original entry and takes no new sequence
/// number, whatever happened in between.
pub async fn duplicate_message_returns_original_seq(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    let hello = application(&group, &alice, 0, "hello");
    let original = appended(store.append(hello.clone()).await);
    assert_eq!(original.seq, 1);
    assert_eq!(
        ok(store.append(hello.clone()).await),
        AppendOutcome::Duplicate(original.clone())
    );
    let next = appended(store.append(application(&group, &alice, 0, "next")).await);
    assert_eq!(next.seq, 2);

    // Two epochs later the retry is outside the window, and still a duplicate.
    accept(&*store, commit(&group, 0, "one")).await;
    accept(&*store, commit(&group, 1, "two")).await;
    assert_eq!(
        ok(store.append(hello.clone()).await),
        AppendOutcome::Duplicate(original.clone())
    );
    assert_eq!(
        ok(store.find_entry(&group, &hello.dedup_key).await),
        Some(original)
    );
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        vec![1, 2, 3, 4]
    );
}

/// Only clients on the group's roster can post; strangers and removed members
/// are refused and the log does not change.
pub async fn non_member_cannot_append(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let mallory = register(&*store, "mallory", "phone").await;
    let group = create_group(&*store, "g", &alice).await;

    assert_not_member(
        store
            .append(application(&group, &mallory, 0, "let me in"))
            .await,
    );
    assert_not_member(store.read_group(&mallory, &group, 0, 10).await);
    assert_not_member(
        store
            .ack(&mallory, &StreamRef::Group(group.clone()), 1)
            .await,
    );

    add(&*store, &group, 0, &[&bob]).await;
    remove(&*store, &group, 1, &[&bob]).await;
    assert_not_member(
        store
            .append(application(&group, &bob, 2, "still here?"))
            .await,
    );

    let missing = store
        .append(application(&group_id("missing"), &alice, 0, "anyone?"))
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "expected NotFound, got {missing:?}"
    );
    assert_eq!(seqs(&read_all(&*store, &alice, &group).await), vec![1, 2]);
}

/// Messages are accepted for the current epoch and a window of past ones; a
/// message that changes the group state only for the current epoch.
pub async fn epoch_window_enforced(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    for epoch in 0..3 {
        accept(&*store, commit(&group, epoch, &format!("to {}", epoch + 1))).await;
    }

    let within = |epoch: u64, label: &str| NewMessage {
        max_epoch_lag: 2,
        ..application(&group, &alice, epoch, label)
    };
    assert_eq!(appended(store.append(within(3, "current")).await).epoch, 3);
    assert_eq!(
        appended(store.append(within(1, "two behind")).await).epoch,
        1
    );
    assert_wrong_epoch(store.append(within(0, "three behind")).await, 3);
    assert_wrong_epoch(store.append(within(4, "from the future")).await, 3);

    let proposal = |epoch: u64, label: &str| NewMessage {
        kind: EntryKind::Proposal,
        new_state: Some((format!("state with {label}").into_bytes(), 3)),
        ..within(epoch, label)
    };
    assert_wrong_epoch(store.append(proposal(2, "stale proposal")).await, 3);
    assert_eq!(
        ok(store.group_state(&group).await),
        Some(StoredGroupState {
            epoch: 3,
            state: b"state after to 3".to_vec(),
            version: 3,
        })
    );
    let entry = appended(store.append(proposal(3, "proposal")).await);
    assert_eq!((entry.kind, entry.epoch), (EntryKind::Proposal, 3));
    assert_eq!(
        ok(store.group_state(&group).await),
        Some(StoredGroupState {
            epoch: 3,
            state: b"state with proposal".to_vec(),
            version: 4,
        })
    );
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        vec![1, 2, 3, 4, 5, 6]
    );
}

// --- membership and delivery ---

/// A removed member sees the commit that removed it and nothing after.
pub async fn removed_member_sees_nothing_after_removal(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    send(&*store, &group, &bob, 1, "bye").await;
    let removal = remove(&*store, &group, 1, &[&bob]).await;
    send(&*store, &group, &alice, 2, "bob is gone").await;

    assert_eq!(seqs(&read_all(&*store, &bob, &group).await), vec![2, 3]);
    assert_eq!(removal.entry.seq, 3);
    assert_eq!(
        ok(store.membership(&bob, &group).await),
        Some(Membership {
            group_id: group.clone(),
            joined_seq: 1,
            left_seq: Some(3),
            acked_seq: 1,
        })
    );
    assert!(
        !ok(store.membership(&bob, &group).await)
            .expect("membership")
            .is_current()
    );
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        vec![1, 2, 3, 4]
    );
}

/// A member added by a commit sees what follows that commit, nothing before.
pub async fn joiner_sees_nothing_before_join(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    send(&*store, &group, &alice, 0, "before bob").await;
    send(&*store, &group, &alice, 0, "still before bob").await;
    let joined = add(&*store, &group, 0, &[&bob]).await;
    send(&*store, &group, &alice, 1, "hi bob").await;

    assert_eq!(joined.entry.seq, 3);
    assert_eq!(seqs(&read_all(&*store, &bob, &group).await), vec![4]);
    assert_eq!(
        seqs(&ok(store.read_group(&bob, &group, 0, 10).await)),
        vec![4]
    );
    assert_eq!(
        ok(store.membership(&bob, &group).await),
        Some(Membership {
            group_id: group.clone(),
            joined_seq: 3,
            left_seq: None,
            acked_seq: 3,
        })
    );
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        vec![1, 2, 3, 4]
    );
}

/// Each client a commit adds finds the Welcome in its own inbox, tied to the
/// commit's place in the log.
pub async fn welcome_lands_in_joiner_inbox(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let carol = register(&*store, "carol", "laptop").await;
    let group = create_group(&*store, "g", &alice).await;

    let accepted = add(&*store, &group, 0, &[&carol, &bob]).await;
    let welcome = InboxEntry {
        seq: 1,
        item: InboxItem::Welcome {
            group_id: group.clone(),
            commit_seq: accepted.entry.seq,
            welcome: Bytes::from_static(b"welcome"),
            ratchet_tree: Bytes::from_static(b"ratchet tree"),
        },
    };
    let mut welcomes = accepted.welcomes.clone();
    welcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        welcomes,
        vec![
            (bob.clone(), welcome.clone()),
            (carol.clone(), welcome.clone())
        ]
    );
    assert_eq!(
        ok(store.read_inbox(&bob, 0, 10).await),
        vec![welcome.clone()]
    );
    assert_eq!(ok(store.read_inbox(&carol, 0, 10).await), vec![welcome]);
    assert_eq!(ok(store.read_inbox(&alice, 0, 10).await), Vec::new());
    assert!(ok(store.membership(&bob, &group).await).is_some_and(|m| m.is_current()));
    assert!(ok(store.membership(&carol, &group).await).is_some_and(|m| m.is_current()));
}

/// Each client's inbox has its own gap-free sequence.
pub async fn inbox_is_per_client_and_gap_free(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let low = |available| InboxItem::KeyPackagesLow { available };

    assert_eq!(ok(store.push_inbox(&alice, low(3)).await).seq, 1);
    assert_eq!(ok(store.push_inbox(&bob, low(2)).await).seq, 1);
    assert_eq!(ok(store.push_inbox(&alice, low(1)).await).seq, 2);

    let alice_inbox = vec![
        InboxEntry {
            seq: 1,
            item: low(3),
        },
        InboxEntry {
            seq: 2,
            item: low(1),
        },
    ];
    assert_eq!(ok(store.read_inbox(&alice, 0, 10).await), alice_inbox);
    assert_eq!(ok(store.read_inbox(&alice, 0, 1).await), alice_inbox[..1]);
    assert_eq!(ok(store.read_inbox(&alice, 1, 10).await), alice_inbox[1..]);
    assert_eq!(ok(store.read_inbox(&alice, 2, 10).await), Vec::new());
    assert_eq!(
        ok(store.read_inbox(&bob, 0, 10).await),
        vec![InboxEntry {
            seq: 1,
            item: low(2)
        }]
    );
}

/// A client's memberships include groups it was removed from.
pub async fn memberships_cover_current_and_past_groups(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let stays = create_group(&*store, "stays", &alice).await;
    let leaves = create_group(&*store, "leaves", &bob).await;
    add(&*store, &leaves, 0, &[&alice]).await;
    remove(&*store, &leaves, 1, &[&alice]).await;

    let mut memberships = ok(store.memberships(&alice).await);
    memberships.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    let mut expected = vec![
        Membership {
            group_id: stays.clone(),
            joined_seq: 0,
            left_seq: None,
            acked_seq: 0,
        },
        Membership {
            group_id: leaves.clone(),
            joined_seq: 1,
            left_seq: Some(2),
            acked_seq: 1,
        },
    ];
    expected.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    assert_eq!(memberships, expected);
    assert_eq!(
        ok(store.memberships(&client("nobody", "x")).await),
        Vec::new()
    );
    assert_eq!(ok(store.membership(&alice, &group_id("other")).await), None);
}

/// Cursors move forward only, on group streams and on the inbox.
pub async fn acks_are_monotonic(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    for i in 0..3 {
        send(&*store, &group, &alice, 0, &format!("message {i}")).await;
    }
    let stream = StreamRef::Group(group.clone());
    let acked = async |store: &dyn Store| {
        ok(store.membership(&alice, &group).await)
            .expect("membership")
            .acked_seq
    };
    ok(store.ack(&alice, &stream, 2).await);
    assert_eq!(acked(&*store).await, 2);
    ok(store.ack(&alice, &stream, 1).await);
    assert_eq!(acked(&*store).await, 2);
    ok(store.ack(&alice, &stream, 3).await);
    assert_eq!(acked(&*store).await, 3);

    assert_eq!(ok(store.inbox_cursor(&alice).await), 0);
    for available in [2, 1] {
        ok(store
            .push_inbox(&alice, InboxItem::KeyPackagesLow { available })
            .await);
    }
    ok(store.ack(&alice, &StreamRef::Inbox, 2).await);
    assert_eq!(ok(store.inbox_cursor(&alice).await), 2);
    ok(store.ack(&alice, &StreamRef::Inbox, 1).await);
    assert_eq!(ok(store.inbox_cursor(&alice).await), 2);

    let stranger = register(&*store, "mallory", "phone").await;
    assert_not_member(store.ack(&stranger, &stream, 1).await);
}

/// A cursor cannot be moved past the end of its stream, where it would hide
/// entries that arrive later.
pub async fn ack_beyond_the_end_is_refused(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    send(&*store, &group, &alice, 0, "only message").await;
    let stream = StreamRef::Group(group.clone());
    let beyond = store.ack(&alice, &stream, 2).await;
    assert!(
        matches!(beyond, Err(StoreError::BeyondEnd { last: 1 })),
        "expected BeyondEnd, got {beyond:?}"
    );
    let beyond = store.ack(&alice, &StreamRef::Inbox, 1).await;
    assert!(
        matches!(beyond, Err(StoreError::BeyondEnd { last: 0 })),
        "expected BeyondEnd, got {beyond:?}"
    );
    assert_eq!(
        ok(store.membership(&alice, &group).await).map(|m| m.acked_seq),
        Some(0)
    );
    assert_eq!(ok(store.inbox_cursor(&alice).await), 0);
}

/// Reading a group in pages yields every entry once, in order.
pub async fn read_group_pages_in_order(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(send(&*store, &group, &alice, 0, &format!("message {i}")).await);
    }

    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = ok(store.read_group(&alice, &group, after, 3).await);
        let Some(last) = page.last() else { break };
        after = last.seq;
        pages.push(seqs(&page));
        assert!(pages.len() <= 4, "too many pages: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![vec![1, 2, 3], vec![4, 5, 6], vec![7, 8, 9], vec![10]]
    );
    assert_eq!(read_all(&*store, &alice, &group).await, sent);
    assert_eq!(
        ok(store.read_group(&alice, &group, 10, 3).await),
        Vec::new()
    );
    assert_eq!(
        seqs(&ok(store.read_group(&alice, &group, 4, 2).await)),
        vec![5, 6]
    );
}

// --- helpers ---

/// The client a session names, if it is live at `now`.
async fn session_client(store: &dyn Store, token: &DedupKey, now: SystemTime) -> Option<ClientId> {
    ok(store.session(token, now).await).map(|session| session.client)
}

fn ok<T>(result: StoreResult<T>) -> T {
    result.unwrap_or_else(|err| panic!("store failed: {err:?}"))
}

fn client(user: &str, device: &str) -> ClientId {
    ClientId::new(user, device).expect("valid client id")
}

fn group_id(name: &str) -> GroupId {
    GroupId::new(format!("group {name}").into_bytes()).expect("valid group id")
}

fn dedup_key(label: &str) -> DedupKey {
    Sha256::digest(label.as_bytes()).into()
}

async fn register(store: &dyn Store, user: &str, device: &str) -> ClientId {
    let id = client(user, device);
    let record = ClientRecord {
        id: id.clone(),
        signature_key: format!("signature key of {id}").into_bytes(),
    };
    assert_eq!(
        ok(store.register_client(&record).await),
        Registration::Created
    );
    id
}

fn key_package(owner: &str, i: u32) -> KeyPackageRecord {
    KeyPackageRecord {
        key_package_ref: format!("ref {owner} {i}").into_bytes(),
        data: Bytes::from(format!("key package {owner} {i}")),
    }
}

fn key_packages(owner: &str, range: std::ops::Range<u32>) -> Vec<KeyPackageRecord> {
    range.map(|i| key_package(owner, i)).collect()
}

async fn claim(store: &dyn Store, client: &ClientId) -> ClaimedKeyPackage {
    ok(store.claim_key_package(client).await).expect("a key package to claim")
}

fn state_at(epoch: u64) -> Vec<u8> {
    format!("state at {epoch}").into_bytes()
}

fn group_info_at(epoch: u64) -> Bytes {
    Bytes::from(format!("group info at {epoch}"))
}

fn new_group(name: &str, creator: &ClientId) -> NewGroup {
    NewGroup {
        group_id: group_id(name),
        epoch: 0,
        state: state_at(0),
        group_info: group_info_at(0),
        creator: creator.clone(),
    }
}

async fn create_group(store: &dyn Store, name: &str, creator: &ClientId) -> GroupId {
    ok(store.create_group(new_group(name, creator)).await);
    group_id(name)
}

/// The same MLS bytes under another idempotency key (a replay) are not
/// appended again: the original entry comes back.
pub async fn replayed_message_bytes_return_the_original_entry(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    let original = appended(store.append(application(&group, &alice, 0, "hello")).await);
    let replay = NewMessage {
        dedup_key: dedup_key("another idempotency key"),
        ..application(&group, &alice, 0, "hello")
    };
    assert_eq!(
        ok(store.append(replay).await),
        AppendOutcome::Duplicate(original)
    );
    assert_eq!(seqs(&read_all(&*store, &alice, &group).await), vec![1]);
}

/// Membership is checked before any duplicate lookup: a stranger replaying
/// a member's bytes, or a removed member retrying, learns no sequence number.
/// A member's replay of old bytes outside the epoch window is refused too;
/// only a retry under the same idempotency key finds its entry at any epoch.
pub async fn a_non_member_learns_nothing_from_duplicates(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let mallory = register(&*store, "mallory", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    let hello = application(&group, &alice, 1, "hello");
    let original = appended(store.append(hello.clone()).await);
    let bobs = appended(store.append(application(&group, &bob, 1, "bye")).await);

    let stolen = NewMessage {
        sender: Some(mallory.clone()),
        dedup_key: dedup_key("mallory's key"),
        ..hello.clone()
    };
    assert_not_member(store.append(stolen).await);

    accept(&*store, commit(&group, 1, "to 2")).await;
    let replayed = NewMessage {
        dedup_key: dedup_key("a new key for old bytes"),
        ..hello.clone()
    };
    let stale = store.append(replayed).await;
    assert!(
        matches!(stale, Err(StoreError::WrongEpoch { current: 2 })),
        "expected WrongEpoch, got {stale:?}"
    );
    assert_eq!(
        ok(store.append(hello).await),
        AppendOutcome::Duplicate(original)
    );

    remove(&*store, &group, 2, &[&bob]).await;
    assert_not_member(store.append(application(&group, &bob, 1, "bye")).await);
    assert_eq!(bobs.seq, 3);
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        vec![1, 2, 3, 4, 5]
    );
}

/// Every state write names the version it was derived from; a writer that
/// missed another's write (another replica) is refused and changes nothing.
pub async fn state_writes_from_an_old_version_are_refused(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    let proposal = |version: u64, label: &str| NewMessage {
        kind: EntryKind::Proposal,
        new_state: Some((format!("state with {label}").into_bytes(), version)),
        ..application(&group, &alice, 0, label)
    };
    appended(store.append(proposal(0, "first proposal")).await);
    assert_eq!(ok(store.group_state_version(&group).await), Some(1));

    let stale = store.append(proposal(0, "stale proposal")).await;
    assert!(
        matches!(stale, Err(StoreError::StateChanged)),
        "expected StateChanged, got {stale:?}"
    );
    let stale_commit = store.accept_commit(commit(&group, 0, "stale")).await;
    assert!(
        matches!(stale_commit, Err(StoreError::StateChanged)),
        "expected StateChanged, got {stale_commit:?}"
    );
    assert_eq!(
        ok(store.group_state(&group).await).map(|s| (s.epoch, s.version, s.state)),
        Some((0, 1, b"state with first proposal".to_vec()))
    );
    let current = accept(
        &*store,
        CommitRecord {
            state_version: 1,
            ..commit(&group, 0, "current")
        },
    )
    .await;
    assert_eq!(current.entry.seq, 2);
    assert_eq!(ok(store.group_state_version(&group).await), Some(2));
}

/// A commit from `from_epoch` that changes nothing but the epoch.
fn commit(group: &GroupId, from_epoch: u64, label: &str) -> CommitRecord {
    CommitRecord {
        group_id: group.clone(),
        from_epoch,
        // These groups take no proposals, so each commit is one state write.
        state_version: from_epoch,
        dedup_key: dedup_key(&format!("{group} commit {label}")),
        commit: Bytes::from(format!("commit {label}")),
        new_state: format!("state after {label}").into_bytes(),
        group_info: Bytes::from(format!("group info after {label}")),
        added: Vec::new(),
        welcome: None,
        ratchet_tree: Bytes::new(),
        removed: Vec::new(),
    }
}

async fn accept(store: &dyn Store, commit: CommitRecord) -> CommitAccepted {
    match ok(store.accept_commit(commit).await) {
        CommitOutcome::Accepted(accepted) => accepted,
        duplicate => panic!("expected the commit to be accepted, got {duplicate:?}"),
    }
}

async fn add(
    store: &dyn Store,
    group: &GroupId,
    from_epoch: u64,
    clients: &[&ClientId],
) -> CommitAccepted {
    let label = format!("add {clients:?} at {from_epoch}");
    accept(
        store,
        CommitRecord {
            added: clients.iter().map(|&c| c.clone()).collect(),
            welcome: Some(Bytes::from_static(b"welcome")),
            ratchet_tree: Bytes::from_static(b"ratchet tree"),
            ..commit(group, from_epoch, &label)
        },
    )
    .await
}

async fn remove(
    store: &dyn Store,
    group: &GroupId,
    from_epoch: u64,
    clients: &[&ClientId],
) -> CommitAccepted {
    let label = format!("remove {clients:?} at {from_epoch}");
    accept(
        store,
        CommitRecord {
            removed: clients.iter().map(|&c| c.clone()).collect(),
            ..commit(group, from_epoch, &label)
        },
    )
    .await
}

/// An application message with no epoch window beyond `epoch` itself.
fn application(group: &GroupId, sender: &ClientId, epoch: u64, label: &str) -> NewMessage {
    NewMessage {
        group_id: group.clone(),
        sender: Some(sender.clone()),
        dedup_key: dedup_key(&format!("{group} {sender} {label}")),
        content_key: dedup_key(&format!("content {sender}: {label}")),
        kind: EntryKind::Application,
        epoch,
        message: Bytes::from(format!("{sender}: {label}")),
        max_epoch_lag: 0,
        new_state: None,
    }
}

fn appended(outcome: StoreResult<AppendOutcome>) -> GroupEntry {
    match ok(outcome) {
        AppendOutcome::Appended(entry) => entry,
        duplicate => panic!("expected a new entry, got {duplicate:?}"),
    }
}

async fn send(
    store: &dyn Store,
    group: &GroupId,
    sender: &ClientId,
    epoch: u64,
    label: &str,
) -> GroupEntry {
    appended(store.append(application(group, sender, epoch, label)).await)
}

/// Everything the client may read from the group, one small page at a time.
async fn read_all(store: &dyn Store, client: &ClientId, group: &GroupId) -> Vec<GroupEntry> {
    let mut entries: Vec<GroupEntry> = Vec::new();
    loop {
        let after = entries.last().map_or(0, |entry| entry.seq);
        let page = ok(store.read_group(client, group, after, 4).await);
        if page.is_empty() {
            return entries;
        }
        entries.extend(page);
    }
}

fn seqs(entries: &[GroupEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

fn assert_wrong_epoch<T: Debug>(result: StoreResult<T>, expected: u64) {
    match result {
        Err(StoreError::WrongEpoch { current }) => assert_eq!(current, expected),
        other => panic!("expected WrongEpoch {{ current: {expected} }}, got {other:?}"),
    }
}

fn assert_not_member<T: Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::NotMember)),
        "expected NotMember, got {result:?}"
    );
}

fn assert_duplicate_commit(outcome: StoreResult<CommitOutcome>, original: &GroupEntry) {
    match ok(outcome) {
        CommitOutcome::Duplicate(entry) => assert_eq!(&entry, original),
        accepted => panic!("expected a duplicate, got {accepted:?}"),
    }
}
