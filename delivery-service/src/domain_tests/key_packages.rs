//! Published key packages must carry a certificate by the uploader's user's
//! identity key.

use confide_core::certificate::leaf_capabilities;
use confide_core::profile::CIPHERSUITE;
use openmls::prelude::*;

use super::fixture::*;

/// A key package of `device` whose leaf carries no certificate.
fn uncertified(device: &Device) -> KeyPackage {
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    KeyPackage::builder()
        .leaf_node_capabilities(leaf_capabilities(false))
        .build(CIPHERSUITE, &provider, &device.signer, device.credential())
        .expect("a key package")
        .key_package()
        .clone()
}

#[tokio::test]
async fn a_key_package_whose_certificate_is_missing_or_by_another_identity_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let phone = alice.device("phone");
    phone.register(&ds).await.unwrap();
    let mallory = User::new("mallory");
    let forged = mallory.certificate(&phone.id, phone.signer.public());
    let refusals = [
        (
            uncertified(&phone),
            "its leaf's device certificate: the leaf carries no device certificate",
        ),
        (
            phone.key_package_with(&forged, false),
            "key package 1's device certificate is not by user alice's identity key",
        ),
    ];
    for (bad, reason) in refusals {
        // One bad key package among good ones: none is stored.
        let batch = vec![
            Device::publishable(phone.key_package()),
            Device::publishable(bad),
        ];
        assert_refused(
            ds.publish_key_packages(&phone.id, batch, None).await,
            "INVALID_ARGUMENT",
            reason,
        );
        assert_eq!(ds.count_key_packages(&phone.id).await.unwrap().available, 0);
    }
    let last_resort = phone.key_package_with(&forged, true);
    assert_refused(
        ds.publish_key_packages(
            &phone.id,
            Vec::new(),
            Some(Device::publishable(last_resort)),
        )
        .await,
        "INVALID_ARGUMENT",
        "last-resort key package's device certificate is not by user alice's identity key",
    );
    assert!(
        !ds.count_key_packages(&phone.id)
            .await
            .unwrap()
            .has_last_resort
    );

    let good = vec![Device::publishable(phone.key_package())];
    assert_eq!(
        ds.publish_key_packages(&phone.id, good, None)
            .await
            .unwrap(),
        1
    );
}
