//! Groups, commits (one per epoch) and versioned state writes.

use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use crate::domain::{EntryKind, GroupEntry};
use crate::store::{
    CommitOutcome, CommitRecord, Membership, NewMessage, Store, StoreError, StoredGroupState,
};

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
