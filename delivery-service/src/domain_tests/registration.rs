//! Registration under a user's identity key.

use super::fixture::*;
use crate::auth::{RequestMeta, SessionToken};

#[tokio::test]
async fn a_device_registered_under_another_users_name_without_its_certificate_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let phone = alice.device("phone");
    phone.register(&ds).await.expect("the first device");
    let mallory = User::new("mallory");
    let evil = mallory.certify(id("alice", "evil"), key());

    assert_refused(
        evil.register(&ds).await,
        "PERMISSION_DENIED",
        "user alice already has devices: link this device from one of them (`confide link`)",
    );
    assert_eq!(ds.store.client(&evil.id).await.unwrap(), None);
    assert_eq!(
        ds.store.devices("alice").await.unwrap(),
        vec![phone.id.clone()]
    );
    assert_eq!(
        ds.store.identity_key("alice").await.unwrap().as_deref(),
        Some(alice.identity_key())
    );

    let laptop = alice.device("laptop");
    laptop
        .register(&ds)
        .await
        .expect("a device alice certified");
    assert_eq!(ds.store.devices("alice").await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_registration_whose_certificate_does_not_certify_the_device_and_key_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let phone = alice.device("phone");
    let laptop = alice.device("laptop");
    let key = phone.signer.public().to_vec();
    let refusals: [(&[u8], &str); 4] = [
        (&[], "missing field `device_certificate`"),
        (&[7; 40], "a device certificate is 96 bytes, not 40"),
        (
            &laptop.certificate.to_bytes(),
            "does not certify alice/phone",
        ),
        (
            &alice
                .certificate(&phone.id, laptop.signer.public())
                .to_bytes(),
            "does not certify alice/phone",
        ),
    ];
    for (certificate, reason) in refusals {
        assert_refused(
            ds.register_client(phone.id.clone(), key.clone(), certificate, "")
                .await,
            "INVALID_ARGUMENT",
            reason,
        );
    }
    // Nothing was registered, and the user has no identity yet.
    assert_eq!(ds.store.client(&phone.id).await.unwrap(), None);
    assert_eq!(ds.store.identity_key("alice").await.unwrap(), None);
}

#[tokio::test]
async fn registering_the_same_device_and_key_again_succeeds() {
    let ds = ds();
    let phone = User::new("alice").device("phone");
    phone.register(&ds).await.expect("registering");
    phone.register(&ds).await.expect("registering again");
    assert_eq!(ds.store.devices("alice").await.unwrap(), vec![phone.id]);
}

/// A session of `client` (signed in as a client does).
async fn sign_in(ds: &crate::state::Ds, device: &Device) -> String {
    use openmls_traits::signatures::Signer as _;
    let challenge = ds.create_challenge(&device.id).await.unwrap();
    let signature = device
        .signer
        .sign(&confide_core::auth::challenge_signing_payload(
            &challenge.challenge,
        ))
        .unwrap();
    ds.authenticate(&device.id, &challenge.challenge, &signature)
        .await
        .expect("signing in")
        .token
}

fn meta(token: &str) -> RequestMeta<'_> {
    RequestMeta {
        size: 0,
        peer: None,
        session_token: SessionToken::Bearer(token),
        admin_token: None,
    }
}

#[tokio::test]
async fn a_restored_device_registers_a_new_key_and_loses_its_sessions_and_key_packages_not_its_groups()
 {
    let ds = ds();
    let alice = User::new("alice");
    let mut phone = alice.device("phone");
    phone.register(&ds).await.unwrap();
    let token = sign_in(&ds, &phone).await;
    ds.publish_key_packages(
        &phone.id,
        vec![Device::publishable(phone.key_package())],
        None,
    )
    .await
    .unwrap();
    let group = phone.create_group(&ds).await;

    // A stranger cannot take the device over with its own key.
    let mallory = User::new("mallory").certify(phone.id.clone(), key());
    assert_refused(
        mallory.register(&ds).await,
        "PERMISSION_DENIED",
        "user alice already has devices",
    );
    assert!(ds.authenticated_client(&meta(&token)).await.is_ok());
    assert_eq!(ds.count_key_packages(&phone.id).await.unwrap().available, 1);

    let restored = alice.certify(phone.id.clone(), key());
    restored.register(&ds).await.expect("re-keying the device");
    let record = ds
        .store
        .client(&phone.id)
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(record.signature_key, restored.signer.public());
    assert_refused(
        ds.authenticated_client(&meta(&token)).await,
        "UNAUTHENTICATED",
        "invalid or expired session token",
    );
    assert_eq!(ds.count_key_packages(&phone.id).await.unwrap().available, 0);
    assert_eq!(
        roster(&ds, &group, &[&phone.id]).await,
        vec![phone.id.clone()]
    );
    sign_in(&ds, &restored).await;
}

#[tokio::test]
async fn a_removed_device_can_never_register_again() {
    let ds = ds();
    let alice = User::new("alice");
    let phone = alice.device("phone");
    phone.register(&ds).await.unwrap();
    ds.remove_client(&phone.id, &[]).await.unwrap();
    // Neither with its key nor with a new one its user certified.
    for device in [&phone, &alice.device("phone")] {
        assert_refused(
            device.register(&ds).await,
            "PERMISSION_DENIED",
            "this client was removed",
        );
    }
    assert_eq!(ds.store.client(&phone.id).await.unwrap(), None);
}
