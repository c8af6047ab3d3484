//! Appends: sequence numbers, duplicates and replays, who may post, the
//! epoch window.

use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use crate::domain::{EntryKind, GroupId, StreamRef};
use crate::store::{AppendOutcome, NewMessage, Store, StoreError, StoredGroupState};

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

/// A batch of sends to several groups (group commit) takes, per group, the
/// next sequence numbers in the batch's order, with no gap, and tells each
/// sender its own entry.
pub async fn a_batch_of_sends_to_several_groups_is_gapless_per_group(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let one = create_group(&*store, "one", &alice).await;
    let two = create_group(&*store, "two", &alice).await;
    let three = create_group(&*store, "three", &bob).await;
    add(&*store, &one, 0, &[&bob]).await;
    let before = appended(store.append(application(&two, &alice, 0, "before")).await);

    let batch = vec![
        application(&one, &alice, 1, "one a"),
        application(&two, &alice, 0, "two a"),
        application(&one, &bob, 1, "one b"),
        application(&three, &bob, 0, "three a"),
        application(&one, &alice, 1, "one c"),
        application(&two, &alice, 0, "two b"),
    ];
    let outcomes = store.append_batch(batch.clone()).await;
    assert_eq!(outcomes.len(), batch.len());
    let told: Vec<(GroupId, u64, Bytes)> = outcomes
        .into_iter()
        .map(|outcome| {
            let entry = appended(outcome);
            (entry.group_id, entry.seq, entry.message)
        })
        .collect();
    let expected: Vec<(GroupId, u64, Bytes)> = batch
        .iter()
        .zip([2, 2, 3, 1, 4, 3])
        .map(|(sent, seq)| (sent.group_id.clone(), seq, sent.message.clone()))
        .collect();
    assert_eq!(told, expected);

    for (group, reader, before) in [
        (&one, &bob, None),
        (&two, &alice, Some(&before)),
        (&three, &bob, None),
    ] {
        let read = read_all(&*store, reader, group).await;
        let applications: Vec<&Bytes> = read
            .iter()
            .filter(|entry| entry.kind == EntryKind::Application)
            .map(|entry| &entry.message)
            .collect();
        let sent: Vec<&Bytes> = before
            .into_iter()
            .map(|entry| &entry.message)
            .chain(
                batch
                    .iter()
                    .filter(|sent| &sent.group_id == group)
                    .map(|sent| &sent.message),
            )
            .collect();
        assert_eq!(applications, sent, "{group}");
        let seqs = seqs(&read);
        let first = seqs.first().copied().unwrap_or(1);
        assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
    }
}

/// Each message of a batch is answered as a single append would answer it:
/// strangers, unknown groups, retries, replays and stale epochs among fresh
/// messages change nothing for the others, and the log stays gapless.
pub async fn a_batch_answers_each_message_as_a_single_append_would(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let mallory = register(&*store, "mallory", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    let window = |epoch: u64, label: &str| NewMessage {
        max_epoch_lag: 1,
        ..application(&group, &alice, epoch, label)
    };
    let early = appended(store.append(window(0, "early")).await);
    accept(&*store, commit(&group, 0, "to 1")).await;
    accept(&*store, commit(&group, 1, "to 2")).await;

    let outcomes = store
        .append_batch(vec![
            window(2, "fresh"),
            application(&group, &mallory, 2, "let me in"),
            application(&group_id("missing"), &alice, 0, "anyone?"),
            window(0, "early"),
            window(0, "too old"),
            window(1, "one behind"),
        ])
        .await;
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().expect("one answer per message");
    let fresh = appended(next());
    assert_eq!(fresh.seq, 4);
    assert_not_member(next());
    let missing = next();
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "expected NotFound, got {missing:?}"
    );
    assert_eq!(ok(next()), AppendOutcome::Duplicate(early));
    assert_wrong_epoch(next(), 2);
    assert_eq!(appended(next()).seq, 5);

    // Retries and replays, within one batch and of earlier ones.
    let replay = NewMessage {
        dedup_key: dedup_key("a new key for the same bytes"),
        ..window(2, "fresh")
    };
    let outcomes = store
        .append_batch(vec![
            window(2, "later"),
            window(2, "fresh"),
            replay,
            window(2, "last"),
            window(2, "last"),
        ])
        .await;
    let mut outcomes = outcomes.into_iter();
    let mut next = || outcomes.next().expect("one answer per message");
    assert_eq!(appended(next()).seq, 6);
    assert_eq!(ok(next()), AppendOutcome::Duplicate(fresh.clone()));
    assert_eq!(ok(next()), AppendOutcome::Duplicate(fresh));
    let last = appended(next());
    assert_eq!(last.seq, 7);
    assert_eq!(ok(next()), AppendOutcome::Duplicate(last));
    assert_eq!(
        seqs(&read_all(&*store, &alice, &group).await),
        (1..=7).collect::<Vec<_>>()
    );
}
