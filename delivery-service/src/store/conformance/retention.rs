//! Bounded storage: what [`Store::prune`] deletes, what it keeps, and what a
//! reader whose entries were pruned is told.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::support::*;
use crate::domain::{GroupId, InboxItem, StreamRef};
use crate::store::{KeyPackageRecord, PruneReport, Store, StoreError};

/// A retention the checks never reach, unless they look `LATER`.
const RETENTION: Duration = Duration::from_secs(3600);
/// Far enough ahead that everything stored now is past `RETENTION`.
const LATER: Duration = Duration::from_secs(2 * 3600);

async fn prune_now(store: &dyn Store) -> PruneReport {
    ok(store.prune(SystemTime::now(), RETENTION).await)
}

fn assert_pruned<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    group: &GroupId,
    expected_first: u64,
) {
    match result {
        Err(StoreError::Pruned {
            group_id,
            first_seq,
        }) => {
            assert_eq!(&group_id, group);
            assert_eq!(first_seq, expected_first);
        }
        other => panic!("expected Pruned {{ first_seq: {expected_first} }}, got {other:?}"),
    }
}

/// Entries every member acknowledged are deleted; the log reads on from
/// there, and new entries continue the sequence.
pub async fn entries_every_member_acked_are_pruned_and_the_log_reads_on_from_the_horizon(
    store: Arc<dyn Store>,
) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    for i in 0..5 {
        send(&*store, &group, &alice, 1, &format!("m{i}")).await;
    }
    let stream = StreamRef::Group(group.clone());
    ok(store.ack(&alice, &stream, 6).await);
    ok(store.ack(&bob, &stream, 4).await);

    let report = prune_now(&*store).await;

    assert_eq!(report.log_entries, 4, "{report:?}");
    assert_eq!(
        seqs(&ok(store.read_group(&bob, &group, 4, 10).await)),
        vec![5, 6]
    );
    assert_eq!(
        seqs(&ok(store.read_group(&alice, &group, 6, 10).await)),
        Vec::<u64>::new()
    );
    assert_pruned(store.read_group(&alice, &group, 2, 10).await, &group, 5);
    let next = send(&*store, &group, &bob, 1, "after pruning").await;
    assert_eq!(next.seq, 7);
    assert_eq!(
        seqs(&ok(store.read_group(&alice, &group, 6, 10).await)),
        vec![7]
    );
}

/// Entries a member has not acknowledged stay, however many others did,
/// until they are older than the retention.
pub async fn entries_a_member_has_not_acked_stay_until_retention(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    for i in 0..3 {
        send(&*store, &group, &alice, 1, &format!("m{i}")).await;
    }
    ok(store.ack(&alice, &StreamRef::Group(group.clone()), 4).await);

    let report = prune_now(&*store).await;

    // Bob joined at 1 and acknowledged nothing since.
    assert_eq!(report.log_entries, 1, "{report:?}");
    assert_eq!(seqs(&read_all(&*store, &bob, &group).await), vec![2, 3, 4]);
}

/// Past the retention, entries go whoever acknowledged them, and a member
/// whose cursor is below what is left is told where the log now starts.
pub async fn retention_prunes_old_entries_whoever_acked_them(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    for i in 0..3 {
        send(&*store, &group, &alice, 1, &format!("m{i}")).await;
    }

    let report = ok(store.prune(SystemTime::now() + LATER, RETENTION).await);

    assert_eq!(report.log_entries, 4, "{report:?}");
    assert_pruned(store.read_group(&bob, &group, 0, 10).await, &group, 5);
    assert_pruned(store.read_group(&bob, &group, 3, 10).await, &group, 5);
    send(&*store, &group, &alice, 1, "new").await;
    assert_eq!(
        seqs(&ok(store.read_group(&bob, &group, 4, 10).await)),
        vec![5]
    );
}

