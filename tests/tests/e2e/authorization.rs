//! Only the right client: every RPC but registration and health needs a
//! session, and a session reaches only its own client's groups and key
//! packages.

use confide_client::{Client, ClientError, ClientId, StateLocation};
use confide_ds::mls::CIPHERSUITE;
use confide_proto::v1;
use confide_tests::rpc::{
    challenge_for, expect_refused, group_stream, inbox_stream, next_envelope, subscribe,
    with_authorization,
};
use confide_tests::{RawMember, spawn_app, spawn_app_with};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_valid_session_token_are_unauthenticated() {
    let app = spawn_app().await;
    let (group, [mut alice, _bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"hello").await.expect("sending");
    let log = app.group_log(alice.id(), &group).await;
    let commit = log[0].message.clone();
    let message = log[1].message.clone();
    let api = app.api().await;

    for token in [
        None,
        Some("Bearer not-a-session-token"),
        Some("Bearer "),
        Some("Basic YWxpY2U6aHVudGVyMg=="),
    ] {
        let refused = |what: &str| format!("{what} with authorization {token:?}");
        let unauthenticated = Code::Unauthenticated;
        let delivery = api.delivery();
        expect_refused(
            delivery
                .clone()
                .subscribe(with_authorization(v1::SubscribeRequest {}, token))
                .await
                .map(|_| tonic::Response::new(())),
            unauthenticated,
            &refused("Subscribe"),
        );
        expect_refused(
            delivery
                .clone()
                .fetch(with_authorization(
                    v1::FetchRequest {
                        stream: group_stream(&group),
                        after_seq: 0,
                        limit: 0,
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("Fetch"),
        );
        expect_refused(
            delivery
                .clone()
                .ack(with_authorization(
                    v1::AckRequest {
                        stream: inbox_stream(),
                        seq: 1,
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("Ack"),
        );
        let groups = api.groups();
        expect_refused(
            groups
                .clone()
                .send_message(with_authorization(
                    v1::SendMessageRequest {
                        group_id: group.clone().into(),
                        message_id: b"id".to_vec().into(),
                        message: message.clone(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("SendMessage"),
        );
        expect_refused(
            groups
                .clone()
                .submit_commit(with_authorization(
                    v1::SubmitCommitRequest {
                        group_id: group.clone().into(),
                        commit: commit.clone(),
                        welcome: Default::default(),
                        group_info: Default::default(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("SubmitCommit"),
        );
        expect_refused(
            groups
                .clone()
                .submit_proposal(with_authorization(
                    v1::SubmitProposalRequest {
                        group_id: group.clone().into(),
                        proposal: commit.clone(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("SubmitProposal"),
        );
        expect_refused(
            groups
                .clone()
                .create_group(with_authorization(
                    v1::CreateGroupRequest {
                        group_info: b"group info".to_vec().into(),
                        ratchet_tree: b"tree".to_vec().into(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("CreateGroup"),
        );
        expect_refused(
            groups
                .clone()
                .get_group_info(with_authorization(
                    v1::GetGroupInfoRequest {
                        group_id: group.clone().into(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("GetGroupInfo"),
        );
        let key_packages = api.key_packages();
        expect_refused(
            key_packages
                .clone()
                .claim_key_packages(with_authorization(
                    v1::ClaimKeyPackagesRequest { user: "bob".into() },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("ClaimKeyPackages"),
        );
        expect_refused(
            key_packages
                .clone()
                .publish_key_packages(with_authorization(
                    v1::PublishKeyPackagesRequest {
                        key_packages: vec![b"kp".to_vec().into()],
                        last_resort_key_package: Default::default(),
                    },
                    token,
                ))
                .await,
            unauthenticated,
            &refused("PublishKeyPackages"),
        );
        expect_refused(
            key_packages
                .clone()
                .count_key_packages(with_authorization(v1::CountKeyPackagesRequest {}, token))
                .await,
            unauthenticated,
            &refused("CountKeyPackages"),
        );
    }

    // Health needs no session.
    let channel = tonic::transport::Endpoint::from_shared(app.endpoint.clone())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("connecting");
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers without a session")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_needs_a_fresh_challenge_signed_with_the_registered_key() {
    let app = spawn_app().await;
    let alice = app.client("alice", "laptop").await;
    let auth = app.api().await.auth();
    let key = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
    let alice_id = Some(v1::ClientId {
        user: alice.id().user().into(),
        device: alice.id().device().into(),
    });
    let signed = |challenge: &[u8]| -> bytes::Bytes {
        key.sign(&confide_proto::challenge_signing_payload(challenge))
            .expect("signing")
            .into()
    };

    // Nobody takes over alice's name with another key ...
    expect_refused(
        auth.clone()
            .register_client(v1::RegisterClientRequest {
                client: alice_id.clone(),
                signature_public_key: key.to_public_vec().into(),
                registration_token: String::new(),
            })
            .await,
        Code::AlreadyExists,
        "registering alice's client again with another key",
    );
    // ... nor signs in as alice with it.
    let challenge = challenge_for(&auth, alice_id.clone()).await;
    expect_refused(
        auth.clone()
            .authenticate(v1::AuthenticateRequest {
                client: alice_id.clone(),
                signature: signed(&challenge),
                challenge,
            })
            .await,
        Code::Unauthenticated,
        "a challenge for alice signed with another key",
    );

    // With the right key a challenge works once.
    let mallory = Some(v1::ClientId {
        user: "mallory".into(),
        device: "laptop".into(),
    });
    auth.clone()
        .register_client(v1::RegisterClientRequest {
            client: mallory.clone(),
            signature_public_key: key.to_public_vec().into(),
            registration_token: String::new(),
        })
        .await
        .expect("registering mallory");
    let challenge = challenge_for(&auth, mallory.clone()).await;
    let answer = v1::AuthenticateRequest {
        client: mallory.clone(),
        signature: signed(&challenge),
        challenge: challenge.clone(),
    };
    let session = auth
        .clone()
        .authenticate(answer.clone())
        .await
        .expect("a correctly signed challenge")
        .into_inner();
    assert!(!session.session_token.is_empty());
    expect_refused(
        auth.clone().authenticate(answer).await,
        Code::Unauthenticated,
        "the same signed challenge a second time",
    );
    // Nor does alice's challenge answer for mallory.
    let alices = challenge_for(&auth, alice_id).await;
    expect_refused(
        auth.clone()
            .authenticate(v1::AuthenticateRequest {
                client: mallory,
                signature: signed(&alices),
                challenge: alices,
            })
            .await,
        Code::Unauthenticated,
        "a challenge issued to alice answered as mallory",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_member_can_neither_read_nor_post_to_a_group() {
    let app = spawn_app().await;
    let (group, [mut alice, _bob]) = app.conversation(["alice", "bob"]).await;
    alice.send(&group, b"members only").await.expect("sending");
    let log = app.group_log(alice.id(), &group).await;
    let commit = log[0].message.clone();
    let message = log[1].message.clone();
    let mallory = app.client("mallory", "laptop").await;
    let api = mallory.api();
    let denied = Code::PermissionDenied;

    expect_refused(
        api.delivery()
            .fetch(api.request(v1::FetchRequest {
                stream: group_stream(&group),
                after_seq: 0,
                limit: 0,
            }))
            .await,
        denied,
        "fetching a group one is not a member of",
    );
    expect_refused(
        api.delivery()
            .ack(api.request(v1::AckRequest {
                stream: group_stream(&group),
                seq: 1,
            }))
            .await,
        denied,
        "acking a group one is not a member of",
    );
    expect_refused(
        api.groups()
            .get_group_info(api.request(v1::GetGroupInfoRequest {
                group_id: group.clone().into(),
            }))
            .await,
        denied,
        "reading the GroupInfo of a group one is not a member of",
    );
    expect_refused(
        api.groups()
            .send_message(api.request(v1::SendMessageRequest {
                group_id: group.clone().into(),
                message_id: b"mallory-1".to_vec().into(),
                message,
            }))
            .await,
        denied,
        "sending to a group one is not a member of",
    );
    expect_refused(
        api.groups()
            .submit_commit(api.request(v1::SubmitCommitRequest {
                group_id: group.clone().into(),
                commit,
                welcome: Default::default(),
                group_info: b"group info".to_vec().into(),
            }))
            .await,
        denied,
        "committing to a group one is not a member of",
    );
    // A group that does not exist gets the same answer.
    expect_refused(
        api.delivery()
            .fetch(api.request(v1::FetchRequest {
                stream: group_stream(b"no such group"),
                after_seq: 0,
                limit: 0,
            }))
            .await,
        denied,
        "fetching a group that does not exist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_as_a_non_member_delivers_nothing_of_the_group() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    alice
        .send(&group, b"before mallory subscribed")
        .await
        .expect("sending");
    let mallory = app.client("mallory", "laptop").await;
    let mut stream = subscribe(mallory.api()).await;
    alice
        .send(&group, b"after mallory subscribed")
        .await
        .expect("sending");

    // Bob then invites mallory to another group: once the Welcome is on her
    // stream, everything alice sent before it was routed too.
    let other = bob.create_group().await.expect("creating a group");
    bob.add_users(&other, &["mallory"])
        .await
        .expect("adding mallory");
    loop {
        let envelope = next_envelope(&mut stream).await;
        match envelope.entry {
            Some(v1::envelope::Entry::Group(entry)) => {
                assert_ne!(entry.group_id.as_ref(), group.as_slice(), "{entry:?}")
            }
            Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
                item: Some(v1::inbox_entry::Item::Welcome(welcome)),
                ..
            })) => {
                assert_eq!(welcome.group_id.as_ref(), other.as_slice());
                break;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_another_clients_key_package_is_refused() {
    let app = spawn_app().await;
    let alice = app.client("alice", "laptop").await;
    let _bob = app.client("bob", "phone").await;
    let api = alice.api();
    let bobs = api
        .key_packages()
        .claim_key_packages(api.request(v1::ClaimKeyPackagesRequest { user: "bob".into() }))
        .await
        .expect("claiming bob's key package")
        .into_inner()
        .key_packages
        .remove(0)
        .key_package;

    expect_refused(
        api.key_packages()
            .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                key_packages: vec![bobs.clone()],
                last_resort_key_package: Default::default(),
            }))
            .await,
        Code::PermissionDenied,
        "publishing bob's key package as alice",
    );
    expect_refused(
        api.key_packages()
            .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                key_packages: Vec::new(),
                last_resort_key_package: bobs,
            }))
            .await,
        Code::PermissionDenied,
        "publishing bob's key package as alice's last-resort one",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_submitted_under_another_members_session_is_refused() {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice
        .add_users(&group, &["rita"])
        .await
        .expect("adding rita");
    rita.join().await;
    let commit = rita.craft_self_update();

    let api = alice.api();
    expect_refused(
        api.groups()
            .submit_commit(api.request(commit.request()))
            .await,
        Code::PermissionDenied,
        "alice submitting rita's commit",
    );
    // The commit itself was fine: rita may submit it.
    let accepted = rita
        .submit(commit.request())
        .await
        .expect("rita submitting her own commit")
        .into_inner();
    assert_eq!(accepted.epoch, commit.epoch + 1);
    let commits = app.commit_epochs(alice.id(), &group).await.len();
    assert_eq!(commits as u64, accepted.epoch, "one commit per epoch");
    alice.expect_epoch(&group, accepted.epoch).await;
    bob.expect_epoch(&group, accepted.epoch).await;
    assert_eq!(
        alice.epoch_authenticator(&group).expect("in the group"),
        bob.epoch_authenticator(&group).expect("in the group")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_requires_the_configured_token() {
    let app = spawn_app_with(|settings| {
        settings.registration_token = Some("org-secret".into());
    })
    .await;
    let register = async |name: &str, token: &str| {
        Client::register(
            app.api().await,
            ClientId::new(name, "phone").expect("a valid name"),
            &StateLocation::Memory,
            token,
        )
        .await
    };
    for (name, token) in [("mallory", ""), ("eve", "guess")] {
        match register(name, token).await {
            Err(ClientError::Rpc(status)) => {
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}")
            }
            Err(other) => panic!("registering with token {token:?}: {other}"),
            Ok(_) => panic!("registered with token {token:?}"),
        }
    }
    register("alice", "org-secret")
        .await
        .expect("registering with the right token");
}
