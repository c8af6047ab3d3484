//! Linking a new device: the approving device checks the authentication
//! string, certifies the new device and adds it to every group of its user;
//! a wrong code or a mismatched string links nothing; a revoked device
//! leaves every group and never comes back.

use std::time::Duration;

use confide_client::{
    Client, ClientError, ClientId, DeviceStatus, Event, GroupId, StateLocation, UserIdentity,
};
use confide_tests::rpc::claim_key_packages;
use confide_tests::{HostileDs, Member, TestApp, WAIT, spawn_app};
use tonic::Code;

/// How long a new device waits for an answer that must not come.
const NO_ANSWER: Duration = Duration::from_secs(1);

/// alice's laptop, bob, and two groups both are in: bob's and alice's.
async fn alice_and_bob_in_two_groups(
    app: &TestApp,
    laptop: Member,
) -> (Member, Member, [GroupId; 2]) {
    let mut laptop = laptop;
    let mut bob = app.client("bob", "phone").await;
    let bobs = bob.create_group().await.expect("bob's group");
    bob.add_users(&bobs, &["alice"])
        .await
        .expect("adding alice");
    laptop.expect_joined(&bobs).await;
    let alices = laptop.create_group().await.expect("alice's group");
    laptop
        .add_users(&alices, &["bob"])
        .await
        .expect("adding bob");
    bob.expect_joined(&alices).await;
    (laptop, bob, [bobs, alices])
}