/// A removed member's membership goes once its window is pruned and it
/// read up to its removal; one that did not is told, and keeps it.
pub async fn a_removed_members_membership_goes_once_its_window_is_pruned(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let carol = register(&*store, "carol", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    add(&*store, &group, 1, &[&carol]).await;
    let removal = remove(&*store, &group, 2, &[&bob, &carol]).await;
    let stream = StreamRef::Group(group.clone());
    ok(store.ack(&alice, &stream, removal.entry.seq).await);
    ok(store.ack(&bob, &stream, removal.entry.seq).await);

    // Carol has not read her removal: the log waits for her.
    let report = prune_now(&*store).await;
    assert_eq!(report.log_entries, 2, "{report:?}");
    assert!(ok(store.membership(&bob, &group).await).is_some());

    let report = ok(store.prune(SystemTime::now() + LATER, RETENTION).await);
    assert_eq!(
        (report.log_entries, report.memberships),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(ok(store.membership(&bob, &group).await), None);
    assert_pruned(store.read_group(&carol, &group, 2, 10).await, &group, 4);
    // Once carol acknowledged what was pruned, hers goes too.
    ok(store.ack(&carol, &stream, removal.entry.seq).await);
    let report = prune_now(&*store).await;
    assert_eq!(report.memberships, 1, "{report:?}");
    assert_eq!(ok(store.membership(&carol, &group).await), None);
    assert!(ok(store.membership(&alice, &group).await).is_some());
}

/// Acknowledged inbox entries go at once, unacknowledged ones past the
/// retention; key packages go when their lifetime ends.
pub async fn acked_and_old_inbox_entries_and_expired_key_packages_are_pruned(
    store: Arc<dyn Store>,
) {
    let alice = register(&*store, "alice", "phone").await;
    for available in 0..3 {
        ok(store
            .push_inbox(&alice, InboxItem::KeyPackagesLow { available })
            .await);
    }
    ok(store.ack(&alice, &StreamRef::Inbox, 2).await);
    let now = SystemTime::now();
    let expiring = |i: u32, not_after: SystemTime| KeyPackageRecord {
        not_after,
        ..key_package("alice", i)
    };
    ok(store
        .publish_key_packages(
            &alice,
            vec![
                expiring(0, now - Duration::from_secs(1)),
                expiring(1, now + Duration::from_secs(60)),
                expiring(2, now + LATER + LATER),
            ],
            Some(expiring(3, now + Duration::from_secs(60))),
        )
        .await);

    let report = ok(store.prune(now, RETENTION).await);
    assert_eq!(
        (report.inbox_entries, report.key_packages),
        (2, 1),
        "{report:?}"
    );
    let inbox = ok(store.read_inbox(&alice, 0, 10).await);
    assert_eq!(inbox.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
    assert_eq!(ok(store.count_key_packages(&alice).await).available, 2);

    let report = ok(store.prune(now + LATER, RETENTION).await);
    assert_eq!(
        (report.inbox_entries, report.key_packages),
        (1, 2),
        "{report:?}"
    );
    assert!(ok(store.read_inbox(&alice, 0, 10).await).is_empty());
    let count = ok(store.count_key_packages(&alice).await);
    assert_eq!((count.available, count.has_last_resort), (1, false));
    // The inbox goes on numbering where it was.
    let next = ok(store
        .push_inbox(&alice, InboxItem::KeyPackagesLow { available: 9 })
        .await);
    assert_eq!(next.seq, 4);
}

/// Pruning twice deletes nothing the second time and changes no reads.
pub async fn pruning_is_idempotent(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let group = create_group(&*store, "g", &alice).await;
    for i in 0..4 {
        send(&*store, &group, &alice, 0, &format!("m{i}")).await;
    }
    ok(store.ack(&alice, &StreamRef::Group(group.clone()), 2).await);
    let first = prune_now(&*store).await;
    assert_eq!(first.log_entries, 2, "{first:?}");
    let read = seqs(&ok(store.read_group(&alice, &group, 2, 10).await));

    assert_eq!(prune_now(&*store).await, PruneReport::default());
    assert_eq!(
        seqs(&ok(store.read_group(&alice, &group, 2, 10).await)),
        read
    );
    assert_eq!(read, vec![3, 4]);
}

/// Pruning while members send and acknowledge, in batches and one by one:
/// every send is answered, each group's sequence stays gapless, and what
/// is left reads on from the horizon.
pub async fn pruning_while_members_send_keeps_each_group_gapless(store: Arc<dyn Store>) {
    const SENDS: u64 = 60;
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    let one = create_group(&*store, "one", &alice).await;
    let two = create_group(&*store, "two", &alice).await;
    add(&*store, &one, 0, &[&bob]).await;
    add(&*store, &two, 0, &[&bob]).await;
    let sender = |store: Arc<dyn Store>, group: GroupId, batched: bool| {
        let (alice, bob) = (alice.clone(), bob.clone());
        tokio::spawn(async move {
            let stream = StreamRef::Group(group.clone());
            let mut seqs = Vec::new();
            for i in 0..SENDS / 2 {
                let pair = vec![
                    application(&group, &alice, 1, &format!("a{i}")),
                    application(&group, &bob, 1, &format!("b{i}")),
                ];
                let outcomes = if batched {
                    store.append_batch(pair).await
                } else {
                    let mut outcomes = Vec::new();
                    for message in pair {
                        outcomes.push(store.append(message).await);
                    }
                    outcomes
                };
                for outcome in outcomes {
                    let seq = appended(outcome).seq;
                    seqs.push(seq);
                    ok(store.ack(&alice, &stream, seq).await);
                    ok(store.ack(&bob, &stream, seq).await);
                }
            }
            seqs
        })
    };
    let sending = [
        sender(store.clone(), one.clone(), true),
        sender(store.clone(), two.clone(), false),
    ];
    let pruner = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut deleted = 0;
            while deleted < SENDS {
                deleted += ok(store.prune(SystemTime::now(), RETENTION).await).log_entries;
                tokio::task::yield_now().await;
            }
            deleted
        })
    };
    for (group, sending) in [&one, &two].into_iter().zip(sending) {
        let mut seqs = sending.await.expect("the sender");
        seqs.sort_unstable();
        assert_eq!(seqs, (2..2 + SENDS).collect::<Vec<_>>(), "{group}");
    }
    pruner.await.expect("the pruner");
    prune_now(&*store).await;
    for group in [&one, &two] {
        let last = SENDS + 1;
        assert_pruned(
            store.read_group(&alice, group, 0, 10).await,
            group,
            last + 1,
        );
        assert!(ok(store.read_group(&alice, group, last, 10).await).is_empty());
        assert_eq!(send(&*store, group, &bob, 1, "after").await.seq, last + 1);
    }
}
