//! External commits (RFC 9420 §12.4.3.2) and the GroupInfo they start from:
//! accepted from a member re-syncing itself and from a certified device of
//! a user already in the group, refused otherwise.

use confide_core::certificate::leaf_capabilities;
use confide_core::profile;
use openmls::prelude::*;

use super::fixture::*;
use crate::domain::GroupId;
use crate::state::Ds;

/// alice/phone's group with bob/phone in it (bob joined).
async fn alice_and_bob(ds: &Ds, alice: &User) -> (GroupId, Device, Device) {
    alice_and(ds, alice, &User::new("bob")).await
}

/// alice/phone's group with `bob`/phone in it (joined).
async fn alice_and(ds: &Ds, alice: &User, bob: &User) -> (GroupId, Device, Device) {
    let mut phone = alice.device("phone");
    let mut bob = bob.device("phone");
    phone.register(ds).await.unwrap();
    bob.register(ds).await.unwrap();
    let group = phone.create_group(ds).await;
    let add = phone.add(vec![bob.key_package()]);
    let welcome = add.welcome.clone().expect("a Welcome");
    phone.submit(ds, &group, add).await.expect("adding bob");
    bob.join(ds, &group, &welcome).await;
    (group, phone, bob)
}

/// The group as a refused commit must leave it: epoch, log and roster.
#[derive(Debug, PartialEq)]
struct Group {
    epoch: u64,
    log: usize,
    roster: Vec<crate::domain::ClientId>,
}

async fn state(ds: &Ds, group: &GroupId, reader: &Device, clients: &[&Device]) -> Group {
    let ids: Vec<_> = clients.iter().map(|d| &d.id).collect();
    Group {
        epoch: epoch(ds, group).await,
        log: log_len(ds, &reader.id, group).await,
        roster: roster(ds, group, &ids).await,
    }
}

#[tokio::test]
async fn a_member_that_lost_its_group_state_rejoins_by_external_commit_and_keeps_its_membership() {
    let ds = ds();
    let (group, mut alice, mut bob) = alice_and_bob(&ds, &User::new("alice")).await;
    let membership = ds.store.membership(&bob.id, &group).await.unwrap();
    // bob's state is gone; with his key he rejoins, removing his old leaf.
    bob.group = None;
    let resync = bob.external_commit(&ds, &group, bob.external_leaf()).await;
    let accepted = bob
        .submit_external(&ds, &group, resync)
        .await
        .expect("the DS accepts the resync");
    assert_eq!(accepted.epoch, 2);
    assert_eq!(
        roster(&ds, &group, &[&alice.id, &bob.id]).await,
        vec![alice.id.clone(), bob.id.clone()]
    );
    assert_eq!(
        ds.store.membership(&bob.id, &group).await.unwrap(),
        membership
    );
    // alice follows the log, and bob can commit again.
    let log = ds.read_group(&alice.id, &group, 0, 100).await.unwrap();
    alice.process(&log.last().expect("the resync").message);
    let update = bob.self_update(bob.external_leaf());
    bob.submit(&ds, &group, update)
        .await
        .expect("bob commits after his resync");
}

#[tokio::test]
async fn a_new_certified_device_of_a_user_in_the_group_joins_by_external_commit() {
    let ds = ds();
    let alice = User::new("alice");
    let (group, phone, bob) = alice_and_bob(&ds, &alice).await;
    let mut laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    let join = laptop
        .external_commit(&ds, &group, laptop.external_leaf())
        .await;
    let accepted = laptop
        .submit_external(&ds, &group, join)
        .await
        .expect("the DS accepts alice's new device");
    assert_eq!(
        roster(&ds, &group, &[&phone.id, &bob.id, &laptop.id]).await,
        vec![phone.id.clone(), bob.id.clone(), laptop.id.clone()]
    );
    let membership = ds.store.membership(&laptop.id, &group).await.unwrap();
    assert_eq!(membership.expect("a membership").joined_seq, accepted.seq);
    assert_eq!(
        ds.store.read_inbox(&laptop.id, 0, 10).await.unwrap(),
        vec![]
    );
    // It sees what comes after its own commit.
    let mut laptop = laptop;
    let update = laptop.self_update(laptop.external_leaf());
    let next = laptop.submit(&ds, &group, update).await.unwrap();
    let seen = ds.read_group(&laptop.id, &group, 0, 100).await.unwrap();
    assert_eq!(
        seen.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![next.seq]
    );
}

