//! Session revocation and deprovisioning: a lost device loses its session at
//! once, can never come back under its name, and leaves every group through
//! a DS-signed Remove proposal that the remaining members commit.

use confide_client::ClientId;
use confide_proto::v1;
use confide_tests::rpc::{expect_refused, with_authorization};
use confide_tests::{Member, TestApp, spawn_app, spawn_app_with};
use tempfile::TempDir;
use tonic::Code;

async fn remove(
    by: &Member,
    target: &ClientId,
) -> Result<tonic::Response<v1::RemoveClientResponse>, tonic::Status> {
    let request = by.api().request(v1::RemoveClientRequest {
        client: Some(target.into()),
        ..Default::default()
    });
    by.api().auth().remove_client(request).await
}

/// A DS with an external sender key, the way an organisation runs it.
async fn organisation_app(keys: &TempDir) -> TestApp {
    let key_file = keys.path().join("external-sender.key");
    spawn_app_with(|s| {
        s.external_sender_key_file = Some(key_file);
        s.admin_token = Some("operator secret".into());
    })
    .await
}

/// Asserts the client library reports the DS refused the call with `code`.
#[track_caller]
fn expect_code(error: &confide_client::ClientError, code: Code) {
    assert!(
        matches!(error, confide_client::ClientError::Rpc(s) if s.code() == code),
        "expected {code:?}: {error}"
    );
}

fn is_member(member: &Member, group: &[u8], who: &ClientId) -> bool {
    member
        .members(group)
        .map(|members| members.contains(who))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovisioned_device_loses_its_session_and_leaves_every_group() {
    let keys = TempDir::new().expect("a temporary directory");
    let app = organisation_app(&keys).await;
    let mut laptop = app.client("alice", "laptop").await;
    let mut phone = app.client("alice", "phone").await;
    let mut bob = app.client("bob", "phone").await;
    let mut carol = app.client("carol", "phone").await;
    let laptop_id = laptop.id().clone();

    // Both of alice's devices are in bob's group; the laptop is in carol's.
    let bobs = bob.create_group().await.expect("bob's group");
    bob.add_users(&bobs, &["alice"])
        .await
        .expect("adding alice");
    laptop.expect_joined(&bobs).await;
    phone.expect_joined(&bobs).await;
    let carols = carol.create_group().await.expect("carol's group");
    carol
        .add_users(&carols, &["alice"])
        .await
        .expect("adding alice");
    laptop.expect_joined(&carols).await;
    phone.expect_joined(&carols).await;

    // The phone deprovisions the lost laptop.
    let removal = remove(&phone, &laptop_id)
        .await
        .expect("alice's phone may remove alice's laptop")
        .into_inner();
    assert_eq!(removal.removal_proposed_in, 2);
    assert_eq!(removal.not_removable_in, 0);

    // The laptop's session is gone, and it cannot come back.
    let status = laptop
        .send(&bobs, b"from a stolen laptop")
        .await
        .expect_err("the laptop's session was revoked");
    expect_code(&status, Code::Unauthenticated);
    let again = confide_client::Client::register(
        app.api().await,
        laptop_id.clone(),
        &confide_client::StateLocation::Memory,
        "",
    )
    .await
    .err()
    .expect("a removed device cannot register again");
    expect_code(&again, Code::PermissionDenied);

    // Every remaining member's client commits the DS's proposal: the laptop
    // leaves both groups, in every member's view.
    for (member, group) in [
        (&mut bob, &bobs),
        (&mut phone, &bobs),
        (&mut carol, &carols),
    ] {
        member
            .wait_until("the laptop to leave the group", |m| {
                !is_member(m, group, &laptop_id)
            })
            .await;
    }
    let log = app.group_log(bob.id(), &bobs).await;
    assert!(
        log.iter()
            .any(|e| e.kind == confide_ds::domain::EntryKind::Proposal),
        "the DS's Remove proposal is in the group's log"
    );

    // The group goes on without it.
    bob.send(&bobs, b"after the laptop left")
        .await
        .expect("sending");
    let received = phone.expect_messages(&bobs, 1).await;
    assert_eq!(received[0].body, b"after the laptop left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_same_user_or_the_operator_may_deprovision_a_device() {
    let keys = TempDir::new().expect("a temporary directory");
    let app = organisation_app(&keys).await;
    let laptop = app.client("alice", "laptop").await;
    let bob = app.client("bob", "phone").await;
    let laptop_id = laptop.id().clone();
    let tablet = ClientId::new("alice", "tablet").expect("a valid id");

    // Bob may not, and gets the same answer whether the device exists or not.
    let existing = expect_refused(
        remove(&bob, &laptop_id).await,
        Code::PermissionDenied,
        "bob removing alice's laptop",
    );
    let missing = expect_refused(
        remove(&bob, &tablet).await,
        Code::PermissionDenied,
        "bob removing a device alice does not have",
    );
    assert_eq!(existing.message(), missing.message());

    // The operator, with the admin token and no session, may; a wrong token
    // is refused.
    let auth = app.api().await.auth();
    let as_operator = |token: &'static str, target: &ClientId| {
        let mut request = with_authorization(
            v1::RemoveClientRequest {
                client: Some(target.into()),
                ..Default::default()
            },
            None,
        );
        request.metadata_mut().insert(
            confide_proto::ADMIN_TOKEN_HEADER,
            token.parse().expect("an ASCII token"),
        );
        let mut auth = auth.clone();
        async move { auth.remove_client(request).await }
    };
    expect_refused(
        as_operator("guessed", &laptop_id).await,
        Code::PermissionDenied,
        "a wrong admin token",
    );
    expect_refused(
        as_operator("operator secret", &tablet).await,
        Code::NotFound,
        "the operator removing an unknown device",
    );
    as_operator("operator secret", &laptop_id)
        .await
        .expect("the operator removes alice's laptop");
    let status = laptop
        .api()
        .key_packages()
        .count_key_packages(laptop.api().request(v1::CountKeyPackagesRequest {}))
        .await
        .expect_err("the laptop's session ended");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_is_refused_from_then_on() {
    let app = spawn_app().await;
    let alice = app.client("alice", "phone").await;
    let count = || {
        let mut key_packages = alice.api().key_packages();
        let request = alice.api().request(v1::CountKeyPackagesRequest {});
        async move { key_packages.count_key_packages(request).await }
    };
    count().await.expect("the session works");
    alice
        .api()
        .auth()
        .revoke_session(alice.api().request(v1::RevokeSessionRequest {}))
        .await
        .expect("revoking the session");
    let status = count().await.expect_err("a revoked session");
    assert_eq!(status.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_external_sender_deprovisioning_revokes_and_reports_the_groups_left() {
    let app = spawn_app().await;
    let (group, [alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let phone = app.client("bob", "laptop").await;
    let removal = remove(&phone, bob.id())
        .await
        .expect("bob's laptop removes bob's phone")
        .into_inner();
    assert_eq!(removal.removal_proposed_in, 0);
    assert_eq!(removal.not_removable_in, 1);
    let status = bob
        .send(&group, b"hello")
        .await
        .expect_err("the removed phone's session ended");
    expect_code(&status, Code::Unauthenticated);
    assert!(
        is_member(&alice, &group, bob.id()),
        "a member must remove it"
    );
}
