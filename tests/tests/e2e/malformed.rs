//! Bad input gets a clear error, never a crash: malformed, truncated,
//! oversized and wrong-wire-format MLS input is refused with a reason, reaches
//! no member, and the DS goes on serving this group and every other.

use bytes::Bytes;
use confide_client::{Api, GroupId};
use confide_ds::Settings;
use confide_ds::domain::{EntryKind, GroupEntry};
use confide_proto::v1;
use confide_tests::rpc::{call_with_body, expect_refused, group_stream, raw_channel};
use confide_tests::{Member, RawMember, TestApp, spawn_app};
use openmls::prelude::Lifetime;
use tonic::{Code, Response, Status};

/// Two conversations: alice and bob (where the bad input goes), carol and
/// dave (which must not notice), each with a commit and a message logged.
struct Scene {
    app: TestApp,
    group: GroupId,
    alice: Member,
    bob: Member,
    other: GroupId,
    carol: Member,
    dave: Member,
}

impl Scene {
    async fn new() -> Self {
        let app = spawn_app().await;
        let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
        let (other, [mut carol, mut dave]) = app.conversation(["carol", "dave"]).await;
        alice.send(&group, b"first").await.expect("sending");
        bob.self_update(&group).await.expect("updating");
        carol.send(&other, b"elsewhere").await.expect("sending");
        bob.expect_messages(&group, 1).await;
        dave.expect_messages(&other, 1).await;
        Self {
            app,
            group,
            alice,
            bob,
            other,
            carol,
            dave,
        }
    }

    async fn log(&self) -> Vec<GroupEntry> {
        self.app.group_log(self.alice.id(), &self.group).await
    }

    /// The last entry of `kind` in alice and bob's group.
    async fn last(&self, kind: EntryKind) -> Bytes {
        self.log()
            .await
            .into_iter()
            .rfind(|e| e.kind == kind)
            .expect("an entry of that kind")
            .message
    }

    /// An entry of `kind` in carol and dave's group.
    async fn other_group(&self, kind: EntryKind) -> Bytes {
        self.app
            .group_log(self.carol.id(), &self.other)
            .await
            .into_iter()
            .find(|e| e.kind == kind)
            .expect("an entry of that kind")
            .message
    }

    /// Nothing bad was logged or delivered (a member fails the test on any
    /// entry it cannot process), and both groups still work.
    async fn still_serving(mut self, log_before: usize) {
        assert_eq!(self.log().await.len(), log_before, "nothing was appended");
        self.alice
            .send(&self.group, b"still working")
            .await
            .expect("sending after the bad input");
        let bodies: Vec<Vec<u8>> = self
            .bob
            .expect_messages(&self.group, 2)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, [b"first".to_vec(), b"still working".to_vec()]);
        self.dave
            .send(&self.other, b"unaffected")
            .await
            .expect("sending in the other group");
        self.carol.expect_messages(&self.other, 1).await;
    }
}

async fn submit_commit(
    api: &Api,
    group: &[u8],
    commit: &[u8],
    group_info: &[u8],
) -> Result<Response<v1::SubmitCommitResponse>, Status> {
    api.groups()
        .submit_commit(api.request(v1::SubmitCommitRequest {
            group_id: group.to_vec().into(),
            commit: commit.to_vec().into(),
            welcome: Default::default(),
            group_info: group_info.to_vec().into(),
        }))
        .await
}

