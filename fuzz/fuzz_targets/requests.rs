//! The request handlers' input: each confide.v1 request is prost-decoded from
//! the fuzz bytes, as tonic does, and handed to the real gRPC adapter
//! (`convert.rs` field validation, then the domain) of a DS on the memory
//! store. The DS holds the fixture's group (alice, bob, carol), dave's key
//! packages, and a session for alice, under which authenticated calls run.
//!
//! Every refusal must be a gRPC status with a reason, and never UNKNOWN or
//! INTERNAL: the memory store cannot fail, so an internal error here is the
//! DS mishandling client input.
//!
//! Left out: Subscribe (a stream with an empty request) and RevokeSession
//! (an empty request that would end alice's session). RemoveClient runs
//! without a session, so it is refused before its fields are read and
//! nobody is removed (its `client` field goes through the same
//! `convert::client_field` as the other auth requests').

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use confide_ds::Settings;
use confide_ds::grpc::{AuthApi, DeliveryApi, DeviceApi, GroupApi, KeyPackageApi};
use confide_ds::state::AppState;
use confide_ds::store::memory::MemoryStore;
use confide_fuzz::edit::pick;
use confide_fuzz::fixture::Fixture;
use confide_proto::v1::{
    self, auth_service_server::AuthService, delivery_service_server::DeliveryService,
    device_service_server::DeviceService, group_service_server::GroupService,
    key_package_service_server::KeyPackageService,
};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

struct Env {
    runtime: Runtime,
    state: AppState,
    /// `Bearer <alice's session token>`.
    bearer: String,
    fixture: Fixture,
}

static ENV: LazyLock<Env> = LazyLock::new(setup);

