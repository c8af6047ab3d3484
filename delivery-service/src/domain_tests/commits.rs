//! Every leaf a member's commit brings in (Adds, its own new leaf, Update
//! proposals) and a new group's creator must be a registered device
//! certified by its user's identity key.

use confide_core::certificate::leaf_capabilities;
use confide_core::profile::{self, CIPHERSUITE};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;

use super::fixture::*;
use crate::domain::GroupId;
use crate::state::Ds;

/// alice/phone's group with bob/phone in it (bob joined), both certified.
async fn alice_and_bob(ds: &Ds) -> (GroupId, Device, Device) {
    let mut alice = User::new("alice").device("phone");
    let mut bob = User::new("bob").device("phone");
    alice.register(ds).await.unwrap();
    bob.register(ds).await.unwrap();
    let group = alice.create_group(ds).await;
    let add = alice.add(vec![bob.key_package()]);
    let welcome = add.welcome.clone().expect("a Welcome");
    alice.submit(ds, &group, add).await.expect("adding bob");
    bob.join(ds, &group, &welcome).await;
    (group, alice, bob)
}

/// What a refused commit must leave as it was.
struct Unchanged {
    epoch: u64,
    log: usize,
}

async fn snapshot(ds: &Ds, reader: &Device, group: &GroupId) -> Unchanged {
    Unchanged {
        epoch: epoch(ds, group).await,
        log: log_len(ds, &reader.id, group).await,
    }
}

async fn assert_unchanged(ds: &Ds, reader: &Device, group: &GroupId, before: Unchanged) {
    assert_eq!(epoch(ds, group).await, before.epoch, "the epoch moved");
    assert_eq!(
        log_len(ds, &reader.id, group).await,
        before.log,
        "the log grew"
    );
}

#[tokio::test]
async fn adding_a_device_certified_by_its_users_identity_key_puts_it_on_the_roster() {
    let ds = ds();
    let (group, alice, bob) = alice_and_bob(&ds).await;
    assert_eq!(
        roster(&ds, &group, &[&alice.id, &bob.id]).await,
        vec![alice.id.clone(), bob.id.clone()]
    );
}

#[tokio::test]
async fn adding_a_device_whose_key_package_is_not_certified_by_its_users_identity_is_refused() {
    let ds = ds();
    let mut alice = User::new("alice").device("phone");
    alice.register(&ds).await.unwrap();
    let bob_user = User::new("bob");
    let bob = bob_user.device("phone");
    bob.register(&ds).await.unwrap();
    let group = alice.create_group(&ds).await;
    let mallory = User::new("mallory");
    let uncertified_leaf = {
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        KeyPackage::builder()
            .leaf_node_capabilities(leaf_capabilities(false))
            .build(CIPHERSUITE, &provider, &bob.signer, bob.credential())
            .unwrap()
            .key_package()
            .clone()
    };
    let refusals = [
        (
            bob.key_package_with(&mallory.certificate(&bob.id, bob.signer.public()), false),
            "bob/phone's leaf is not certified by user bob's identity key",
        ),
        (
            uncertified_leaf,
            "bob/phone's leaf carries no valid device certificate",
        ),
    ];
    for (key_package, reason) in refusals {
        let before = snapshot(&ds, &alice, &group).await;
        let add = alice.add(vec![key_package]);
        assert_refused(
            alice.submit(&ds, &group, add).await,
            "FAILED_PRECONDITION",
            reason,
        );
        assert_unchanged(&ds, &alice, &group, before).await;
        assert_eq!(roster(&ds, &group, &[&bob.id]).await, vec![]);
        assert_eq!(ds.store.read_inbox(&bob.id, 0, 10).await.unwrap(), vec![]);
    }
}

#[tokio::test]
async fn adding_a_removed_or_unregistered_device_is_refused() {
    let ds = ds();
    let mut alice = User::new("alice").device("phone");
    alice.register(&ds).await.unwrap();
    let bob_user = User::new("bob");
    let bob = bob_user.device("phone");
    bob.register(&ds).await.unwrap();
    let group = alice.create_group(&ds).await;
    let key_package = bob.key_package();
    ds.remove_client(&bob.id, &[]).await.unwrap();
    let never_registered = bob_user.device("tablet");
    for (key_package, client) in [
        (key_package, &bob.id),
        (never_registered.key_package(), &never_registered.id),
    ] {
        let before = snapshot(&ds, &alice, &group).await;
        let add = alice.add(vec![key_package]);
        assert_refused(
            alice.submit(&ds, &group, add).await,
            "FAILED_PRECONDITION",
            &format!("{client} is not a registered device with the signature key of its leaf"),
        );
        assert_unchanged(&ds, &alice, &group, before).await;
    }
}

