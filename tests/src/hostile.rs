//! [`HostileDs`]: a delivery service that lies to the clients behind it.
//!
//! It stands in front of a real DS and forwards every call, but an operator
//! who controls it can rewrite what clients receive: tamper with, drop,
//! withhold, reorder or replay group log entries (in the live stream and in
//! fetched pages), substitute the key packages a claim returns, and answer a
//! commit itself instead of passing it on (to fork a member off the group's
//! history). Tests of the client library put members behind one and check
//! that the client notices each of these. It can also play a failing
//! network, losing commits or their answers ([`Lost`]).
//!
//! [`write_external_commit`] is the operator going further: crafting an
//! external commit that adds a member of its own, from the GroupInfo and
//! public group state its database holds, and writing it straight into the
//! group's log.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use confide_client::{Api, Client, ClientId, StateLocation};
use confide_proto::ADMIN_TOKEN_HEADER;
use confide_proto::v1::{
    self, auth_service_client::AuthServiceClient, auth_service_server::AuthService,
    auth_service_server::AuthServiceServer, delivery_service_client::DeliveryServiceClient,
    delivery_service_server::DeliveryService, delivery_service_server::DeliveryServiceServer,
    group_service_client::GroupServiceClient, group_service_server::GroupService,
    group_service_server::GroupServiceServer, key_package_service_client::KeyPackageServiceClient,
    key_package_service_server::KeyPackageService,
    key_package_service_server::KeyPackageServiceServer,
};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

use confide_client::roster::fingerprint;
use confide_core::profile::{CIPHERSUITE, WIRE_FORMAT_POLICY};
use confide_ds::domain::{self, EntryKind};
use confide_ds::mls::{GroupHandle, dedup_key};
use confide_ds::store::NewMessage;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::app::TestApp;
use crate::member::Member;
use crate::rpc::raw_channel;

/// Where a group entry was on its way to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The live stream (`Subscribe`), one entry at a time.
    Live,
    /// A page the client asked for (`Fetch`).
    Fetch,
}

type EntryRewrite = Box<dyn FnMut(Via, Vec<v1::GroupEntry>) -> Vec<v1::GroupEntry> + Send>;
type ClaimRewrite =
    Box<dyn FnMut(&str, Vec<v1::ClaimedKeyPackage>) -> Vec<v1::ClaimedKeyPackage> + Send>;
type CommitAnswer =
    Box<dyn FnMut(&v1::SubmitCommitRequest) -> Option<v1::SubmitCommitResponse> + Send>;

/// What a lossy link between a client and the DS does to a call (a commit or
/// a `SendMessage`): the caller gets UNAVAILABLE either way, as after a broken
/// connection or a DS restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lost {
    /// The request never reaches the real DS.
    Request,
    /// The real DS gets the request and decides on it; its answer never
    /// comes back.
    Answer,
}

/// What the operator does to the traffic; everything not set passes through.
#[derive(Default)]
struct Attack {
    entries: Option<EntryRewrite>,
    claims: Option<ClaimRewrite>,
    commits: Option<CommitAnswer>,
    commit_loss: Option<Lost>,
    sends: Option<Lost>,
}

type Shared = Arc<Mutex<Attack>>;

/// A hostile DS on port 0 in front of a real one.
pub struct HostileDs {
    /// `http://127.0.0.1:<port>`, for clients.
    pub endpoint: String,
    attack: Shared,
    _stop: DropGuard,
}

