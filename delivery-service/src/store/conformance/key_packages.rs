//! Key package pools and claims.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::support::*;
use crate::store::{KeyPackageCount, Store};

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