async fn send_message(
    api: &Api,
    group: &[u8],
    message_id: &[u8],
    message: &[u8],
) -> Result<Response<v1::SendMessageResponse>, Status> {
    api.groups()
        .send_message(api.request(v1::SendMessageRequest {
            group_id: group.to_vec().into(),
            message_id: message_id.to_vec().into(),
            message: message.to_vec().into(),
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_commits_are_invalid_argument_and_reach_nobody() {
    let scene = Scene::new().await;
    let api = scene.alice.api().clone();
    let group = scene.group.clone();
    let commit = scene.last(EntryKind::Commit).await;
    let message = scene.last(EntryKind::Application).await;
    let other_commit = scene.other_group(EntryKind::Commit).await;
    let group_info = api
        .groups()
        .get_group_info(api.request(v1::GetGroupInfoRequest {
            group_id: group.clone().into(),
        }))
        .await
        .expect("reading the GroupInfo")
        .into_inner()
        .group_info;
    let log_before = scene.log().await.len();
    let invalid = Code::InvalidArgument;

    let cases: [(&str, &[u8], &[u8]); 7] = [
        ("garbage bytes", b"this is not an MLS message", &group_info),
        (
            "a truncated commit",
            &commit[..commit.len() / 2],
            &group_info,
        ),
        (
            "a commit cut off by one byte",
            &commit[..commit.len() - 1],
            &group_info,
        ),
        (
            "a commit with trailing bytes",
            &[commit.as_ref(), b"\x00\x01"].concat(),
            &group_info,
        ),
        ("an application message as a commit", &message, &group_info),
        ("a GroupInfo as a commit", &group_info, &group_info),
        ("a commit of another group", &other_commit, &group_info),
    ];
    for (what, commit, group_info) in cases {
        expect_refused(
            submit_commit(&api, &group, commit, group_info).await,
            invalid,
            what,
        );
    }
    expect_refused(
        submit_commit(&api, &group, b"", &group_info).await,
        invalid,
        "an empty commit",
    );
    expect_refused(
        submit_commit(&api, b"", &commit, &group_info).await,
        invalid,
        "a commit for an empty group id",
    );
    expect_refused(
        submit_commit(&api, &[7; 300], &commit, &group_info).await,
        invalid,
        "a commit for a 300-byte group id",
    );
    expect_refused(
        api.groups()
            .submit_proposal(api.request(v1::SubmitProposalRequest {
                group_id: group.clone().into(),
                proposal: commit.clone(),
            }))
            .await,
        invalid,
        "a commit submitted as a proposal",
    );
    expect_refused(
        api.groups()
            .submit_proposal(api.request(v1::SubmitProposalRequest {
                group_id: group.clone().into(),
                proposal: b"garbage".to_vec().into(),
            }))
            .await,
        invalid,
        "a garbage proposal",
    );
    scene.still_serving(log_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_application_messages_are_invalid_argument_and_reach_nobody() {
    let scene = Scene::new().await;
    let api = scene.alice.api().clone();
    let group = scene.group.clone();
    let commit = scene.last(EntryKind::Commit).await;
    let message = scene.last(EntryKind::Application).await;
    let other_message = scene.other_group(EntryKind::Application).await;
    let log_before = scene.log().await.len();
    let invalid = Code::InvalidArgument;

    let cases: [(&str, &[u8]); 6] = [
        ("garbage bytes", b"this is not an MLS message"),
        ("a truncated message", &message[..message.len() / 2]),
        (
            "a message cut off by one byte",
            &message[..message.len() - 1],
        ),
        (
            "a PublicMessage (a commit) as an application message",
            &commit,
        ),
        ("a message of another group", &other_message),
        ("an empty message", b""),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let id = format!("bad-{i}");
        expect_refused(
            send_message(&api, &group, id.as_bytes(), bytes).await,
            invalid,
            what,
        );
    }
    expect_refused(
        send_message(&api, b"", b"id", &message).await,
        invalid,
        "a message for an empty group id",
    );
    expect_refused(
        send_message(&api, &group, b"", &message).await,
        invalid,
        "a message without a message id",
    );
    expect_refused(
        send_message(&api, &group, &[b'x'; 65], &message).await,
        invalid,
        "a 65-byte message id",
    );
    let oversized = vec![0u8; Settings::for_tests().max_message_bytes + 1];
    let status = send_message(&api, &group, b"big", &oversized)
        .await
        .expect_err("an oversized message must be refused");
    assert!(
        matches!(
            status.code(),
            Code::InvalidArgument | Code::ResourceExhausted
        ),
        "an oversized message: {status:?}"
    );
    assert!(!status.message().is_empty());
    scene.still_serving(log_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_groups_key_packages_and_selectors_are_invalid_argument() {
    let scene = Scene::new().await;
    let api = scene.alice.api().clone();
    let log_before = scene.log().await.len();
    let invalid = Code::InvalidArgument;
    let groups = api.groups();
    let key_packages = api.key_packages();
    let delivery = api.delivery();

    expect_refused(
        groups
            .clone()
            .create_group(api.request(v1::CreateGroupRequest {
                group_info: b"garbage".to_vec().into(),
                ratchet_tree: b"garbage".to_vec().into(),
            }))
            .await,
        invalid,
        "creating a group from garbage",
    );
    let bobs = key_packages
        .clone()
        .claim_key_packages(api.request(v1::ClaimKeyPackagesRequest { user: "bob".into() }))
        .await
        .expect("claiming")
        .into_inner()
        .key_packages
        .remove(0)
        .key_package;
    for (what, key_package) in [
        ("a garbage key package", Bytes::from_static(b"garbage")),
        ("a truncated key package", bobs.slice(..bobs.len() / 2)),
        (
            "a commit as a key package",
            scene.last(EntryKind::Commit).await,
        ),
    ] {
        expect_refused(
            key_packages
                .clone()
                .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                    key_packages: vec![key_package],
                    last_resort_key_package: Default::default(),
                }))
                .await,
            invalid,
            what,
        );
    }
    expect_refused(
        key_packages
            .clone()
            .claim_key_packages(api.request(v1::ClaimKeyPackagesRequest {
                user: "no/such user".into(),
            }))
            .await,
        invalid,
        "claiming for an invalid user name",
    );
    expect_refused(
        delivery
            .clone()
            .fetch(api.request(v1::FetchRequest {
                stream: None,
                after_seq: 0,
                limit: 0,
            }))
            .await,
        invalid,
        "fetching without a stream",
    );
    expect_refused(
        delivery
            .clone()
            .fetch(api.request(v1::FetchRequest {
                stream: group_stream(b""),
                after_seq: 0,
                limit: 0,
            }))
            .await,
        invalid,
        "fetching an empty group id",
    );
    expect_refused(
        delivery
            .clone()
            .ack(api.request(v1::AckRequest {
                stream: group_stream(b""),
                seq: 1,
            }))
            .await,
        invalid,
        "acking an empty group id",
    );
    scene.still_serving(log_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_application_message_is_not_delivered_again() {
    let scene = Scene::new().await;
    let api = scene.alice.api().clone();
    let group = scene.group.clone();
    let log = scene.log().await;
    let original = log
        .iter()
        .rfind(|e| e.kind == EntryKind::Application)
        .expect("alice's message")
        .clone();

    // The same ciphertext again, under a new message id: members cannot
    // decrypt it a second time (its key was deleted for forward secrecy), so
    // the DS must refuse it, or at most answer with the original entry.
    match send_message(&api, &group, b"a new id", &original.message).await {
        Ok(response) => assert_eq!(
            response.into_inner().seq,
            original.seq,
            "a replay was accepted as a new message"
        ),
        Err(status) => {
            assert!(
                matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted
                ),
                "a replay: {status:?}"
            );
            assert!(!status.message().is_empty());
        }
    }
    scene.still_serving(log.len()).await;
}

impl Scene {
    /// Adds rita, a raw member who crafts what the client library never
    /// sends, to alice and bob's group.
    async fn with_rita(mut self) -> (Self, RawMember) {
        let mut rita = RawMember::register(&self.app, "rita", "laptop").await;
        self.alice
            .add_users(&self.group, &["rita"])
            .await
            .expect("adding rita");
        rita.join().await;
        (self, rita)
    }
}

/// Asserts a bad-input refusal: one of `codes`, with a reason.
#[track_caller]
fn expect_bad_input<T: std::fmt::Debug>(
    result: Result<Response<T>, Status>,
    codes: &[Code],
    what: &str,
) {
    match result {
        Ok(response) => panic!("{what}: accepted with {:?}", response.into_inner()),
        Err(status) => {
            assert!(codes.contains(&status.code()), "{what}: {status:?}");
            assert!(!status.message().trim().is_empty(), "{what}: no reason");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mls_messages_of_the_wrong_content_type_are_invalid_argument_and_reach_nobody() {
    let (scene, mut rita) = Scene::new().await.with_rita().await;
    let group = scene.group.clone();
    let api = rita.api().clone();
    let welcome = rita.welcomes().await.remove(0).welcome;
    let key_package = rita.key_package(None);
    let message = rita.encrypt(b"never sent");
    let proposal = rita.propose_self_update();
    let commit = rita.craft_self_update();
    let log_before = scene.log().await.len();
    let invalid = [Code::InvalidArgument];

    for (what, bytes) in [
        ("a proposal as a commit", &proposal),
        ("an application message as a commit", &message),
        ("a Welcome as a commit", &welcome.to_vec()),
        ("a key package as a commit", &key_package),
    ] {
        expect_bad_input(
            submit_commit(&api, &group, bytes, &commit.group_info).await,
            &invalid,
            what,
        );
    }
    for (what, bytes) in [
        ("a commit as an application message", &commit.commit),
        ("a proposal as an application message", &proposal),
        ("a Welcome as an application message", &welcome.to_vec()),
        ("a key package as an application message", &key_package),
    ] {
        expect_bad_input(
            send_message(&api, &group, what.as_bytes(), bytes).await,
            &invalid,
            what,
        );
    }
    for (what, bytes) in [
        ("an application message as a proposal", &message),
        ("a Welcome as a proposal", &welcome.to_vec()),
    ] {
        expect_bad_input(
            rita.submit_proposal(&group, bytes.clone()).await,
            &invalid,
            what,
        );
    }
    expect_bad_input(
        submit_commit(&api, &group, &commit.commit, &commit.commit).await,
        &invalid,
        "a commit as its own GroupInfo",
    );
    expect_bad_input(
        api.key_packages()
            .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                key_packages: vec![welcome.clone()],
                last_resort_key_package: Default::default(),
            }))
            .await,
        &invalid,
        "a Welcome as a key package",
    );
    scene.still_serving(log_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_key_packages_are_invalid_argument_and_never_claimed() {
    let app = spawn_app().await;
    let rita = RawMember::register(&app, "rita", "laptop").await;
    let api = rita.api();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    for (what, lifetime) in [
        (
            "an expired key package",
            Lifetime::init(now - 7200, now - 3600),
        ),
        (
            "a key package valid from tomorrow",
            Lifetime::init(now + 86_400, now + 2 * 86_400),
        ),
    ] {
        let key_package = rita.key_package(Some(lifetime));
        for (slot, request) in [
            (
                "in the pool",
                v1::PublishKeyPackagesRequest {
                    key_packages: vec![key_package.clone().into()],
                    last_resort_key_package: Default::default(),
                },
            ),
            (
                "as the last-resort one",
                v1::PublishKeyPackagesRequest {
                    key_packages: Vec::new(),
                    last_resort_key_package: key_package.clone().into(),
                },
            ),
        ] {
            expect_refused(
                api.key_packages()
                    .publish_key_packages(api.request(request))
                    .await,
                Code::InvalidArgument,
                &format!("{what} {slot}"),
            );
        }
    }
    // Only the valid key package rita published at registration is there.
    let count = api
        .key_packages()
        .count_key_packages(api.request(v1::CountKeyPackagesRequest {}))
        .await
        .expect("counting")
        .into_inner();
    assert_eq!((count.available, count.has_last_resort), (1, false));
}

/// A membership tag (HMAC-SHA256) with its length prefix.
const MAC_LEN: usize = 33;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flipped_commits_are_refused_and_the_intact_one_is_still_accepted() {
    let (scene, mut rita) = Scene::new().await.with_rita().await;
    let group = scene.group.clone();
    let commit = rita.craft_self_update();
    let log_before = scene.log().await.len();
    let bad = [
        Code::InvalidArgument,
        Code::FailedPrecondition,
        Code::PermissionDenied,
    ];

    // One flipped bit at a time, spread over everything the DS can check:
    // all but the membership tag at the end, a MAC keyed with an epoch
    // secret only members hold. (The confirmation tag before it is a MAC too,
    // but the committer signs it into the GroupInfo, so the DS compares.)
    let checkable = commit.commit.len() - MAC_LEN;
    let stride = (checkable / 40).max(1);
    let confirmation_tag = checkable - MAC_LEN..checkable;
    for position in (0..checkable).step_by(stride).chain(confirmation_tag) {
        let mut flipped = commit.commit.clone();
        flipped[position] ^= 0x10;
        expect_bad_input(
            submit_commit(rita.api(), &group, &flipped, &commit.group_info).await,
            &bad,
            &format!("a commit with bit 4 of byte {position} flipped"),
        );
    }
    // And in the GroupInfo that comes with it.
    let stride = (commit.group_info.len() / 20).max(1);
    for position in (0..commit.group_info.len()).step_by(stride) {
        let mut flipped = commit.group_info.clone();
        flipped[position] ^= 0x10;
        expect_bad_input(
            submit_commit(rita.api(), &group, &commit.commit, &flipped).await,
            &bad,
            &format!("a GroupInfo with bit 4 of byte {position} flipped"),
        );
    }
    assert_eq!(scene.log().await.len(), log_before, "nothing was appended");
    let accepted = rita
        .submit(commit.request())
        .await
        .expect("the intact commit after the flipped ones")
        .into_inner();
    assert_eq!(accepted.epoch, commit.epoch + 1);
    scene.still_serving(log_before + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_oversized_mls_field_is_resource_exhausted_and_the_group_goes_on() {
    use tonic_types::StatusExt;
    const MAX: usize = 4 * 1024;
    let app = confide_tests::spawn_app_with(|s| {
        s.max_message_bytes = MAX;
        s.limits.max_request_bytes = 16 * MAX;
    })
    .await;
    let (group, [mut alice, mut bob]) = app.conversation(["alice", "bob"]).await;
    let api = alice.api().clone();
    let big = Bytes::from(vec![7u8; MAX + 1]);
    let small = Bytes::from_static(b"small");
    let group_id = Bytes::from(group.clone());
    let (groups, key_packages) = (api.groups(), api.key_packages());

    let commit = async |commit: &Bytes, welcome: &Bytes, group_info: &Bytes| {
        groups
            .clone()
            .submit_commit(api.request(v1::SubmitCommitRequest {
                group_id: group_id.clone(),
                commit: commit.clone(),
                welcome: welcome.clone(),
                group_info: group_info.clone(),
            }))
            .await
    };
    let publish = async |packages: Vec<Bytes>, last_resort: &Bytes| {
        key_packages
            .clone()
            .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                key_packages: packages,
                last_resort_key_package: last_resort.clone(),
            }))
            .await
    };
    let create = async |group_info: &Bytes, ratchet_tree: &Bytes| {
        groups
            .clone()
            .create_group(api.request(v1::CreateGroupRequest {
                group_info: group_info.clone(),
                ratchet_tree: ratchet_tree.clone(),
            }))
            .await
    };
    let statuses = [
        (
            "an oversized commit",
            commit(&big, &small, &small).await.map(drop),
        ),
        (
            "an oversized Welcome",
            commit(&small, &big, &small).await.map(drop),
        ),
        (
            "an oversized GroupInfo with a commit",
            commit(&small, &small, &big).await.map(drop),
        ),
        (
            "an oversized proposal",
            groups
                .clone()
                .submit_proposal(api.request(v1::SubmitProposalRequest {
                    group_id: group_id.clone(),
                    proposal: big.clone(),
                }))
                .await
                .map(drop),
        ),
        (
            "an oversized application message",
            groups
                .clone()
                .send_message(api.request(v1::SendMessageRequest {
                    group_id: group_id.clone(),
                    message_id: b"big".to_vec().into(),
                    message: big.clone(),
                }))
                .await
                .map(drop),
        ),
        (
            "an oversized key package",
            publish(vec![big.clone()], &Bytes::new()).await.map(drop),
        ),
        (
            "an oversized last-resort key package",
            publish(Vec::new(), &big).await.map(drop),
        ),
        (
            "an oversized GroupInfo for a new group",
            create(&big, &small).await.map(drop),
        ),
        (
            "an oversized ratchet tree for a new group",
            create(&small, &big).await.map(drop),
        ),
    ];
    for (what, result) in statuses {
        let status = expect_refused(result.map(Response::new), Code::ResourceExhausted, what);
        let info = status
            .get_details_error_info()
            .unwrap_or_else(|| panic!("{what}: no ErrorInfo in {status:?}"));
        assert_eq!(info.reason, confide_proto::REASON_TOO_LARGE, "{what}");
    }

    alice
        .send(&group, b"still here")
        .await
        .expect("the group goes on");
    assert_eq!(bob.expect_messages(&group, 1).await[0].body, b"still here");
}

/// How many `method` calls the DS counted as answered with `code`.
fn rpc_count(metrics: &str, method: &str, code: &str) -> u64 {
    let labels = [format!("method=\"{method}\""), format!("code=\"{code}\"")];
    metrics
        .lines()
        .filter(|line| line.starts_with("confide_rpc_requests_total{"))
        .filter(|line| labels.iter().all(|label| line.contains(label.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_is_not_protobuf_is_invalid_argument_and_not_a_server_fault() {
    let scene = Scene::new().await;
    let log_before = scene.log().await.len();
    let channel = raw_channel(&scene.app.endpoint).await;
    let methods = [
        "/confide.v1.AuthService/RegisterClient",
        "/confide.v1.AuthService/RemoveClient",
        "/confide.v1.GroupService/SendMessage",
        "/confide.v1.GroupService/SubmitCommit",
        "/confide.v1.KeyPackageService/PublishKeyPackages",
        "/confide.v1.DeliveryService/Fetch",
        "/confide.v1.DeliveryService/Subscribe",
    ];
    let bodies: [(&str, &[u8]); 3] = [
        ("an unterminated varint", &[0xff; 11]),
        ("a field longer than the body", &[0x0a, 0x05, 0x01]),
        ("an invalid wire type", &[0x0f, 0x00]),
    ];
    let before = scene.app.metrics().await;
    for method in methods {
        for (what, body) in bodies {
            let status = call_with_body(&channel, method, Bytes::from_static(body))
                .await
                .expect_err("garbage cannot be a request");
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{what} to {method}: {status:?}"
            );
            assert!(
                status.message().contains("protobuf"),
                "{what} to {method}: the reason says what is wrong: {status:?}"
            );
        }
    }
    let after = scene.app.metrics().await;
    for method in methods {
        let counted = |metrics: &str, code| rpc_count(metrics, method, code);
        assert!(
            counted(&after, "InvalidArgument") >= counted(&before, "InvalidArgument") + 3,
            "{method}: the refusals are counted as INVALID_ARGUMENT:\n{after}"
        );
        assert_eq!(
            counted(&after, "Internal"),
            counted(&before, "Internal"),
            "{method}: a client's garbage is not a server fault"
        );
    }
    scene.still_serving(log_before).await;
}
