//! Only the right client: every RPC but registration and health needs a
//! session, and a session reaches only its own client's groups and key
//! packages.

use confide_client::{Client, ClientError, ClientId, StateLocation};
use confide_core::profile::CIPHERSUITE;
use confide_ds::domain::EntryKind;
use confide_proto::v1;
use confide_tests::rpc::{
    authorization_of, challenge_for, expect_refused, group_stream, inbox_stream, next_envelope,
    raw_channel, subscribe, with_authorization,
};
use confide_tests::{RawMember, WAIT, spawn_app, spawn_app_with};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;
use tonic::transport::Channel;
use tonic::{Code, Status};
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

    // Nobody takes over alice's name with another key, certified by an
    // identity key of its own ...
    let certificate = confide_client::UserIdentity::generate()
        .and_then(|identity| identity.certify(alice.id(), key.public()))
        .expect("certifying the impostor's key");
    expect_refused(
        auth.clone()
            .register_client(v1::RegisterClientRequest {
                client: alice_id.clone(),
                signature_public_key: key.to_public_vec().into(),
                device_certificate: certificate.to_bytes().into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
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
            device_certificate: confide_client::UserIdentity::generate()
                .and_then(|identity| {
                    identity.certify(&ClientId::new("mallory", "laptop").unwrap(), key.public())
                })
                .expect("certifying mallory's device")
                .to_bytes()
                .into(),
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

/// Every authenticated RPC of the gRPC API, for the authorisation matrix.
/// The rest need no session by design: RegisterClient (ALREADY_EXISTS for a
/// taken name is inherent), CreateChallenge and Authenticate (which answer
/// alike for unknown clients, see
/// `a_challenge_and_its_answer_reveal_nothing_about_which_clients_exist`),
/// GetServiceInfo and health.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    RevokeSession,
    RemoveClient,
    CreateGroup,
    SubmitCommit,
    SubmitProposal,
    SendMessage,
    GetGroupInfo,
    PublishKeyPackages,
    ClaimKeyPackages,
    CountKeyPackages,
    Subscribe,
    FetchGroup,
    FetchInbox,
    AckGroup,
    AckInbox,
}

impl Rpc {
    const ALL: [Rpc; 15] = [
        Rpc::RevokeSession,
        Rpc::RemoveClient,
        Rpc::CreateGroup,
        Rpc::SubmitCommit,
        Rpc::SubmitProposal,
        Rpc::SendMessage,
        Rpc::GetGroupInfo,
        Rpc::PublishKeyPackages,
        Rpc::ClaimKeyPackages,
        Rpc::CountKeyPackages,
        Rpc::Subscribe,
        Rpc::FetchGroup,
        Rpc::FetchInbox,
        Rpc::AckGroup,
        Rpc::AckInbox,
    ];

    /// The RPCs that address a group, which only its members may use.
    const GROUP: [Rpc; 6] = [
        Rpc::SubmitCommit,
        Rpc::SubmitProposal,
        Rpc::SendMessage,
        Rpc::GetGroupInfo,
        Rpc::FetchGroup,
        Rpc::AckGroup,
    ];

    /// Calls the RPC on `target` with `authorization` as the only
    /// credential, on a connection without the client library's retries.
    async fn call(
        self,
        channel: &Channel,
        authorization: Option<&str>,
        target: &Target,
    ) -> Result<(), Status> {
        use v1::auth_service_client::AuthServiceClient;
        use v1::delivery_service_client::DeliveryServiceClient;
        use v1::group_service_client::GroupServiceClient;
        use v1::key_package_service_client::KeyPackageServiceClient;
        let auth = || AuthServiceClient::new(channel.clone());
        let groups = || GroupServiceClient::new(channel.clone());
        let key_packages = || KeyPackageServiceClient::new(channel.clone());
        let delivery = || DeliveryServiceClient::new(channel.clone());
        match self {
            Rpc::RevokeSession => auth()
                .revoke_session(with_authorization(
                    v1::RevokeSessionRequest {},
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::RemoveClient => auth()
                .remove_client(with_authorization(
                    v1::RemoveClientRequest {
                        client: Some(target.client.clone()),
                        ..Default::default()
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::CreateGroup => groups()
                .create_group(with_authorization(target.new_group.clone(), authorization))
                .await
                .map(drop),
            Rpc::SubmitCommit => groups()
                .submit_commit(with_authorization(target.commit.clone(), authorization))
                .await
                .map(drop),
            Rpc::SubmitProposal => groups()
                .submit_proposal(with_authorization(
                    v1::SubmitProposalRequest {
                        group_id: target.group.clone().into(),
                        proposal: target.proposal.clone().into(),
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::SendMessage => groups()
                .send_message(with_authorization(
                    v1::SendMessageRequest {
                        group_id: target.group.clone().into(),
                        message_id: b"matrix".to_vec().into(),
                        message: target.message.clone().into(),
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::GetGroupInfo => groups()
                .get_group_info(with_authorization(
                    v1::GetGroupInfoRequest {
                        group_id: target.group.clone().into(),
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::PublishKeyPackages => key_packages()
                .publish_key_packages(with_authorization(
                    v1::PublishKeyPackagesRequest {
                        key_packages: vec![target.key_package.clone().into()],
                        last_resort_key_package: Default::default(),
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::ClaimKeyPackages => key_packages()
                .claim_key_packages(with_authorization(
                    v1::ClaimKeyPackagesRequest {
                        user: target.client.user.clone(),
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::CountKeyPackages => key_packages()
                .count_key_packages(with_authorization(
                    v1::CountKeyPackagesRequest {},
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::Subscribe => delivery()
                .subscribe(with_authorization(v1::SubscribeRequest {}, authorization))
                .await
                .map(drop),
            Rpc::FetchGroup | Rpc::FetchInbox => delivery()
                .fetch(with_authorization(
                    v1::FetchRequest {
                        stream: match self {
                            Rpc::FetchGroup => group_stream(&target.group),
                            _ => inbox_stream(),
                        },
                        after_seq: 0,
                        limit: 0,
                    },
                    authorization,
                ))
                .await
                .map(drop),
            Rpc::AckGroup | Rpc::AckInbox => delivery()
                .ack(with_authorization(
                    v1::AckRequest {
                        stream: match self {
                            Rpc::AckGroup => group_stream(&target.group),
                            _ => inbox_stream(),
                        },
                        seq: 1,
                    },
                    authorization,
                ))
                .await
                .map(drop),
        }
    }
}

/// What the calls of a case address, with well-formed input for it: either
/// things that exist (a group, its members' handshakes, a registered
/// client) or the same kinds of things the DS has never heard of.
struct Target {
    group: Vec<u8>,
    commit: v1::SubmitCommitRequest,
    proposal: Vec<u8>,
    message: Vec<u8>,
    /// A CreateGroup request for a group whose only member is `client`.
    new_group: v1::CreateGroupRequest,
    /// A key package of `client`.
    key_package: Vec<u8>,
    client: v1::ClientId,
}

impl Target {
    /// Input no RPC accepts: every field empty or missing (an empty
    /// client name, no group id, no MLS bytes).
    fn malformed() -> Self {
        Self {
            group: Vec::new(),
            commit: v1::SubmitCommitRequest::default(),
            proposal: Vec::new(),
            message: Vec::new(),
            new_group: v1::CreateGroupRequest::default(),
            key_package: Vec::new(),
            client: v1::ClientId::default(),
        }
    }

    /// Input crafted by `member` for the group it is in, naming `member`.
    fn crafted_by(member: &mut RawMember) -> Self {
        let group = member.group_id();
        let message = member.encrypt(b"for the matrix");
        let proposal = member.propose_self_update();
        let commit = member.craft_self_update().request();
        let key_package = member.key_package(None);
        let client = member.proto_id();
        let new_group = member.found_local_group();
        Self {
            group,
            commit,
            proposal,
            message,
            new_group,
            key_package,
            client,
        }
    }
}

/// One row of the matrix: `rpc` called by `caller` must be refused with
/// `code`, on an existing target and on a made-up one alike.
struct Case<'a> {
    rpc: Rpc,
    caller: &'static str,
    authorization: Option<String>,
    code: Code,
    real: &'a Target,
    ghost: &'a Target,
    /// Whether the two answers must be identical: not when the caller may
    /// know the real target exists (a member presenting another's input).
    same_answer: bool,
}

/// Runs every case and fails with every refusal that was missing, wrong, or
/// told an existing target from a made-up one.
async fn walk(channel: &Channel, cases: &[Case<'_>]) {
    let mut failures = Vec::new();
    for case in cases {
        let what = format!("{:?} by {}", case.rpc, case.caller);
        let authorization = case.authorization.as_deref();
        let real = case.rpc.call(channel, authorization, case.real).await;
        let ghost = case.rpc.call(channel, authorization, case.ghost).await;
        let (real, ghost) = match (real, ghost) {
            (Err(real), Err(ghost)) => (real, ghost),
            (real, ghost) => {
                failures.push(format!(
                    "{what}: expected {:?} for both targets, got {:?} (existing) and {:?} (made up)",
                    case.code,
                    real.map_err(|s| (s.code(), s.message().to_string())),
                    ghost.map_err(|s| (s.code(), s.message().to_string())),
                ));
                continue;
            }
        };
        for (target, status) in [("an existing target", &real), ("a made-up one", &ghost)] {
            if status.code() != case.code || status.message().trim().is_empty() {
                failures.push(format!(
                    "{what} on {target}: expected {:?} with a reason, got {:?} {:?}",
                    case.code,
                    status.code(),
                    status.message()
                ));
            }
        }
        if case.same_answer && (real.code(), real.message()) != (ghost.code(), ghost.message()) {
            failures.push(format!(
                "{what}: the answer tells an existing target ({:?} {:?}) from a made-up one ({:?} {:?})",
                real.code(),
                real.message(),
                ghost.code(),
                ghost.message()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The authorisation matrix: every authenticated RPC × every caller that
/// must be refused (no, expired, revoked, forged or altered session token; a member
/// presenting another client's input; a non-member; a removed member), each
/// against an existing group/client and a made-up one, which must get the
/// same answer (no existence oracle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_every_wrong_caller_alike_whether_or_not_the_target_exists() {
    let app = spawn_app().await;
    // A replica of the same deployment issuing one-second sessions.
    let short_lived = app.spawn_replica_with(|s| s.session_ttl_secs = 1).await;
    let (group, [mut alice, _bob]) = app.conversation(["alice", "bob"]).await;
    let mut rita = RawMember::register(&app, "rita", "laptop").await;
    alice
        .add_users(&group, &["rita"])
        .await
        .expect("adding rita");
    rita.join().await;
    let mallory = RawMember::register(&app, "mallory", "laptop").await;
    let mut ghost = RawMember::unregistered(&app, "ghost", "laptop").await;
    ghost.found_local_group();
    let ghost = Target::crafted_by(&mut ghost);
    let real = Target::crafted_by(&mut rita);
    assert_eq!(real.group, group);
    let channel = raw_channel(&app.endpoint).await;

    let expired = format!("Bearer {}", rita.new_session(&short_lived).await);
    let deadline = tokio::time::Instant::now() + WAIT;
    while Rpc::CountKeyPackages
        .call(&channel, Some(&expired), &real)
        .await
        .is_ok()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a one-second session is still accepted after {WAIT:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mallorys = authorization_of(mallory.api());
    let altered = {
        let mut token = mallorys.clone().into_bytes();
        let last = token.last_mut().expect("a token");
        *last = if *last == b'0' { b'1' } else { b'0' };
        String::from_utf8(token).expect("ASCII")
    };
    let forged = format!("Bearer {}", "5e55".repeat(16));
    let revoked = format!("Bearer {}", mallory.new_session(&app).await);
    Rpc::RevokeSession
        .call(&channel, Some(&revoked), &real)
        .await
        .expect("mallory ending her second session");

    let mut cases = Vec::new();
    let mut case = |rpc, caller, authorization: Option<&str>, code, same_answer| {
        cases.push(Case {
            rpc,
            caller,
            authorization: authorization.map(str::to_string),
            code,
            real: &real,
            ghost: &ghost,
            same_answer,
        })
    };
    for (caller, authorization) in [
        ("a caller without a session token", None),
        (
            "a caller with an expired session token",
            Some(expired.as_str()),
        ),
        (
            "a caller with a revoked session token",
            Some(revoked.as_str()),
        ),
        (
            "a caller with a forged session token",
            Some(forged.as_str()),
        ),
        (
            "a caller with an altered session token",
            Some(altered.as_str()),
        ),
        ("a caller with a malformed authorization", Some("Bearer")),
    ] {
        for rpc in Rpc::ALL {
            case(rpc, caller, authorization, Code::Unauthenticated, true);
        }
    }
    let mallory_token = Some(mallorys.as_str());
    for rpc in Rpc::GROUP {
        case(
            rpc,
            "mallory, a non-member",
            mallory_token,
            Code::PermissionDenied,
            true,
        );
    }
    for rpc in [Rpc::CreateGroup, Rpc::PublishKeyPackages, Rpc::RemoveClient] {
        case(
            rpc,
            "mallory, naming another client",
            mallory_token,
            Code::PermissionDenied,
            true,
        );
    }
    // Alice may know the group exists: only the code must agree.
    let alices = authorization_of(alice.api());
    for rpc in [Rpc::SubmitCommit, Rpc::SubmitProposal] {
        case(
            rpc,
            "alice, a member, submitting rita's handshake",
            Some(alices.as_str()),
            Code::PermissionDenied,
            false,
        );
    }
    walk(&channel, &cases).await;

    alice
        .remove_users(&group, &["rita"])
        .await
        .expect("removing rita");
    // A removed member may still read (and ack) the log up to the commit
    // that removed it, to learn of its removal; it may do nothing else.
    let ritas = authorization_of(rita.api());
    let cases: Vec<Case> = [
        Rpc::SubmitCommit,
        Rpc::SubmitProposal,
        Rpc::SendMessage,
        Rpc::GetGroupInfo,
    ]
    .into_iter()
    .map(|rpc| Case {
        rpc,
        caller: "rita, a removed member",
        authorization: Some(ritas.clone()),
        code: Code::PermissionDenied,
        real: &real,
        ghost: &ghost,
        same_answer: true,
    })
    .collect();
    walk(&channel, &cases).await;
    alice
        .send(&group, b"after rita left")
        .await
        .expect("sending");
    let log = app.group_log(alice.id(), &group).await;
    let removal = log
        .iter()
        .rfind(|e| e.kind == EntryKind::Commit)
        .expect("the removal commit")
        .seq;
    let readable = rita
        .api()
        .delivery()
        .fetch(rita.api().request(v1::FetchRequest {
            stream: group_stream(&group),
            after_seq: 0,
            limit: 0,
        }))
        .await
        .expect("rita reading up to her removal")
        .into_inner()
        .entries;
    let last = readable.last().and_then(|e| match &e.entry {
        Some(v1::envelope::Entry::Group(entry)) => Some(entry.seq),
        _ => None,
    });
    assert_eq!(last, Some(removal), "rita reads up to her removal only");

    // Nothing the refused calls carried reached the group.
    assert!(
        log.iter()
            .all(|e| e.message.as_ref() != real.message.as_slice()
                && e.message.as_ref() != real.proposal.as_slice()
                && e.message.as_ref() != real.commit.commit.as_ref()),
        "a refused call's input was logged"
    );
}

/// CreateChallenge answers an unknown client like a known one, and
/// answering that challenge fails like a wrong signature: registration
/// cannot be probed one name at a time.
/// Authentication comes first: a caller without a valid session learns
/// nothing about its input, not even that a field is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_without_a_valid_session_is_unauthenticated_whatever_its_input() {
    let app = spawn_app().await;
    let channel = raw_channel(&app.endpoint).await;
    let malformed = Target::malformed();
    let mut failures = Vec::new();
    for authorization in [None, Some("Bearer not-a-session-token")] {
        for rpc in Rpc::ALL {
            match rpc.call(&channel, authorization, &malformed).await {
                Err(status) if status.code() == Code::Unauthenticated => {}
                other => failures.push(format!(
                    "{rpc:?} with authorization {authorization:?} and malformed input: {:?}",
                    other.map_err(|s| (s.code(), s.message().to_string()))
                )),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "expected UNAUTHENTICATED:\n{}",
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_and_its_answer_reveal_nothing_about_which_clients_exist() {
    let app = spawn_app().await;
    let alice = RawMember::register(&app, "alice", "laptop").await;
    let nobody = RawMember::unregistered(&app, "nobody", "laptop").await;
    let auth = app.api().await.auth();
    let key = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");

    let mut answers = Vec::new();
    for client in [alice.proto_id(), nobody.proto_id()] {
        let challenge = auth
            .clone()
            .create_challenge(v1::CreateChallengeRequest {
                client: Some(client.clone()),
            })
            .await
            .unwrap_or_else(|s| panic!("a challenge for {client:?}: {s:?}"))
            .into_inner();
        assert_eq!(challenge.challenge.len(), 32, "{client:?}");
        assert!(challenge.expires_at_unix_ms > 0, "{client:?}");
        let signature = key
            .sign(&confide_proto::challenge_signing_payload(
                &challenge.challenge,
            ))
            .expect("signing");
        let refused = expect_refused(
            auth.clone()
                .authenticate(v1::AuthenticateRequest {
                    client: Some(client.clone()),
                    challenge: challenge.challenge,
                    signature: signature.into(),
                })
                .await,
            Code::Unauthenticated,
            &format!("a challenge for {client:?} signed with a key not its own"),
        );
        answers.push(refused.message().to_string());
    }
    assert_eq!(
        answers[0], answers[1],
        "a known and an unknown client are refused differently"
    );
}
