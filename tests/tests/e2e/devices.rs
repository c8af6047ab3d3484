//! A user's devices at the DS: registration under the user's identity key,
//! the devices list, the linking mailbox, revocations, and who may fetch a
//! group's GroupInfo. (The DS's refusals of uncertified leaves and of
//! external commits are tested with real MLS in `confide-ds`'s
//! `domain_tests`.)

use confide_client::ClientId;
use confide_core::profile::CIPHERSUITE;
use confide_proto::v1::{self, device_service_client::DeviceServiceClient};
use confide_tests::rpc::{claim_key_packages, expect_refused, raw_channel};
use confide_tests::{Member, TestApp, spawn_app};
use openmls_basic_credential::SignatureKeyPair;
use tonic::Code;
use tonic::transport::Channel;

fn id(user: &str, device: &str) -> ClientId {
    ClientId::new(user, device).expect("a valid client id")
}

fn key() -> SignatureKeyPair {
    SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a signature key")
}

/// The DeviceService on a raw channel; a member's session rides in each
/// request (`member.api().request(..)`), or none.
async fn devices(app: &TestApp) -> DeviceServiceClient<Channel> {
    DeviceServiceClient::new(raw_channel(&app.endpoint).await)
}

/// Registers `client` with `signature_key` and `certificate` (raw bytes).
async fn register(
    app: &TestApp,
    client: &ClientId,
    signature_key: &[u8],
    certificate: Vec<u8>,
) -> Result<tonic::Response<v1::RegisterClientResponse>, tonic::Status> {
    app.api()
        .await
        .auth()
        .register_client(v1::RegisterClientRequest {
            client: Some(client.into()),
            signature_public_key: signature_key.to_vec().into(),
            registration_token: String::new(),
            device_certificate: certificate.into(),
        })
        .await
}

/// The signature key the DS holds for `client`.
async fn registered_key(app: &TestApp, client: &ClientId) -> Vec<u8> {
    app.store
        .client(client)
        .await
        .expect("the store")
        .expect("a registered client")
        .signature_key
}

/// What `ListDevices` says about `user`, asked by `by`.
async fn list(app: &TestApp, by: &Member, user: &str) -> v1::ListDevicesResponse {
    devices(app)
        .await
        .list_devices(
            by.api()
                .request(v1::ListDevicesRequest { user: user.into() }),
        )
        .await
        .expect("listing devices")
        .into_inner()
}

