//! Clients, challenges and sessions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::support::*;
use crate::domain::ClientId;
use crate::store::{Registration, Store, StoreError};

/// A client is bound to the key it registers with; registering it again
/// with that key changes nothing.
pub async fn registration_binds_key(store: Arc<dyn Store>) {
    let phone = client("alice", "phone");
    let registered = device(&phone, b"key one", "alice");
    assert_eq!(
        ok(store.register_client(&registered).await),
        Registration::Created
    );
    assert_eq!(
        ok(store.register_client(&registered).await),
        Registration::AlreadyRegistered
    );
    assert_eq!(ok(store.client(&phone).await), Some(registered.client));
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

    assert!(
        ok(store.remove_client(&laptop, None).await),
        "newly removed"
    );
    assert!(
        !ok(store.remove_client(&laptop, None).await),
        "removed before"
    );
    assert!(matches!(
        store.remove_client(&client("alice", "tablet"), None).await,
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
    let again = device(
        &laptop,
        format!("signature key of {laptop}").as_bytes(),
        "alice",
    );
    assert_eq!(
        ok(store.register_client(&again).await),
        Registration::Removed
    );
    let rekeyed = device(&laptop, b"a new key", "alice");
    assert_eq!(
        ok(store.register_client(&rekeyed).await),
        Registration::Removed
    );
    let registered = ok(store.registered_client(&laptop).await).expect("a tombstone");
    assert!(registered.removed);
    assert_eq!(registered.record.signature_key, again.client.signature_key);
}