/// Links `alice/<device>` by `laptop`, confirming the authentication string
/// the new device shows; returns it once the laptop added it to its groups.
async fn link(app: &TestApp, laptop: &mut Member, device: &str) -> Member {
    let id = ClientId::new("alice", device).expect("an id");
    let pending = Client::start_link(app.api().await, id.clone(), &StateLocation::Memory)
        .await
        .expect("posting the offer");
    let request = laptop
        .open_link(&pending.uri())
        .await
        .expect("opening the offer");
    let shown = pending.sas().expect("the new device's SAS");
    assert_eq!(request.sas(), shown, "both devices show the same digits");
    assert_eq!(request.client, id);
    laptop
        .approve_link(&request, &shown)
        .await
        .expect("approving");
    let (linked, added) = tokio::join!(
        pending.finish("", WAIT),
        laptop.add_linked_device(&id, WAIT)
    );
    let linked = linked.expect("the new device registered");
    for group in added.expect("adding the new device") {
        let added = group.outcome.expect("added to the group");
        assert_eq!(added.map(|a| a.clients), Some(vec![id.clone()]));
    }
    Member::new(linked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_approved_by_another_of_its_user_is_added_to_every_group_and_reads_new_messages() {
    let app = spawn_app().await;
    let laptop = app.client("alice", "laptop").await;
    let (mut laptop, mut bob, [bobs, alices]) = alice_and_bob_in_two_groups(&app, laptop).await;

    let mut tablet = link(&app, &mut laptop, "tablet").await;

    tablet.expect_joined(&bobs).await;
    tablet.expect_joined(&alices).await;
    bob.catch_up().await;
    bob.send(&bobs, b"hello, all of alice")
        .await
        .expect("sending");
    laptop
        .send(&alices, b"from the laptop")
        .await
        .expect("sending");
    let bodies = |m: &Member, g: &[u8]| m.bodies(g);
    tablet.expect_messages(&bobs, 1).await;
    tablet.expect_messages(&alices, 1).await;
    assert_eq!(bodies(&tablet, &bobs), ["hello, all of alice"]);
    assert_eq!(bodies(&tablet, &alices), ["from the laptop"]);
    let alice_devices: Vec<(ClientId, DeviceStatus)> = tablet
        .devices("alice")
        .await
        .expect("listing alice's devices")
        .into_iter()
        .map(|d| (d.client, d.status))
        .collect();
    assert_eq!(
        alice_devices,
        [
            (laptop.id().clone(), DeviceStatus::Certified),
            (tablet.id().clone(), DeviceStatus::Certified)
        ]
    );
}

/// Only the laptop is a device of alice's.
async fn only_the_laptop(laptop: &Member) {
    let devices: Vec<ClientId> = laptop
        .devices("alice")
        .await
        .expect("listing alice's devices")
        .into_iter()
        .map(|d| d.client)
        .collect();
    assert_eq!(devices, [laptop.id().clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_finds_no_device_to_link_and_links_nothing() {
    let app = spawn_app().await;
    let laptop = app.client("alice", "laptop").await;
    let id = ClientId::new("alice", "tablet").expect("an id");
    let pending = Client::start_link(app.api().await, id, &StateLocation::Memory)
        .await
        .expect("posting the offer");
    let wrong = if pending.code().starts_with('A') {
        "BBBB-BBBB-BBBB"
    } else {
        "AAAA-AAAA-AAAA"
    };

    let refused = laptop
        .open_link(wrong)
        .await
        .err()
        .expect("a wrong code is refused");

    assert!(
        refused
            .to_string()
            .contains("no device is waiting to be linked with this code"),
        "{refused}"
    );
    let timed_out = pending.finish("", NO_ANSWER).await.err();
    assert!(
        matches!(timed_out, Some(ClientError::LinkTimedOut)),
        "{timed_out:?}"
    );
    only_the_laptop(&laptop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_authentication_string_certifies_nothing_and_links_nothing() {
    let app = spawn_app().await;
    let laptop = app.client("alice", "laptop").await;
    let id = ClientId::new("alice", "tablet").expect("an id");
    let pending = Client::start_link(app.api().await, id, &StateLocation::Memory)
        .await
        .expect("posting the offer");
    let request = laptop
        .open_link(&pending.code())
        .await
        .expect("opening the offer");
    let misread = if request.sas() == "000000" {
        "000001"
    } else {
        "000000"
    };

    let refused = laptop.approve_link(&request, misread).await.err();

    assert!(
        matches!(&refused, Some(ClientError::SasMismatch { entered, .. }) if entered == misread),
        "{refused:?}"
    );
    let timed_out = pending.finish("", NO_ANSWER).await.err();
    assert!(
        matches!(timed_out, Some(ClientError::LinkTimedOut)),
        "{timed_out:?}"
    );
    only_the_laptop(&laptop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_leaves_every_group_and_cannot_come_back() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = StateLocation::File(dir.path().join("laptop.db"));
    let laptop = Member::new(
        app.register("alice", "laptop", &state)
            .await
            .expect("registering the laptop"),
    );
    let (mut laptop, mut bob, [bobs, alices]) = alice_and_bob_in_two_groups(&app, laptop).await;
    let tablet = link(&app, &mut laptop, "tablet").await;
    let tablet_id = tablet.id().clone();
    // What a DS could hand out for alice later: a key package of each device.
    let claimed = claim_key_packages(bob.api(), "alice").await;
    assert_eq!(claimed.len(), 2);

    let removals = laptop
        .remove_device(&tablet_id)
        .await
        .expect("revoking the tablet");

    assert_eq!(removals.len(), 2, "{removals:?}");
    assert!(removals.iter().all(|r| r.outcome.is_ok()), "{removals:?}");
    bob.catch_up().await;
    for group in [&bobs, &alices] {
        assert!(!bob.members(group).expect("members").contains(&tablet_id));
        assert!(!laptop.members(group).expect("members").contains(&tablet_id));
    }
    // Bob is told the laptop removed the tablet, not that the tablet left.
    let removed_by_the_laptop = |event: &Event| {
        matches!(event, Event::MembersRemoved { by, members, .. }
            if by == laptop.id() && members.iter().any(|m| m.client == tablet_id))
    };
    assert!(
        bob.events().iter().any(removed_by_the_laptop)
            && !bob
                .events()
                .iter()
                .any(|e| matches!(e, Event::MembersLeft { .. })),
        "{:#?}",
        bob.events()
    );
    let listed = laptop.devices("alice").await.expect("listing");
    assert!(
        listed
            .iter()
            .any(|d| d.client == tablet_id && d.status == DeviceStatus::Revoked),
        "{listed:?}"
    );
    // Registering it again, even certified by alice's identity key, is refused.
    let identity = UserIdentity::from_secret_bytes(
        &laptop
            .identity()
            .to_secret_bytes()
            .expect("the identity key"),
    )
    .expect("the identity key");
    let again = Client::register_with(
        app.api().await,
        tablet_id.clone(),
        &StateLocation::Memory,
        "",
        identity,
    )
    .await
    .err();
    assert!(
        matches!(&again, Some(ClientError::Rpc(s)) if s.code() == Code::PermissionDenied),
        "{again:?}"
    );
    // A DS that still hands out its key package does not get it added.
    drop(laptop);
    let hostile = HostileDs::in_front_of(&app).await;
    hostile.rewrite_claims(move |_, _| claimed.clone());
    let api = confide_client::Api::connect(&hostile.endpoint)
        .await
        .expect("connecting");
    let mut laptop = Member::under_attack(Client::open(api, &state).await.expect("reopening"));
    let refused = laptop.add_users(&alices, &["alice"]).await.err();
    assert!(
        matches!(refused, Some(ClientError::NothingToAdd(_))),
        "{refused:?}"
    );
    drop(tablet);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_where_the_ds_also_proposes_its_removal_leaves_every_group_once() {
    let keys = tempfile::tempdir().expect("a temporary directory");
    let key_file = keys.path().join("external-sender.key");
    let app = confide_tests::spawn_app_with(|s| s.external_sender_key_file = Some(key_file)).await;
    let laptop = app.client("alice", "laptop").await;
    let (mut laptop, mut bob, [bobs, alices]) = alice_and_bob_in_two_groups(&app, laptop).await;
    let tablet = link(&app, &mut laptop, "tablet").await;
    let tablet_id = tablet.id().clone();

    // Deprovisioning it, the DS proposes its removal in both groups; the
    // laptop's commits take those in rather than removing it twice.
    let removals = laptop
        .remove_device(&tablet_id)
        .await
        .expect("revoking the tablet");

    assert!(removals.iter().all(|r| r.outcome.is_ok()), "{removals:?}");
    bob.catch_up().await;
    for group in [&bobs, &alices] {
        assert!(!bob.members(group).expect("members").contains(&tablet_id));
        assert!(!laptop.members(group).expect("members").contains(&tablet_id));
        assert_eq!(
            bob.epoch(group).expect("an epoch"),
            laptop.epoch(group).expect("an epoch")
        );
    }
    drop(tablet);
}