#[tokio::test]
async fn a_strangers_external_commit_and_group_info_request_are_refused() {
    let ds = ds();
    let (group, alice, bob) = alice_and_bob(&ds, &User::new("alice")).await;
    let mut carol = User::new("carol").device("phone");
    carol.register(&ds).await.unwrap();
    assert_refused(
        ds.group_info(&carol.id, &group).await,
        "PERMISSION_DENIED",
        "not a member of this group",
    );
    // The same answer for a group that does not exist.
    let nowhere = GroupId::new(b"nowhere".to_vec()).unwrap();
    assert_refused(
        ds.group_info(&carol.id, &nowhere).await,
        "PERMISSION_DENIED",
        "not a member of this group",
    );
    // With a GroupInfo leaked to her, carol's external commit is refused.
    let info = ds.group_info(&alice.id, &group).await.unwrap();
    let before = state(&ds, &group, &alice, &[&alice, &bob, &carol]).await;
    let join = carol.external_commit_from(&info, carol.external_leaf());
    assert_refused(
        carol.submit_external(&ds, &group, join).await,
        "PERMISSION_DENIED",
        "not a member of this group",
    );
    assert_eq!(
        state(&ds, &group, &alice, &[&alice, &bob, &carol]).await,
        before
    );
}

#[tokio::test]
async fn an_external_commit_bringing_in_another_client_than_the_caller_is_refused() {
    let ds = ds();
    let (group, alice, bob) = alice_and_bob(&ds, &User::new("alice")).await;
    let mut carol = User::new("carol").device("phone");
    carol.register(&ds).await.unwrap();
    let info = ds.group_info(&bob.id, &group).await.unwrap();
    let join = carol.external_commit_from(&info, carol.external_leaf());
    let before = state(&ds, &group, &alice, &[&alice, &bob, &carol]).await;
    // bob, a member, submits carol's join.
    assert_refused(
        ds.submit_commit(&bob.id, &group, join.commit, None, join.group_info)
            .await,
        "PERMISSION_DENIED",
        "an external commit may bring in only the caller's own device, not carol/phone",
    );
    assert_eq!(
        state(&ds, &group, &alice, &[&alice, &bob, &carol]).await,
        before
    );
}

#[tokio::test]
async fn an_external_commit_removing_another_members_leaf_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let (group, phone, bob) = alice_and_bob(&ds, &alice).await;
    // alice/laptop shares bob's signature key, so openmls's external commit
    // removes bob's leaf as if it were the laptop's own.
    let bob_key = serde_json::from_slice(&serde_json::to_vec(&bob.signer).unwrap()).unwrap();
    let mut laptop = alice.certify(id("alice", "laptop"), bob_key);
    laptop.register(&ds).await.unwrap();
    let before = state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await;
    let join = laptop
        .external_commit(&ds, &group, laptop.external_leaf())
        .await;
    assert_refused(
        laptop.submit_external(&ds, &group, join).await,
        "PERMISSION_DENIED",
        "an external commit may remove only the committer's own old leaf, not bob/phone's",
    );
    assert_eq!(
        state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await,
        before
    );
}