/// The devices a list names, as `user/device`.
fn names(response: &v1::ListDevicesResponse) -> Vec<String> {
    let mut names: Vec<String> = response
        .devices
        .iter()
        .map(|d| {
            let client = d.client.as_ref().expect("a client");
            format!("{}/{}", client.user, client.device)
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registered_under_another_users_name_without_a_certificate_is_refused() {
    let app = spawn_app().await;
    let alice = app.client("alice", "phone").await;
    let bob = app.client("bob", "phone").await;
    let evil = id("alice", "evil");
    let signer = key();
    let stranger = confide_client::UserIdentity::generate().unwrap();
    let certificate = stranger.certify(&evil, signer.public()).unwrap().to_bytes();

    let refused = expect_refused(
        register(&app, &evil, signer.public(), certificate).await,
        Code::PermissionDenied,
        "a device certified by a stranger's identity",
    );
    assert!(
        refused
            .message()
            .contains("user alice already has devices: link this device"),
        "{}",
        refused.message()
    );
    let refused = expect_refused(
        register(&app, &evil, signer.public(), Vec::new()).await,
        Code::InvalidArgument,
        "a device without a certificate",
    );
    assert!(refused.message().contains("device_certificate"));

    // alice has one device, under her identity key, and a claim for her
    // hands out that device's key package alone.
    let listed = list(&app, &bob, "alice").await;
    assert_eq!(names(&listed), vec!["alice/phone"]);
    assert_eq!(&listed.identity_key[..], alice.identity_key());
    assert_eq!(
        &listed.devices[0].device_certificate[..],
        &alice.certificate().to_bytes()[..]
    );
    let claimed = claim_key_packages(bob.api(), "alice").await;
    let claimed: Vec<_> = claimed
        .iter()
        .map(|kp| kp.client.clone().expect("a client").device)
        .collect();
    assert_eq!(claimed, vec!["phone"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_is_linked_through_the_mailbox_by_an_existing_device_of_its_user() {
    let app = spawn_app().await;
    let phone = app.client("alice", "phone").await;
    let bob = app.client("bob", "phone").await;
    let laptop = id("alice", "laptop");
    let laptop_key = key();
    let link_id = vec![42u8; 16];
    let mut mailbox = devices(&app).await;

    // The new device, with no session, posts its (here unsealed) offer.
    let posted = mailbox
        .post_link_offer(v1::PostLinkOfferRequest {
            user: "alice".into(),
            link_id: link_id.clone().into(),
            sealed_offer: laptop_key.public().to_vec().into(),
        })
        .await
        .expect("posting the offer")
        .into_inner();
    assert!(posted.expires_at_unix_ms > 0);
    let take = v1::TakeLinkAnswerRequest {
        link_id: link_id.clone().into(),
    };
    let pending = mailbox.take_link_answer(take.clone()).await.unwrap();
    assert!(!pending.into_inner().answered);

    // bob's devices do not see alice's link.
    let offer = v1::TakeLinkOfferRequest {
        link_id: link_id.clone().into(),
    };
    expect_refused(
        mailbox
            .take_link_offer(bob.api().request(offer.clone()))
            .await,
        Code::NotFound,
        "bob taking alice's link offer",
    );

    // alice's phone takes it, certifies the laptop and answers.
    let sealed = mailbox
        .take_link_offer(phone.api().request(offer))
        .await
        .expect("alice's phone takes the offer")
        .into_inner()
        .sealed_offer;
    assert_eq!(&sealed[..], laptop_key.public());
    let certificate = phone
        .identity()
        .certify(&laptop, &sealed)
        .unwrap()
        .to_bytes();
    let answer = v1::PostLinkAnswerRequest {
        link_id: link_id.clone().into(),
        sealed_answer: certificate.clone().into(),
    };
    mailbox
        .post_link_answer(phone.api().request(answer.clone()))
        .await
        .expect("answering");
    let other = v1::PostLinkAnswerRequest {
        sealed_answer: b"another answer".to_vec().into(),
        ..answer
    };
    expect_refused(
        mailbox.post_link_answer(phone.api().request(other)).await,
        Code::AlreadyExists,
        "a second answer",
    );

    let answered = mailbox
        .take_link_answer(take.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(answered.answered);
    assert_eq!(&answered.sealed_answer[..], &certificate[..]);
    expect_refused(
        mailbox.take_link_answer(take).await,
        Code::NotFound,
        "an answer taken already",
    );

    register(
        &app,
        &laptop,
        laptop_key.public(),
        answered.sealed_answer.to_vec(),
    )
    .await
    .expect("the linked laptop registers");
    assert_eq!(
        names(&list(&app, &bob, "alice").await),
        vec!["alice/laptop", "alice/phone"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_listed_as_revoked_and_cannot_come_back() {
    let app = spawn_app().await;
    let phone = app.client("alice", "phone").await;
    let laptop = app.client("alice", "laptop").await;
    let laptop_id = laptop.id().clone();
    let laptop_key = registered_key(&app, &laptop_id).await;
    let remove = |revocation: Vec<u8>| {
        let request = phone.api().request(v1::RemoveClientRequest {
            client: Some((&laptop_id).into()),
            revocation: revocation.into(),
        });
        let api = phone.api().clone();
        async move { api.auth().remove_client(request).await }
    };

    // A revocation by another identity key is refused; nothing is removed.
    let stranger = confide_client::UserIdentity::generate().unwrap();
    let forged = stranger.revoke(&laptop_id, &laptop_key).unwrap().to_bytes();
    expect_refused(
        remove(forged).await,
        Code::InvalidArgument,
        "a revocation by a stranger",
    );
    assert_eq!(
        names(&list(&app, &phone, "alice").await),
        vec!["alice/laptop", "alice/phone"]
    );

    let revocation = phone
        .identity()
        .revoke(&laptop_id, &laptop_key)
        .unwrap()
        .to_bytes();
    remove(revocation.clone())
        .await
        .expect("revoking the laptop");
    let listed = list(&app, &phone, "alice").await;
    assert_eq!(names(&listed), vec!["alice/phone"]);
    assert_eq!(listed.revocations.len(), 1);
    assert_eq!(&listed.revocations[0].revocation[..], &revocation[..]);

    // Neither with its old key nor with a new one its user certifies.
    let new_key = key();
    for (signature_key, certificate) in [
        (
            laptop_key.clone(),
            phone.identity().certify(&laptop_id, &laptop_key),
        ),
        (
            new_key.public().to_vec(),
            phone.identity().certify(&laptop_id, new_key.public()),
        ),
    ] {
        let certificate = certificate.unwrap().to_bytes();
        expect_refused(
            register(&app, &laptop_id, &signature_key, certificate).await,
            Code::PermissionDenied,
            "a revoked device registering again",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_info_is_served_to_a_new_device_of_a_user_in_the_group_not_to_a_stranger() {
    let app = spawn_app().await;
    let mut phone = app.client("alice", "phone").await;
    let laptop = app.client("alice", "laptop").await;
    let carol = app.client("carol", "phone").await;
    let group = phone.create_group().await.expect("alice's group");
    let request = |member: &Member| {
        member.api().request(v1::GetGroupInfoRequest {
            group_id: group.clone().into(),
        })
    };
    let served = laptop
        .api()
        .groups()
        .get_group_info(request(&laptop))
        .await
        .expect("alice's laptop may fetch it to join")
        .into_inner();
    assert!(!served.group_info.is_empty());
    expect_refused(
        carol.api().groups().get_group_info(request(&carol)).await,
        Code::PermissionDenied,
        "a stranger fetching the GroupInfo",
    );
}
