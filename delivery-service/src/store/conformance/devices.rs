//! Users and their devices: the identity key the first device makes, later
//! devices under it, re-keying, revocations, and which users a roster has.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::support::*;
use crate::domain::InboxItem;
use crate::store::{Registration, Store};

/// The first device of a user makes its identity; a device certified by
/// another identity key is refused and leaves nothing behind; one certified
/// by the user's identity key joins it.
pub async fn the_first_device_makes_the_users_identity_and_later_ones_need_it(
    store: Arc<dyn Store>,
) {
    assert_eq!(ok(store.identity_key("alice").await), None);
    let phone = register(&*store, "alice", "phone").await;
    assert_eq!(
        ok(store.identity_key("alice").await),
        Some(identity_key("alice"))
    );

    let evil = client("alice", "evil");
    assert_eq!(
        ok(store
            .register_client(&device(&evil, b"mallory's key", "mallory"))
            .await),
        Registration::OtherIdentity
    );
    assert_eq!(ok(store.client(&evil).await), None);
    assert_eq!(ok(store.registered_client(&evil).await), None);
    assert_eq!(ok(store.devices("alice").await), vec![phone.clone()]);
    assert_eq!(
        ok(store.identity_key("alice").await),
        Some(identity_key("alice"))
    );

    let laptop = client("alice", "laptop");
    let linked = device(&laptop, b"laptop key", "alice");
    assert_eq!(
        ok(store.register_client(&linked).await),
        Registration::Created
    );
    let devices = ok(store.user_devices("alice").await);
    assert_eq!(devices.identity_key, Some(identity_key("alice")));
    let listed: Vec<_> = devices.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(listed, vec![laptop, phone]);
    assert_eq!(devices.devices[0], linked.client);
    assert!(devices.revocations.is_empty());
    // A user nobody registered for has nothing.
    assert_eq!(ok(store.user_devices("carol").await), Default::default());
}

/// Two first devices of a new user racing, each with its own identity key:
/// one identity wins, and only the devices certified by it are registered.
pub async fn concurrent_first_devices_of_a_user_make_one_identity(store: Arc<dyn Store>) {
    let registrations: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let id = client("alice", &format!("d{i}"));
                // Two devices per identity.
                let identity = format!("identity {}", i / 2);
                let outcome = ok(store.register_client(&device(&id, b"key", &identity)).await);
                (id, identity, outcome)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for registration in registrations {
        outcomes.push(registration.await.expect("a registration task"));
    }
    let winner = ok(store.identity_key("alice").await).expect("an identity");
    let mut expected = Vec::new();
    for (id, identity, outcome) in outcomes {
        if identity_key(&identity) == winner {
            assert_eq!(outcome, Registration::Created, "{id}");
            expected.push(id);
        } else {
            assert_eq!(outcome, Registration::OtherIdentity, "{id}");
        }
    }
    expected.sort();
    assert_eq!(expected.len(), 2);
    assert_eq!(ok(store.devices("alice").await), expected);
}

/// A device registered again with a new key under its user's identity (a
/// device restored after losing its state) keeps its memberships and inbox;
/// its sessions, challenges and key packages are gone.
pub async fn a_rekeyed_device_keeps_its_groups_and_inbox_and_loses_its_sessions(
    store: Arc<dyn Store>,
) {
    let phone = register(&*store, "alice", "phone").await;
    let now = SystemTime::now();
    let later = now + Duration::from_secs(60);
    ok(store.put_session(&dedup_key("old"), &phone, later).await);
    ok(store.put_challenge(&phone, b"pending", later).await);
    ok(store
        .publish_key_packages(
            &phone,
            key_packages("phone", 0..2),
            Some(key_package("phone lr", 0)),
        )
        .await);
    let group = create_group(&*store, "chat", &phone).await;
    ok(store
        .push_inbox(&phone, InboxItem::KeyPackagesLow { available: 1 })
        .await);

    // Certified by another identity: refused, nothing changes.
    let stolen = device(&phone, b"mallory's key", "mallory");
    assert_eq!(
        ok(store.register_client(&stolen).await),
        Registration::OtherIdentity
    );
    assert_eq!(
        session_client(&*store, &dedup_key("old"), now).await,
        Some(phone.clone())
    );
    assert_eq!(ok(store.count_key_packages(&phone).await).available, 2);

    let restored = device(&phone, b"restored key", "alice");
    assert_eq!(
        ok(store.register_client(&restored).await),
        Registration::Rekeyed
    );
    assert_eq!(
        ok(store.client(&phone).await),
        Some(restored.client.clone())
    );
    assert_eq!(session_client(&*store, &dedup_key("old"), now).await, None);
    assert!(!ok(store.take_challenge(&phone, b"pending", now).await));
    assert_eq!(ok(store.claim_key_package(&phone).await), None);
    let membership = ok(store.membership(&phone, &group).await).expect("still a member");
    assert!(membership.is_current());
    assert!(ok(store.user_in_group(&group, "alice").await));
    assert_eq!(ok(store.read_inbox(&phone, 0, 10).await).len(), 1);
    assert_eq!(
        ok(store.register_client(&restored).await),
        Registration::AlreadyRegistered
    );
}

/// A removal keeps the revocation it came with (the first one given), and
/// the user's devices list it beside the devices still there.
pub async fn a_removal_keeps_its_revocation_for_the_users_devices(store: Arc<dyn Store>) {
    let phone = register(&*store, "alice", "phone").await;
    let laptop = register(&*store, "alice", "laptop").await;
    assert!(ok(store.remove_client(&laptop, Some(b"revocation")).await));
    assert!(!ok(store.remove_client(&laptop, Some(b"another")).await));
    let tablet = register(&*store, "alice", "tablet").await;
    assert!(ok(store.remove_client(&tablet, None).await));

    let devices = ok(store.user_devices("alice").await);
    let listed: Vec<_> = devices.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(listed, vec![phone]);
    assert_eq!(devices.revocations, vec![(laptop, b"revocation".to_vec())]);
    assert!(ok(store.user_devices("bob").await).revocations.is_empty());
}

/// The roster knows which users have a device in a group, as commits add
/// and remove them.
pub async fn the_roster_knows_which_users_have_a_device_in_a_group(store: Arc<dyn Store>) {
    let alice = register(&*store, "alice", "phone").await;
    let bob = register(&*store, "bob", "phone").await;
    register(&*store, "carol", "phone").await;
    let group = create_group(&*store, "chat", &alice).await;
    add(&*store, &group, 0, &[&bob]).await;
    assert!(ok(store.user_in_group(&group, "alice").await));
    assert!(ok(store.user_in_group(&group, "bob").await));
    assert!(!ok(store.user_in_group(&group, "carol").await));
    assert!(!ok(store
        .user_in_group(&group_id("elsewhere"), "alice")
        .await));
    remove(&*store, &group, 1, &[&bob]).await;
    assert!(!ok(store.user_in_group(&group, "bob").await));
}