#[tokio::test]
async fn an_external_commit_by_a_member_that_keeps_its_old_leaf_is_refused() {
    let ds = ds();
    let bob_user = User::new("bob");
    let (group, alice, bob) = alice_and(&ds, &User::new("alice"), &bob_user).await;
    let before = state(&ds, &group, &alice, &[&alice, &bob]).await;
    // bob restored with a new key: openmls's external commit then leaves
    // his old leaf (the old key's) in the group.
    let mut rekeyed = bob_user.device("phone");
    rekeyed.register(&ds).await.expect("re-keying bob");
    let resync = rekeyed
        .external_commit(&ds, &group, rekeyed.external_leaf())
        .await;
    assert_refused(
        rekeyed.submit_external(&ds, &group, resync).await,
        "FAILED_PRECONDITION",
        "bob/phone already has a leaf in the group: its external commit must remove it",
    );
    assert_eq!(state(&ds, &group, &alice, &[&alice, &bob]).await, before);
}

#[tokio::test]
async fn an_external_commit_whose_leaf_is_not_certified_by_its_users_identity_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let (group, phone, bob) = alice_and_bob(&ds, &alice).await;
    let mut laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    let forged = User::new("mallory").certificate(&laptop.id, laptop.signer.public());
    let refusals = [
        (
            profile::external_join_leaf(&forged),
            "alice/laptop's leaf is not certified by user alice's identity key",
        ),
        (
            LeafNodeParameters::builder()
                .with_capabilities(leaf_capabilities(false))
                .build(),
            "alice/laptop's leaf carries no valid device certificate",
        ),
    ];
    for (leaf, reason) in refusals {
        let before = state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await;
        let join = laptop.external_commit(&ds, &group, leaf).await;
        assert_refused(
            laptop.submit_external(&ds, &group, join).await,
            "FAILED_PRECONDITION",
            reason,
        );
        assert_eq!(
            state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await,
            before
        );
    }
}

#[tokio::test]
async fn an_external_commit_with_a_welcome_is_refused() {
    let ds = ds();
    let alice = User::new("alice");
    let (group, phone, bob) = alice_and_bob(&ds, &alice).await;
    let mut laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    let join = laptop
        .external_commit(&ds, &group, laptop.external_leaf())
        .await;
    let before = state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await;
    assert_refused(
        ds.submit_commit(
            &laptop.id,
            &group,
            join.commit,
            Some(b"a welcome".to_vec().into()),
            join.group_info,
        )
        .await,
        "INVALID_ARGUMENT",
        "the commit adds nobody",
    );
    assert_eq!(
        state(&ds, &group, &phone, &[&phone, &bob, &laptop]).await,
        before
    );
}

#[tokio::test]
async fn two_external_commits_racing_for_one_epoch_one_is_accepted_and_the_other_gets_wrong_epoch()
{
    let ds = ds();
    let alice = User::new("alice");
    let (group, _phone, mut bob) = alice_and_bob(&ds, &alice).await;
    let mut laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    bob.group = None;
    let resync = bob.external_commit(&ds, &group, bob.external_leaf()).await;
    let join = laptop
        .external_commit(&ds, &group, laptop.external_leaf())
        .await;
    bob.submit_external(&ds, &group, resync)
        .await
        .expect("the first is accepted");
    match laptop.submit_external(&ds, &group, join).await {
        Err(crate::error::ApiError::WrongEpoch { current, .. }) => assert_eq!(current, 2),
        other => panic!("expected WRONG_EPOCH, got {other:?}"),
    }
    // The loser fetches the new GroupInfo and joins.
    let join = laptop
        .external_commit(&ds, &group, laptop.external_leaf())
        .await;
    laptop
        .submit_external(&ds, &group, join)
        .await
        .expect("the retry is accepted");
}

#[tokio::test]
async fn the_group_info_is_served_to_the_devices_of_users_in_the_group() {
    let ds = ds();
    let alice = User::new("alice");
    let (group, phone, _bob) = alice_and_bob(&ds, &alice).await;
    let laptop = alice.device("laptop");
    laptop.register(&ds).await.unwrap();
    let served = ds.group_info(&laptop.id, &group).await.expect("served");
    let members = ds.group_info(&phone.id, &group).await.unwrap();
    assert_eq!(served.group_info, members.group_info);
    assert_eq!(served.epoch, 1);
}
