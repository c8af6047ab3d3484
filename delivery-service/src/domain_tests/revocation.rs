//! Removing a device with its user's revocation.

use super::fixture::*;

#[tokio::test]
async fn a_revoked_device_is_listed_as_revoked_and_can_never_register_again() {
    let ds = ds();
    let alice = User::new("alice");
    let (phone, laptop) = (alice.device("phone"), alice.device("laptop"));
    phone.register(&ds).await.unwrap();
    laptop.register(&ds).await.unwrap();
    let revocation = alice.revoke(&laptop);
    ds.remove_client(&laptop.id, &revocation)
        .await
        .expect("revoking the laptop");

    let devices = ds.list_devices("alice").await.unwrap();
    let listed: Vec<_> = devices.devices.iter().map(|d| d.id.clone()).collect();
    assert_eq!(listed, vec![phone.id.clone()]);
    assert_eq!(devices.revocations, vec![(laptop.id.clone(), revocation)]);
    for device in [&laptop, &alice.device("laptop")] {
        assert_refused(
            device.register(&ds).await,
            "PERMISSION_DENIED",
            "this client was removed",
        );
    }
}

#[tokio::test]
async fn a_device_removed_before_can_be_revoked_after() {
    let ds = ds();
    let alice = User::new("alice");
    let laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    ds.remove_client(&laptop.id, &[]).await.unwrap();
    let revocation = alice.revoke(&laptop);
    ds.remove_client(&laptop.id, &revocation).await.unwrap();
    let devices = ds.list_devices("alice").await.unwrap();
    assert_eq!(devices.revocations, vec![(laptop.id, revocation)]);
}

#[tokio::test]
async fn a_revocation_that_does_not_verify_is_refused_and_removes_nothing() {
    let ds = ds();
    let alice = User::new("alice");
    let (phone, laptop) = (alice.device("phone"), alice.device("laptop"));
    phone.register(&ds).await.unwrap();
    laptop.register(&ds).await.unwrap();
    let refusals = [
        (
            User::new("mallory").revoke(&laptop),
            "revocation: it is not signed by user alice's identity key",
        ),
        (
            alice.revoke(&alice.certify(laptop.id.clone(), key())),
            "revocation: it revokes another signature key than alice/laptop's",
        ),
        // phone's revocation presented for the laptop: it names the phone.
        (
            alice.revoke(&phone),
            "revocation: it revokes another signature key",
        ),
        (
            vec![0, 32, 1, 2],
            "revocation: a revocation is 4 bytes, too short",
        ),
    ];
    for (revocation, reason) in refusals {
        assert_refused(
            ds.remove_client(&laptop.id, &revocation).await,
            "INVALID_ARGUMENT",
            reason,
        );
        assert!(ds.store.client(&laptop.id).await.unwrap().is_some());
        assert!(
            ds.list_devices("alice")
                .await
                .unwrap()
                .revocations
                .is_empty()
        );
    }
}