impl HostileDs {
    /// Starts a DS that forwards everything to `app` until told otherwise.
    pub async fn in_front_of(app: &TestApp) -> Self {
        let upstream = Upstream {
            channel: raw_channel(&app.endpoint).await,
            attack: Shared::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding port 0");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound address"));
        let stop = CancellationToken::new();
        let attack = upstream.attack.clone();
        let server = Server::builder()
            .add_service(AuthServiceServer::new(upstream.clone()))
            .add_service(KeyPackageServiceServer::new(upstream.clone()))
            .add_service(GroupServiceServer::new(upstream.clone()))
            .add_service(DeliveryServiceServer::new(upstream))
            .serve_with_incoming_shutdown(
                accepted_connections(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(async move { server.await.expect("the hostile DS failed") });
        Self {
            endpoint,
            attack,
            _stop: stop.drop_guard(),
        }
    }

    /// Registers `user/device` through this DS, as a [`Member`] that
    /// records what its client reports about the DS rather than failing.
    pub async fn client(&self, user: &str, device: &str) -> Member {
        self.client_at(user, device, &StateLocation::Memory).await
    }

    /// Like [`HostileDs::client`], keeping the client's state at `state`
    /// (a file, for a client that is restarted).
    pub async fn client_at(&self, user: &str, device: &str, state: &StateLocation) -> Member {
        let api = Api::connect(&self.endpoint)
            .await
            .expect("connecting to the hostile DS");
        let id = ClientId::new(user, device).expect("a valid client name");
        let client = Client::register(api, id, state, "")
            .await
            .unwrap_or_else(|e| panic!("registering {user}/{device}: {e}"));
        Member::under_attack(client)
    }

    /// From now on, every group entry on its way to a client goes through
    /// `rewrite`, which returns what the client gets instead.
    pub fn rewrite_entries(
        &self,
        rewrite: impl FnMut(Via, Vec<v1::GroupEntry>) -> Vec<v1::GroupEntry> + Send + 'static,
    ) {
        self.attack.lock().expect("attack lock").entries = Some(Box::new(rewrite));
    }

    /// From now on, the key packages claimed for a user (named first) are
    /// replaced with what `rewrite` returns.
    pub fn rewrite_claims(
        &self,
        rewrite: impl FnMut(&str, Vec<v1::ClaimedKeyPackage>) -> Vec<v1::ClaimedKeyPackage>
        + Send
        + 'static,
    ) {
        self.attack.lock().expect("attack lock").claims = Some(Box::new(rewrite));
    }

    /// From now on, a commit for which `answer` returns a response is
    /// answered with it and never reaches the real DS.
    pub fn answer_commits(
        &self,
        answer: impl FnMut(&v1::SubmitCommitRequest) -> Option<v1::SubmitCommitResponse>
        + Send
        + 'static,
    ) {
        self.attack.lock().expect("attack lock").commits = Some(Box::new(answer));
    }

    /// From now on, every commit, and every resend of it, is lost as `loss`
    /// says.
    pub fn lose_commits(&self, loss: Lost) {
        self.attack.lock().expect("attack lock").commit_loss = Some(loss);
    }

    /// From now on, every `SendMessage` is lost on the way (`Lost::Request`)
    /// or on the way back (`Lost::Answer`), answered UNAVAILABLE.
    pub fn lose_sends(&self, lost: Lost) {
        self.attack.lock().expect("attack lock").sends = Some(lost);
    }

    /// Everything passes through unchanged again.
    pub fn stop_attacking(&self) {
        *self.attack.lock().expect("attack lock") = Attack::default();
    }
}

fn accepted_connections(
    listener: TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// The real DS, reached with the caller's credentials.
#[derive(Clone)]
struct Upstream {
    channel: Channel,
    attack: Shared,
}

/// The request to pass on: the same message and the caller's credentials.
fn forward<T>(request: Request<T>) -> Request<T> {
    let (metadata, _, message) = request.into_parts();
    let mut forwarded = Request::new(message);
    for key in ["authorization", ADMIN_TOKEN_HEADER] {
        if let Some(value) = metadata.get(key) {
            forwarded.metadata_mut().insert(key, value.clone());
        }
    }
    forwarded
}

impl Upstream {
    fn rewrite_entries(&self, via: Via, entries: Vec<v1::GroupEntry>) -> Vec<v1::GroupEntry> {
        match &mut self.attack.lock().expect("attack lock").entries {
            Some(rewrite) => rewrite(via, entries),
            None => entries,
        }
    }

    /// Rewrites the group entries among `envelopes`; inbox entries pass.
    fn rewrite_envelopes(&self, via: Via, envelopes: Vec<v1::Envelope>) -> Vec<v1::Envelope> {
        let (groups, others): (Vec<_>, Vec<_>) = envelopes
            .into_iter()
            .partition(|envelope| matches!(envelope.entry, Some(v1::envelope::Entry::Group(_))));
        let entries = groups
            .into_iter()
            .filter_map(|envelope| match envelope.entry {
                Some(v1::envelope::Entry::Group(entry)) => Some(entry),
                _ => None,
            })
            .collect();
        self.rewrite_entries(via, entries)
            .into_iter()
            .map(|entry| v1::Envelope {
                entry: Some(v1::envelope::Entry::Group(entry)),
            })
            .chain(others)
            .collect()
    }
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<v1::Envelope, Status>> + Send>>;

/// Implements a service on [`Upstream`]: the methods listed pass the call on
/// unchanged to the real DS; the items after the list are written out.
macro_rules! proxy {
    (
        $service:ident via $client:ident {
            $($method:ident($request:ident) -> $response:ident;)*
        }
        $($custom:tt)*
    ) => {
        #[tonic::async_trait]
        impl $service for Upstream {
            $(
                async fn $method(
                    &self,
                    request: Request<v1::$request>,
                ) -> Result<Response<v1::$response>, Status> {
                    $client::new(self.channel.clone()).$method(forward(request)).await
                }
            )*
            $($custom)*
        }
    };
}

proxy! {
    DeliveryService via DeliveryServiceClient {
        ack(AckRequest) -> AckResponse;
    }

    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<EnvelopeStream>, Status> {
        let upstream = DeliveryServiceClient::new(self.channel.clone())
            .subscribe(forward(request))
            .await?
            .into_inner();
        let this = self.clone();
        let stream = upstream.flat_map(move |item| {
            let items: Vec<Result<v1::Envelope, Status>> = match item {
                Ok(envelope) => this
                    .rewrite_envelopes(Via::Live, vec![envelope])
                    .into_iter()
                    .map(Ok)
                    .collect(),
                Err(status) => vec![Err(status)],
            };
            futures::stream::iter(items)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch(
        &self,
        request: Request<v1::FetchRequest>,
    ) -> Result<Response<v1::FetchResponse>, Status> {
        let page = DeliveryServiceClient::new(self.channel.clone())
            .fetch(forward(request))
            .await?
            .into_inner();
        Ok(Response::new(v1::FetchResponse {
            entries: self.rewrite_envelopes(Via::Fetch, page.entries),
        }))
    }
}

proxy! {
    KeyPackageService via KeyPackageServiceClient {
        publish_key_packages(PublishKeyPackagesRequest) -> PublishKeyPackagesResponse;
        count_key_packages(CountKeyPackagesRequest) -> CountKeyPackagesResponse;
    }

    async fn claim_key_packages(
        &self,
        request: Request<v1::ClaimKeyPackagesRequest>,
    ) -> Result<Response<v1::ClaimKeyPackagesResponse>, Status> {
        let user = request.get_ref().user.clone();
        let mut claimed = KeyPackageServiceClient::new(self.channel.clone())
            .claim_key_packages(forward(request))
            .await?
            .into_inner();
        if let Some(rewrite) = &mut self.attack.lock().expect("attack lock").claims {
            claimed.key_packages = rewrite(&user, claimed.key_packages);
        }
        Ok(Response::new(claimed))
    }
}

proxy! {
    GroupService via GroupServiceClient {
        create_group(CreateGroupRequest) -> CreateGroupResponse;
        submit_proposal(SubmitProposalRequest) -> SubmitProposalResponse;
        get_group_info(GetGroupInfoRequest) -> GetGroupInfoResponse;
        list_groups(ListGroupsRequest) -> ListGroupsResponse;
    }

    async fn send_message(
        &self,
        request: Request<v1::SendMessageRequest>,
    ) -> Result<Response<v1::SendMessageResponse>, Status> {
        let lost = self.attack.lock().expect("attack lock").sends;
        let lost_answer = Status::unavailable("the connection was lost");
        match lost {
            Some(Lost::Request) => Err(lost_answer),
            Some(Lost::Answer) => {
                GroupServiceClient::new(self.channel.clone())
                    .send_message(forward(request))
                    .await?;
                Err(lost_answer)
            }
            None => {
                GroupServiceClient::new(self.channel.clone())
                    .send_message(forward(request))
                    .await
            }
        }
    }

    async fn submit_commit(
        &self,
        request: Request<v1::SubmitCommitRequest>,
    ) -> Result<Response<v1::SubmitCommitResponse>, Status> {
        let (answer, loss) = {
            let mut attack = self.attack.lock().expect("attack lock");
            let answer = match &mut attack.commits {
                Some(answer) => answer(request.get_ref()),
                None => None,
            };
            (answer, attack.commit_loss)
        };
        let lost = || Status::unavailable("connection lost");
        match loss {
            Some(Lost::Request) => return Err(lost()),
            Some(Lost::Answer) => {
                let decided = GroupServiceClient::new(self.channel.clone())
                    .submit_commit(forward(request))
                    .await;
                tracing::debug!(?decided, "the DS's answer to a commit, lost on its way");
                return Err(lost());
            }
            None => {}
        }
        match answer {
            Some(response) => Ok(Response::new(response)),
            None => {
                GroupServiceClient::new(self.channel.clone())
                    .submit_commit(forward(request))
                    .await
            }
        }
    }
}

proxy! {
    AuthService via AuthServiceClient {
        register_client(RegisterClientRequest) -> RegisterClientResponse;
        create_challenge(CreateChallengeRequest) -> CreateChallengeResponse;
        authenticate(AuthenticateRequest) -> AuthenticateResponse;
        revoke_session(RevokeSessionRequest) -> RevokeSessionResponse;
        remove_client(RemoveClientRequest) -> RemoveClientResponse;
        get_service_info(GetServiceInfoRequest) -> GetServiceInfoResponse;
    }
}

/// The operator adds `ghost` to `group` on its own: it crafts an external
/// commit (RFC 9420 §12.4.3.2) for the group's current epoch from the
/// GroupInfo and ratchet tree in its database, and appends it to the group's
/// log as it would one of its own entries, past every check the DS makes.
/// Returns the ghost's key fingerprint.
pub async fn write_external_commit(app: &TestApp, group: &[u8], ghost: &ClientId) -> String {
    let group_id = domain::GroupId::new(group.to_vec()).expect("a valid group id");
    let (epoch, group_info) = app
        .store
        .group_info(&group_id)
        .await
        .expect("reading the GroupInfo")
        .expect("the group has a GroupInfo");
    let state = app
        .store
        .group_state(&group_id)
        .await
        .expect("reading the group state")
        .expect("the group has a state");
    let tree = GroupHandle::from_blob(&group_id, &state.state)
        .expect("loading the public group state")
        .ratchet_tree();

    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
        .expect("generating a signature key");
    let credential = CredentialWithKey {
        credential: BasicCredential::new(ghost.identity()).into(),
        signature_key: signer.public().into(),
    };
    let MlsMessageBodyIn::GroupInfo(group_info) = MlsMessageIn::tls_deserialize_exact(&group_info)
        .expect("decoding the GroupInfo")
        .extract()
    else {
        panic!("the stored GroupInfo is something else");
    };
    let tree = RatchetTreeIn::tls_deserialize_exact(&tree).expect("decoding the ratchet tree");
    let config = MlsGroupJoinConfig::builder()
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .build();
    let (_, bundle) = MlsGroup::external_commit_builder()
        .with_ratchet_tree(tree)
        .with_config(config)
        .build_group(&provider, group_info, credential)
        .expect("joining from the GroupInfo")
        .load_psks(provider.storage())
        .expect("no PSKs")
        .build(provider.rand(), provider.crypto(), &signer, |_| true)
        .expect("building the external commit")
        .finalize(&provider)
        .expect("finalising the external commit");
    let commit = bundle
        .into_commit()
        .tls_serialize_detached()
        .expect("encoding the commit");
    let key = dedup_key("operator", &[&commit]);
    app.store
        .append(NewMessage {
            group_id,
            sender: None,
            dedup_key: key,
            content_key: key,
            kind: EntryKind::Commit,
            epoch,
            message: commit.into(),
            max_epoch_lag: 0,
            new_state: None,
        })
        .await
        .expect("writing the commit into the log");
    fingerprint(signer.public())
}
