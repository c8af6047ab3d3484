//! Ghost devices: the operator cannot add anyone to a group unseen. Every
//! member's client shows the same roster, with each member's credential,
//! key fingerprint and whether it is certified by its user. A key package
//! the DS slips in for a device its user never certified (or certified by
//! another identity key than the one pinned) is refused by the adding
//! client and never added; a ghost the DS writes into the log itself, by an
//! external commit, is reported by every member as a ghost device.

use confide_client::roster::fingerprint;
use confide_client::{ClientError, ClientId, Event, GroupMember};
use confide_proto::v1;
use confide_tests::hostile::write_external_commit;
use confide_tests::rpc::claim_key_packages;
use confide_tests::{HostileDs, Member, RawMember, spawn_app};

/// The members `member` saw added to `group`, and by whom.
fn additions(member: &Member, group: &[u8]) -> Vec<(ClientId, GroupMember)> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::MembersAdded {
                group: g,
                by,
                members,
            } if g == group => Some(members.iter().map(move |m| (by.clone(), m.clone()))),
            _ => None,
        })
        .flatten()
        .collect()
}

fn id(name: &str) -> ClientId {
    let (user, device) = name.split_once('/').expect("user/device");
    ClientId::new(user, device).expect("a valid client id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_sees_the_same_roster_with_each_members_own_key() {
    let app = spawn_app().await;
    let (group, members) = app.conversation(["alice", "bob", "carol"]).await;
    let expected: Vec<(ClientId, String)> = members
        .iter()
        .map(|m| (m.id().clone(), m.fingerprint()))
        .collect();
    for member in &members {
        let roster = member.roster(&group).expect("a member");
        assert!(roster.iter().all(|m| m.certified), "{roster:?}");
        let mut seen: Vec<(ClientId, String)> = roster
            .into_iter()
            .map(|m| (m.client, m.fingerprint))
            .collect();
        seen.sort();
        let mut expected = expected.clone();
        expected.sort();
        assert_eq!(seen, expected, "{}'s roster", member.id());
    }
}

/// A key package of `ghost` for the hostile DS to hand out among
/// `user`'s.
fn offered(ghost: &RawMember, key_package: Vec<u8>) -> v1::ClaimedKeyPackage {
    v1::ClaimedKeyPackage {
        client: Some(ghost.proto_id()),
        key_package: key_package.into(),
        last_resort: false,
    }
}

/// The devices `member` refused to add, with their keys.
fn refusals(member: &Member) -> Vec<(ClientId, String)> {
    member
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::DeviceRefused {
                client,
                fingerprint,
                ..
            } => Some((client.clone(), fingerprint.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_package_the_ds_slips_in_without_a_certificate_is_refused_and_never_added() {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let mut alice = hostile.client("alice", "phone").await;
    let mut carol = app.client("carol", "phone").await;
    let bob = app.client("bob", "phone").await;
    // The operator makes up a device under Bob's name and hands out its
    // key package beside Bob's own.
    let ghost = RawMember::unregistered(&app, "bob", "ghost").await;
    let forged = offered(&ghost, ghost.uncertified_key_package());
    hostile.rewrite_claims(move |user, mut claimed| {
        if user == "bob" {
            claimed.push(forged.clone());
        }
        claimed
    });
    let group = alice.create_group().await.expect("creating the group");
    alice
        .add_users(&group, &["carol"])
        .await
        .expect("adding carol");
    carol.expect_joined(&group).await;

    let added = alice.add_users(&group, &["bob"]).await.expect("adding bob");
    assert_eq!(added.clients, [id("bob/phone")], "only bob's real device");
    assert_eq!(
        added
            .refused
            .iter()
            .map(|g| (g.client.clone(), g.fingerprint.clone()))
            .collect::<Vec<_>>(),
        [(id("bob/ghost"), ghost.fingerprint())],
        "alice is told whom she refused"
    );
    assert!(
        added.refused[0].reason.contains("no valid certificate"),
        "{:?}",
        added.refused
    );
    alice.catch_up().await;
    assert_eq!(refusals(&alice), [(id("bob/ghost"), ghost.fingerprint())]);
    carol
        .wait_until("bob's arrival", |m| !additions(m, &group).is_empty())
        .await;
    assert_eq!(
        additions(&carol, &group),
        [(
            id("alice/phone"),
            GroupMember {
                client: id("bob/phone"),
                leaf: 2,
                fingerprint: bob.fingerprint(),
                certified: true,
            }
        )],
        "carol sees bob's own device, and no ghost"
    );
    for member in [&alice, &carol] {
        let roster = member.roster(&group).expect("a member");
        assert!(
            roster
                .iter()
                .all(|m| m.fingerprint != ghost.fingerprint() && m.certified),
            "the ghost is not in the group: {roster:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certified_by_another_identity_key_than_the_pinned_one_is_refused_and_the_change_reported()
 {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let mut alice = hostile.client("alice", "phone").await;
    let mut bob = app.client("bob", "phone").await;
    let first = alice.create_group().await.expect("creating a group");
    alice.add_users(&first, &["bob"]).await.expect("adding bob");
    bob.expect_joined(&first).await;
    let pinned = alice
        .contact("bob")
        .expect("reading the contacts")
        .expect("bob's key is pinned once alice has seen his device");
    assert_eq!(pinned.identity_key, bob.identity_key());
    let safety_number = alice.safety_number("bob", &pinned.identity_key);

    // The operator's own device under Bob's name, certified by an identity
    // key it made up, in place of Bob's real ones.
    let ghost = RawMember::unregistered(&app, "bob", "ghost").await;
    let forged = offered(&ghost, ghost.key_package(None));
    hostile.rewrite_claims(move |user, claimed| match user {
        "bob" => vec![forged.clone()],
        _ => claimed,
    });
    let second = alice.create_group().await.expect("creating a group");
    let refused = alice.add_users(&second, &["bob"]).await;
    let Err(ClientError::DevicesRefused(ghosts)) = &refused else {
        panic!("the ghost was not refused: {refused:?}");
    };
    assert_eq!(ghosts.len(), 1, "{ghosts:?}");
    assert_eq!(
        (&ghosts[0].client, &ghosts[0].fingerprint),
        (&id("bob/ghost"), &ghost.fingerprint())
    );
    assert_eq!(
        alice.members(&second).expect("a member"),
        [id("alice/phone")]
    );
    assert_eq!(
        app.commit_epochs(alice.id(), &second).await,
        Vec::<u64>::new(),
        "nothing was committed"
    );
    alice.catch_up().await;
    let changes: Vec<&Event> = alice
        .events()
        .iter()
        .filter(|e| matches!(e, Event::IdentityKeyChanged { .. }))
        .collect();
    assert_eq!(
        changes,
        [&Event::IdentityKeyChanged {
            user: "bob".into(),
            old: fingerprint(bob.identity_key()),
            new: fingerprint(ghost.certificate().identity_key()),
        }],
        "alice is told bob's identity key changed"
    );
    let contact = alice.contact("bob").expect("reading").expect("pinned");
    assert_eq!(contact.identity_key, bob.identity_key(), "still pinned");
    assert_eq!(
        contact.changed_to.as_deref(),
        Some(ghost.certificate().identity_key())
    );
    assert_ne!(
        alice.safety_number("bob", ghost.certificate().identity_key()),
        safety_number,
        "comparing the safety number of the new key with bob's shows the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_package_of_someone_other_than_the_user_asked_for_is_refused() {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let mut alice = hostile.client("alice", "phone").await;
    app.client("bob", "phone").await;
    app.client("mallory", "phone").await;
    let group = alice.create_group().await.expect("creating the group");
    let mallory = claim_key_packages(alice.api(), "mallory").await;
    hostile.rewrite_claims(move |_, _| mallory.clone());

    let refused = alice.add_users(&group, &["bob"]).await;
    assert!(
        matches!(&refused, Err(ClientError::Invalid(reason)) if reason.contains("mallory/phone")),
        "{refused:?}"
    );
    assert_eq!(
        alice.members(&group).expect("a member"),
        [id("alice/phone")]
    );
    assert_eq!(
        app.commit_epochs(alice.id(), &group).await,
        Vec::<u64>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_commit_the_operator_writes_into_the_log_is_reported_by_every_member_as_a_ghost_device()
 {
    let app = spawn_app().await;
    let (group, mut members) = app.conversation(["alice", "bob", "carol"]).await;
    let ghost = id("mallory/ghost");
    let fingerprint = write_external_commit(&app, &group, &ghost).await;

    for member in &mut members {
        member
            .wait_until("the ghost's commit", |m| {
                additions(m, &group)
                    .iter()
                    .any(|(_, added)| added.client == ghost)
            })
            .await;
        let added = additions(member, &group);
        let (by, newcomer) = added.last().expect("one addition");
        assert_eq!(by, &ghost, "the ghost added itself, for all to see");
        assert_eq!(newcomer.fingerprint, fingerprint);
        assert!(!newcomer.certified, "{newcomer:?}");
        assert!(member.roster(&group).expect("a member").contains(newcomer));
        let reported: Vec<(&ClientId, &String)> = member
            .events()
            .iter()
            .filter_map(|event| match event {
                Event::GhostDevice {
                    group: g,
                    client,
                    fingerprint,
                    ..
                } if g == &group => Some((client, fingerprint)),
                _ => None,
            })
            .collect();
        assert_eq!(
            reported,
            [(&ghost, &fingerprint)],
            "{} reports the ghost device with its key",
            member.id()
        );
    }
    let code = members[0].safety_code(&group).expect("a member");
    assert!(
        members
            .iter()
            .all(|m| m.safety_code(&group).is_ok_and(|c| c == code))
    );
}