#[tokio::test]
async fn a_commit_whose_new_leaf_drops_or_forges_its_certificate_is_refused() {
    let ds = ds();
    let (group, mut alice, _bob) = alice_and_bob(&ds).await;
    let mallory = User::new("mallory");
    let forged = mallory.certificate(&alice.id, alice.signer.public());
    let refusals = [
        (
            LeafNodeParameters::builder()
                .with_capabilities(leaf_capabilities(false))
                .with_extensions(Extensions::empty())
                .build(),
            "alice/phone's leaf carries no valid device certificate",
        ),
        (
            profile::external_join_leaf(&forged),
            "alice/phone's leaf is not certified by user alice's identity key",
        ),
    ];
    for (leaf, reason) in refusals {
        let before = snapshot(&ds, &alice, &group).await;
        let update = alice.self_update(leaf);
        assert_refused(
            alice.submit(&ds, &group, update).await,
            "FAILED_PRECONDITION",
            reason,
        );
        assert_unchanged(&ds, &alice, &group, before).await;
    }
    let update = alice.self_update(alice.external_leaf());
    alice
        .submit(&ds, &group, update)
        .await
        .expect("a certified self-update");
}

#[tokio::test]
async fn committing_an_update_proposal_with_an_uncertified_leaf_is_refused_naming_its_sender() {
    let ds = ds();
    let (group, mut alice, mut bob) = alice_and_bob(&ds).await;
    let mallory = User::new("mallory");
    let forged = mallory.certificate(&bob.id, bob.signer.public());
    let proposal = bob.propose_update(profile::external_join_leaf(&forged));
    ds.submit_proposal(&bob.id, &group, proposal.clone())
        .await
        .expect("the DS queues the proposal");
    alice.process(&proposal);
    let before = snapshot(&ds, &alice, &group).await;
    let commit = alice.stage(|builder| builder.consume_proposal_store(true));
    assert_refused(
        alice.submit(&ds, &group, commit).await,
        "FAILED_PRECONDITION",
        "bob/phone's leaf is not certified by user bob's identity key",
    );
    assert_unchanged(&ds, &alice, &group, before).await;
}

#[tokio::test]
async fn a_group_whose_creator_is_not_certified_is_not_created() {
    let ds = ds();
    let alice_user = User::new("alice");
    let alice = alice_user.device("phone");
    alice.register(&ds).await.unwrap();
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(profile::WIRE_FORMAT_POLICY)
        .build();
    let group = MlsGroup::new(&provider, &alice.signer, &config, alice.credential()).unwrap();
    let info = group
        .export_group_info(provider.crypto(), &alice.signer, false)
        .unwrap()
        .tls_serialize_detached()
        .unwrap();
    let tree = group
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap();
    assert_refused(
        ds.create_group(&alice.id, info.into(), tree.into()).await,
        "FAILED_PRECONDITION",
        "alice/phone's leaf carries no valid device certificate",
    );
    let group_id = GroupId::new(group.group_id().as_slice().to_vec()).unwrap();
    assert_eq!(ds.store.group_info(&group_id).await.unwrap(), None);
}

#[tokio::test]
async fn an_add_proposed_by_the_ds_external_sender_is_refused() {
    let ds = ds();
    let (group, alice, _bob) = alice_and_bob(&ds).await;
    let carol = User::new("carol").device("phone");
    carol.register(&ds).await.unwrap();
    let key = ds.external_sender.as_ref().expect("an external sender");
    let mls_group = alice.group.as_ref().unwrap();
    let proposal = ExternalProposal::new_add::<openmls_rust_crypto::OpenMlsRustCrypto>(
        carol.key_package(),
        mls_group.group_id().clone(),
        mls_group.epoch(),
        key.signer(),
        SenderExtensionIndex::new(0),
    )
    .unwrap()
    .tls_serialize_detached()
    .unwrap();
    let before = snapshot(&ds, &alice, &group).await;
    assert_refused(
        ds.submit_proposal(&alice.id, &group, proposal.into()).await,
        "FAILED_PRECONDITION",
        "only group members may send handshake messages",
    );
    assert_unchanged(&ds, &alice, &group, before).await;
}
