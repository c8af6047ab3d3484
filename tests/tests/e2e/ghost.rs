//! Ghost members: the operator cannot add anyone to a group unseen. Every
//! member's client shows the same roster, with each member's credential and
//! key fingerprint, and reports every newcomer, whether a member added it
//! with a key package the DS substituted or the DS wrote an external commit
//! into the log itself.

use confide_client::{ClientError, ClientId, Event, GroupMember};
use confide_ds::mls::validate_key_package;
use confide_tests::hostile::write_external_commit;
use confide_tests::rpc::claim_key_packages;
use confide_tests::{HostileDs, Member, spawn_app};

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
        let mut seen: Vec<(ClientId, String)> = member
            .roster(&group)
            .expect("a member")
            .into_iter()
            .map(|m| (m.client, m.fingerprint))
            .collect();
        seen.sort();
        let mut expected = expected.clone();
        expected.sort();
        assert_eq!(seen, expected, "{}'s roster", member.id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_package_the_ds_substitutes_shows_up_under_its_own_name_and_key() {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let mut alice = hostile.client("alice", "phone").await;
    let mut carol = app.client("carol", "phone").await;
    let bob = app.client("bob", "phone").await;
    // The operator registers a device under Bob's name and hands out its
    // key package in place of Bob's own.
    let ghost = app.client("bob", "ghost").await;
    hostile.rewrite_claims(|user, claimed| {
        claimed
            .into_iter()
            .filter(|c| {
                user != "bob"
                    || validate_key_package(&c.key_package, &Default::default())
                        .is_ok_and(|kp| kp.client == id("bob/ghost"))
            })
            .collect()
    });
    let group = alice.create_group().await.expect("creating the group");
    alice
        .add_users(&group, &["carol"])
        .await
        .expect("adding carol");
    carol.expect_joined(&group).await;

    let added = alice.add_users(&group, &["bob"]).await.expect("adding bob");
    assert_eq!(
        added.clients,
        [id("bob/ghost")],
        "alice is told whom she added"
    );
    carol
        .wait_until("bob's arrival", |m| !additions(m, &group).is_empty())
        .await;
    assert_eq!(
        additions(&carol, &group),
        [(
            id("alice/phone"),
            GroupMember {
                client: id("bob/ghost"),
                leaf: 2,
                fingerprint: ghost.fingerprint(),
            }
        )],
        "carol sees the ghost device and its key"
    );
    for member in [&alice, &carol] {
        let roster = member.roster(&group).expect("a member");
        assert!(
            roster.iter().all(|m| m.fingerprint != bob.fingerprint()),
            "bob's real key is not in the group: {roster:?}"
        );
    }
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
async fn an_external_commit_the_operator_writes_into_the_log_is_reported_by_every_member() {
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
        assert!(member.roster(&group).expect("a member").contains(newcomer));
    }
    let code = members[0].safety_code(&group).expect("a member");
    assert!(
        members
            .iter()
            .all(|m| m.safety_code(&group).is_ok_and(|c| c == code))
    );
}