fn setup() -> Env {
    let fixture = Fixture::new();
    let mut settings = Settings::for_tests();
    // Rate limits would soon answer every call alike; the fuzzer wants the
    // handlers behind them.
    let plenty = 1 << 30;
    let limits = &mut settings.limits;
    limits.requests_per_second = plenty;
    limits.request_burst = plenty;
    limits.bytes_per_second = plenty;
    limits.byte_burst = plenty;
    limits.unauthenticated_per_minute = plenty;
    limits.claims_per_minute = plenty;
    limits.claims_per_target_per_minute = plenty;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let state = confide_ds::state(MemoryStore::new(), settings, CancellationToken::new())
        .expect("the DS state");
    let bearer = runtime.block_on(async {
        let keys = fixture.signature_keys.iter().zip(&fixture.certificates);
        for (client, (key, certificate)) in fixture.clients.iter().zip(keys) {
            state
                .register_client(client.clone(), key.clone(), certificate, "")
                .await
                .expect("registering the fixture's clients");
        }
        let [alice, _, _, dave] = &fixture.clients[..] else {
            unreachable!("four clients")
        };
        let challenge = state.create_challenge(alice).await.expect("a challenge");
        let signature = fixture.sign_as_alice(&confide_proto::challenge_signing_payload(
            &challenge.challenge,
        ));
        let session = state
            .authenticate(alice, &challenge.challenge, &signature)
            .await
            .expect("alice authenticates");
        state
            .create_group(
                alice,
                fixture.created.group_info.clone().into(),
                fixture.created.ratchet_tree.clone().into(),
            )
            .await
            .expect("alice creates the group");
        let add = &fixture.add_bob_and_carol;
        state
            .submit_commit(
                alice,
                &fixture.group_id,
                add.commit.clone().into(),
                Some(add.welcome.clone().into()),
                add.group_info.clone().into(),
            )
            .await
            .expect("alice adds bob and carol");
        let [key_package, last_resort] = &fixture.key_packages[..] else {
            unreachable!("two key packages")
        };
        state
            .publish_key_packages(
                dave,
                vec![key_package.clone().into()],
                Some(last_resort.clone().into()),
            )
            .await
            .expect("dave's key packages");
        format!("Bearer {}", session.token)
    });
    Env {
        runtime,
        state,
        bearer,
        fixture,
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which RPC.
    rpc: u8,
    /// Replace the decoded request's group id, client or user with one the
    /// DS knows (the fixture's group; `known` picks the client), so the
    /// fuzzer gets past "not found" without guessing names.
    known: Option<u8>,
    /// The encoded request.
    body: Vec<u8>,
}

/// A refusal is a status with a reason, never an internal error.
fn check<T>(result: Result<Response<T>, Status>) {
    if let Err(status) = result {
        assert!(
            !matches!(status.code(), Code::Unknown | Code::Internal),
            "client input answered with {:?}: {}",
            status.code(),
            status.message()
        );
        assert!(
            !status.message().is_empty(),
            "a {:?} without a reason",
            status.code()
        );
    }
}

impl Env {
    fn request<T>(&self, message: T, authenticated: bool) -> Request<T> {
        let mut request = Request::new(message);
        if authenticated {
            request.metadata_mut().insert(
                confide_proto::AUTHORIZATION_HEADER,
                self.bearer.parse().expect("an ASCII token"),
            );
        }
        request
    }

    fn client(&self, known: u8) -> v1::ClientId {
        let client = pick(&self.fixture.clients, known);
        v1::ClientId {
            user: client.user().into(),
            device: client.device().into(),
        }
    }

    fn group_id(&self) -> bytes::Bytes {
        self.fixture.group_id.as_slice().to_vec().into()
    }

    fn stream(&self, known: u8) -> v1::StreamSelector {
        use v1::stream_selector::Stream;
        v1::StreamSelector {
            stream: Some(if known.is_multiple_of(2) {
                Stream::GroupId(self.group_id())
            } else {
                Stream::Inbox(v1::Inbox {})
            }),
        }
    }
}

fuzz_target!(|input: Input| {
    let env = &*ENV;
    let known = input.known;
    let body = input.body.as_slice();
    let auth = AuthApi(env.state.clone());
    let groups = GroupApi(env.state.clone());
    let key_packages = KeyPackageApi(env.state.clone());
    let delivery = DeliveryApi(env.state.clone());
    let devices = DeviceApi(env.state.clone());
    // Decodes the request (an undecodable one tonic refuses before any
    // handler), patches known ids in, calls the handler and checks.
    macro_rules! call {
        ($api:ident . $method:ident ($type:ty, authenticated: $auth:expr)) => {{
            let Ok(message) = <$type>::decode(body) else {
                return;
            };
            check(
                env.runtime
                    .block_on($api.$method(env.request(message, $auth))),
            );
        }};
        ($api:ident . $method:ident ($type:ty, authenticated: $auth:expr), |$m:ident, $k:ident| $patch:expr) => {{
            let Ok(mut $m) = <$type>::decode(body) else {
                return;
            };
            if let Some($k) = known {
                $patch;
            }
            check(env.runtime.block_on($api.$method(env.request($m, $auth))));
        }};
    }
    match input.rpc % 20 {
        0 => call!(auth.register_client(v1::RegisterClientRequest, authenticated: false),
            |m, k| m.client = Some(env.client(k))),
        1 => call!(auth.create_challenge(v1::CreateChallengeRequest, authenticated: false),
            |m, k| m.client = Some(env.client(k))),
        2 => call!(auth.authenticate(v1::AuthenticateRequest, authenticated: false),
            |m, k| m.client = Some(env.client(k))),
        3 => call!(auth.remove_client(v1::RemoveClientRequest, authenticated: false),
            |m, k| m.client = Some(env.client(k))),
        4 => call!(auth.get_service_info(v1::GetServiceInfoRequest, authenticated: false)),
        5 => call!(groups.create_group(v1::CreateGroupRequest, authenticated: true)),
        6 => call!(groups.submit_commit(v1::SubmitCommitRequest, authenticated: true),
            |m, _k| m.group_id = env.group_id()),
        7 => call!(groups.submit_proposal(v1::SubmitProposalRequest, authenticated: true),
            |m, _k| m.group_id = env.group_id()),
        8 => call!(groups.send_message(v1::SendMessageRequest, authenticated: true),
            |m, _k| m.group_id = env.group_id()),
        9 => call!(groups.get_group_info(v1::GetGroupInfoRequest, authenticated: true),
            |m, _k| m.group_id = env.group_id()),
        10 => {
            call!(key_packages.publish_key_packages(v1::PublishKeyPackagesRequest, authenticated: true))
        }
        11 => {
            call!(key_packages.claim_key_packages(v1::ClaimKeyPackagesRequest, authenticated: true),
            |m, k| m.user = env.client(k).user)
        }
        12 => {
            call!(key_packages.count_key_packages(v1::CountKeyPackagesRequest, authenticated: true))
        }
        13 => call!(delivery.fetch(v1::FetchRequest, authenticated: true),
            |m, k| m.stream = Some(env.stream(k))),
        14 => call!(delivery.ack(v1::AckRequest, authenticated: true),
            |m, k| m.stream = Some(env.stream(k))),
        15 => call!(devices.list_devices(v1::ListDevicesRequest, authenticated: true),
            |m, k| m.user = env.client(k).user),
        16 => call!(devices.post_link_offer(v1::PostLinkOfferRequest, authenticated: false),
            |m, k| m.user = env.client(k).user),
        17 => call!(devices.take_link_offer(v1::TakeLinkOfferRequest, authenticated: true)),
        18 => call!(devices.post_link_answer(v1::PostLinkAnswerRequest, authenticated: true)),
        _ => call!(devices.take_link_answer(v1::TakeLinkAnswerRequest, authenticated: false)),
    }
});
