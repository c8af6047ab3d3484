//! What each member reads: joins and removals, Welcomes and inboxes,
//! memberships, cursors and pages.

use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use crate::domain::{InboxEntry, InboxItem, StreamRef};
use crate::store::{Membership, Store, StoreError};

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
