//! [`Client`]: one device's view of Confide. It owns the device's signature
//! key and every group secret; the delivery service only ever sees
//! PublicMessage handshakes and PrivateMessage ciphertext.
//!
//! Ratchet-tree operations and membership changes happen here. A commit that
//! loses the race for its epoch is dropped, the client catches up from the
//! group log, and the operation is rebuilt and retried without the caller
//! doing anything. A commit that never got an answer stays pending, in doubt,
//! until the group log shows whether the group took it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use confide_core::ClientId;
use confide_core::profile::{self, CIPHERSUITE, client_of};
use confide_proto::v1;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;

use crate::api::Api;
use crate::error::{ClientError, ClientResult, in_doubt, mls, wrong_epoch};
use crate::events::{Event, GroupId};
use crate::lock::StateLock;
use crate::roster::{self, GroupMember};
use crate::store::{self, CommitInDoubt, Provider, StateDb, StateLocation, StoredIdentity, Stream};

mod outbox;

/// How often an operation is rebuilt after losing a commit race.
const MAX_COMMIT_ATTEMPTS: u32 = 32;
/// Times a commit whose answer never came is sent again, and the pause
/// before the first resend (growing linearly): 11 s in all.
const COMMIT_RESENDS: u32 = 10;
const COMMIT_RESEND_AFTER: Duration = Duration::from_millis(200);
/// Key packages uploaded at registration and on each low-pool notice.
pub const KEY_PACKAGE_BATCH: usize = 20;
const FETCH_PAGE: u32 = 500;

fn to_bytes(message: MlsMessageOut) -> ClientResult<Vec<u8>> {
    message.to_bytes().map_err(mls)
}

fn group_selector(group_id: &[u8]) -> v1::StreamSelector {
    v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::GroupId(
            group_id.to_vec().into(),
        )),
    }
}

fn inbox_selector() -> v1::StreamSelector {
    v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
    }
}

/// A membership change to commit.
enum Change {
    Add(Vec<KeyPackage>),
    Remove(Vec<String>),
    Update,
    /// Commit the proposals queued in the group (the DS's removals).
    PendingProposals,
}

/// What an accepted commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSummary {
    pub seq: u64,
    pub epoch: u64,
    /// Commit races lost before this one was accepted.
    pub retries: u32,
}

/// What [`Client::add_users`] did: the clients it added and its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub clients: Vec<ClientId>,
    pub commit: CommitSummary,
}

pub struct Client {
    id: ClientId,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    provider: Provider,
    db: StateDb,
    api: Api,
    groups: HashMap<GroupId, MlsGroup>,
    /// Events not yet handed over, with their numbers in the state file.
    events: VecDeque<(i64, Event)>,
    stream: Option<tonic::Streaming<v1::Envelope>>,
    /// Groups with a DS removal proposal this client has yet to commit.
    external_removals: BTreeSet<GroupId>,
    /// The pause before the first resend of an unanswered commit.
    commit_resend_after: Duration,
    /// The state file's lock, held as long as the client lives (last, so
    /// it is released after the state's connections close).
    _lock: Option<StateLock>,
}

/// An entry of the live stream, received ([`Client::receive`]) but not yet
/// processed ([`Client::process`]).
pub struct Incoming(v1::Envelope);

/// Takes the lock on a state file, so that no other client, in this
/// process or another, holds it while this one lives.
fn lock(location: &StateLocation) -> ClientResult<Option<StateLock>> {
    match location {
        StateLocation::File(path) => StateLock::acquire(path).map(Some),
        StateLocation::Memory => Ok(None),
    }
}

impl Client {
    /// Creates a new identity at `location` (a state file made private),
    /// registers it with the DS, authenticates and uploads key packages (and
    /// a last-resort one). A state file it made is deleted again if the DS
    /// did not register the identity: it would hold a client the DS does not
    /// know, and block registering again at that path.
    pub async fn register(
        api: Api,
        id: ClientId,
        location: &StateLocation,
        registration_token: &str,
    ) -> ClientResult<Self> {
        let lock = lock(location)?;
        let (provider, db, created) = store::create(location)?;
        let registered = match Self::new_identity(&id, &provider, &db) {
            Ok(signer) => api
                .auth()
                .register_client(v1::RegisterClientRequest {
                    client: Some((&id).into()),
                    signature_public_key: signer.to_public_vec().into(),
                    registration_token: registration_token.to_string(),
                })
                .await
                .map(|_| signer)
                .map_err(ClientError::from),
            Err(error) => Err(error),
        };
        let signer = match registered {
            Ok(signer) => signer,
            Err(error) => {
                drop((provider, db));
                if let (StateLocation::File(path), true) = (location, created) {
                    store::remove(path);
                }
                return Err(error);
            }
        };
        let mut client = Self::assemble(api, id, signer, provider, db, lock)?;
        client.authenticate().await?;
        client.publish_key_packages(KEY_PACKAGE_BATCH, true).await?;
        Ok(client)
    }

    /// Makes and stores a signature key for `id` in a state without a client.
    fn new_identity(
        id: &ClientId,
        provider: &Provider,
        db: &StateDb,
    ) -> ClientResult<SignatureKeyPair> {
        if db.identity()?.is_some() {
            return Err(ClientError::Invalid(
                "this state file already holds a client; open it instead".into(),
            ));
        }
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        db.save_identity(&StoredIdentity {
            user: id.user().to_string(),
            device: id.device().to_string(),
            signature_public_key: signer.to_public_vec(),
        })?;
        Ok(signer)
    }

    /// Restores a client from its state and authenticates; every group it
    /// belonged to resumes where it left off. Fails at once with
    /// [`ClientError::StateLocked`] if another client holds the state file.
    pub async fn open(api: Api, location: &StateLocation) -> ClientResult<Self> {
        if let StateLocation::File(path) = location
            && !path.is_file()
        {
            // Before the lock, which would leave a lock file behind.
            return Err(ClientError::NoStateFile(path.clone()));
        }
        let lock = lock(location)?;
        let (provider, db) = store::open(location).inspect_err(|_| {
            // Not a state file: no lock file of ours stays beside it.
            if let Some(lock) = &lock {
                lock.remove_if_made();
            }
        })?;
        let identity = db
            .identity()?
            .ok_or_else(|| ClientError::Invalid("no client in this state file".into()))?;
        let id = ClientId::new(identity.user, identity.device)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let signer = SignatureKeyPair::read(
            provider.storage(),
            &identity.signature_public_key,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| ClientError::Invalid("the signature key is missing".into()))?;
        let mut client = Self::assemble(api, id, signer, provider, db, lock)?;
        for group_id in client.db.groups()? {
            let mut group = MlsGroup::load(
                client.provider.storage(),
                &openmls::group::GroupId::from_slice(&group_id),
            )
            .map_err(mls)?
            .ok_or_else(|| ClientError::Invalid("a group's state is missing".into()))?;
            if group.pending_commit().is_some() && client.db.commit_in_doubt(&group_id)?.is_none() {
                // Staged but stopped before it was recorded, so never sent.
                group
                    .clear_pending_commit(client.provider.storage())
                    .map_err(mls)?;
            }
            client.groups.insert(group_id, group);
        }
        client.authenticate().await?;
        Ok(client)
    }

    fn assemble(
        api: Api,
        id: ClientId,
        signer: SignatureKeyPair,
        provider: Provider,
        db: StateDb,
        lock: Option<StateLock>,
    ) -> ClientResult<Self> {
        let events = db.events()?.into();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.identity()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        Ok(Self {
            id,
            signer,
            credential,
            provider,
            db,
            api,
            groups: HashMap::new(),
            events,
            stream: None,
            external_removals: BTreeSet::new(),
            commit_resend_after: COMMIT_RESEND_AFTER,
            _lock: lock,
        })
    }

    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// Sets the pause before the first resend of a commit that got no
    /// answer; the pause grows linearly over the resends, so the default
    /// 200 ms gives the DS about 11 s before the commit is left in doubt
    /// ([`ClientError::CommitInDoubt`]). For tests, which shorten it.
    pub fn set_commit_resend_pause(&mut self, pause: Duration) {
        self.commit_resend_after = pause;
    }

    /// The authenticated connection, for calls the library does not wrap.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Switches to another connection (a restarted or different DS replica)
    /// and authenticates on it.
    pub async fn reconnect(&mut self, api: Api) -> ClientResult<()> {
        self.api = api;
        self.authenticate().await
    }

    /// Proves possession of the signature key and takes a fresh session token.
    pub async fn authenticate(&mut self) -> ClientResult<()> {
        let challenge = self
            .api
            .auth()
            .create_challenge(v1::CreateChallengeRequest {
                client: Some((&self.id).into()),
            })
            .await?
            .into_inner()
            .challenge;
        let signature = self
            .signer
            .sign(&confide_proto::challenge_signing_payload(&challenge))
            .map_err(|e| ClientError::Mls(format!("signing the challenge: {e:?}")))?;
        let session = self
            .api
            .auth()
            .authenticate(v1::AuthenticateRequest {
                client: Some((&self.id).into()),
                challenge,
                signature: signature.into(),
            })
            .await?
            .into_inner();
        self.api.set_token(&session.session_token)?;
        self.stream = None;
        Ok(())
    }

    /// Uploads `count` fresh key packages, and a new last-resort one if asked.
    /// Returns the DS's pool size.
    pub async fn publish_key_packages(
        &mut self,
        count: usize,
        with_last_resort: bool,
    ) -> ClientResult<u32> {
        let key_packages = (0..count)
            .map(|_| self.new_key_package(false).map(Into::into))
            .collect::<ClientResult<Vec<_>>>()?;
        let last_resort = if with_last_resort {
            self.new_key_package(true)?
        } else {
            Vec::new()
        };
        let request = self.api.request(v1::PublishKeyPackagesRequest {
            key_packages,
            last_resort_key_package: last_resort.into(),
        });
        Ok(self
            .api
            .key_packages()
            .publish_key_packages(request)
            .await?
            .into_inner()
            .available)
    }

    fn new_key_package(&self, last_resort: bool) -> ClientResult<Vec<u8>> {
        let bundle = profile::key_package_builder(last_resort)
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        to_bytes(MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// Creates a group with this client as its only member.
    pub async fn create_group(&mut self) -> ClientResult<GroupId> {
        let request = self.api.request(v1::GetServiceInfoRequest {});
        let info = self
            .api
            .auth()
            .get_service_info(request)
            .await?
            .into_inner();
        let external_sender = info.external_sender.map(|ds| {
            ExternalSender::new(
                ds.signature_public_key.to_vec().into(),
                BasicCredential::new(ds.identity.to_vec()).into(),
            )
        });
        let group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &profile::group_create_config(external_sender),
            self.credential.clone(),
        )
        .map_err(mls)?;
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(mls)?;
        let ratchet_tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(mls)?;
        let request = self.api.request(v1::CreateGroupRequest {
            group_info: to_bytes(group_info)?.into(),
            ratchet_tree: ratchet_tree.into(),
        });
        let group_id = self
            .api
            .groups()
            .create_group(request)
            .await?
            .into_inner()
            .group_id
            .to_vec();
        self.db.set_processed(&Stream::Group(group_id.clone()), 0)?;
        self.groups.insert(group_id.clone(), group);
        Ok(group_id)
    }

    /// Claims a key package for every device of each user and adds them all
    /// in one commit.
    pub async fn add_users(&mut self, group_id: &[u8], users: &[&str]) -> ClientResult<Added> {
        if users.is_empty() {
            // A commit adding nobody would still start a new epoch.
            return Err(ClientError::Invalid("no users to add".into()));
        }
        let mut key_packages = Vec::new();
        let mut added = Vec::new();
        for user in users {
            let request = self.api.request(v1::ClaimKeyPackagesRequest {
                user: user.to_string(),
            });
            let claimed = self
                .api
                .key_packages()
                .claim_key_packages(request)
                .await?
                .into_inner()
                .key_packages;
            for claimed in claimed {
                let key_package = self.verify_claimed(&claimed, user)?;
                added.push(client_of(key_package.leaf_node().credential()).map_err(mls)?);
                key_packages.push(key_package);
            }
        }
        let commit = self.commit(group_id, Change::Add(key_packages)).await?;
        Ok(Added {
            clients: added,
            commit,
        })
    }

    /// Checks a claimed key package is valid and really names a device of `user`,
    /// so a DS cannot slip another credential into the group under that name.
    fn verify_claimed(
        &self,
        claimed: &v1::ClaimedKeyPackage,
        user: &str,
    ) -> ClientResult<KeyPackage> {
        let message = MlsMessageIn::tls_deserialize_exact(&claimed.key_package).map_err(mls)?;
        let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
            return Err(ClientError::Invalid(
                "the DS returned something other than a key package".into(),
            ));
        };
        let key_package = key_package
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?;
        let owner = client_of(key_package.leaf_node().credential()).map_err(mls)?;
        if owner.user() != user {
            return Err(ClientError::Invalid(format!(
                "the DS returned a key package of {owner} for user {user}"
            )));
        }
        Ok(key_package)
    }

    /// Removes every device of the given users in one commit.
    pub async fn remove_users(
        &mut self,
        group_id: &[u8],
        users: &[&str],
    ) -> ClientResult<CommitSummary> {
        if users.is_empty() {
            return Err(ClientError::Invalid("no users to remove".into()));
        }
        self.commit(
            group_id,
            Change::Remove(users.iter().map(|u| u.to_string()).collect()),
        )
        .await
    }

    /// Refreshes this client's leaf keys (post-compromise security).
    pub async fn self_update(&mut self, group_id: &[u8]) -> ClientResult<CommitSummary> {
        self.commit(group_id, Change::Update).await
    }

    async fn commit(&mut self, group_id: &[u8], change: Change) -> ClientResult<CommitSummary> {
        for retries in 0..MAX_COMMIT_ATTEMPTS {
            self.catch_up_group(group_id).await?;
            self.settle_commit_in_doubt(group_id).await?;
            let group = self
                .groups
                .get_mut(group_id)
                .ok_or(ClientError::UnknownGroup)?;
            let removals: Vec<LeafNodeIndex> = match &change {
                Change::Remove(users) => {
                    let leaves: Vec<LeafNodeIndex> = group
                        .members()
                        .filter(|m| {
                            client_of(&m.credential)
                                .is_ok_and(|c| users.iter().any(|u| u == c.user()))
                        })
                        .map(|m| m.index)
                        .collect();
                    if leaves.is_empty() {
                        return Err(ClientError::Invalid(
                            "none of those users is a member of the group".into(),
                        ));
                    }
                    leaves
                }
                _ => Vec::new(),
            };
            if matches!(change, Change::PendingProposals)
                && group.pending_proposals().next().is_none()
            {
                // Another member committed them meanwhile.
                return Err(ClientError::NothingToCommit);
            }
            let builder = group.commit_builder();
            let builder = match &change {
                // An Add needs no update path (RFC 9420 §12.4): without
                // one, adding to a large group costs the committer O(1)
                // encryptions rather than one per copath resolution.
                Change::Add(key_packages) => builder.propose_adds(key_packages.iter().cloned()),
                Change::Remove(_) => builder.propose_removals(removals),
                Change::PendingProposals => builder.consume_proposal_store(true),
                Change::Update => builder.consume_proposal_store(true).force_self_update(true),
            };
            // The DS needs the new epoch's GroupInfo; it serves the ratchet
            // tree itself, so neither the GroupInfo nor a Welcome carries it.
            let (commit, welcome, group_info) = builder
                .load_psks(self.provider.storage())
                .map_err(mls)?
                .create_group_info(true)
                .build(
                    self.provider.rand(),
                    self.provider.crypto(),
                    &self.signer,
                    |_| true,
                )
                .map_err(mls)?
                .stage_commit(&self.provider)
                .map_err(mls)?
                .into_messages();
            let group_info = group_info
                .ok_or_else(|| ClientError::Mls("openmls produced no GroupInfo".into()))?;
            let submitted = CommitInDoubt {
                epoch: group.epoch().as_u64(),
                commit: to_bytes(commit)?,
                welcome: welcome.map(to_bytes).transpose()?.unwrap_or_default(),
                group_info: to_bytes(group_info)?,
            };
            // Recorded before it leaves: from here until a verdict, the
            // group may have taken it.
            self.db.set_commit_in_doubt(group_id, &submitted)?;
            let answer = self.submit_commit(group_id, &submitted).await;
            if let Some(accepted) = self.conclude_commit(group_id, answer)? {
                return Ok(CommitSummary {
                    seq: accepted.seq,
                    epoch: accepted.epoch,
                    retries,
                });
            }
            tracing::debug!(client = %self.id, retries, "lost a commit race; catching up");
        }
        Err(ClientError::TooManyRetries(MAX_COMMIT_ATTEMPTS))
    }

    /// Submits a commit, resending the same bytes while no answer comes.
    ///
    /// No answer (the DS restarting, the connection lost) does not mean the
    /// commit was refused: the DS may have accepted it. The same bytes again
    /// get the original answer (a commit is accepted once per epoch), so
    /// resend rather than give up on a commit the group may already have
    /// merged.
    async fn submit_commit(
        &mut self,
        group_id: &[u8],
        commit: &CommitInDoubt,
    ) -> Result<v1::SubmitCommitResponse, tonic::Status> {
        let request = v1::SubmitCommitRequest {
            group_id: group_id.to_vec().into(),
            commit: commit.commit.clone().into(),
            welcome: commit.welcome.clone().into(),
            group_info: commit.group_info.clone().into(),
        };
        let mut resend = 0;
        loop {
            let answer = self
                .api
                .groups()
                .submit_commit(self.api.request(request.clone()))
                .await;
            match answer {
                Err(status) if in_doubt(&status) && resend < COMMIT_RESENDS => {
                    resend += 1;
                    tracing::debug!(client = %self.id, %status, resend, "no answer to a commit; sending it again");
                    tokio::time::sleep(self.commit_resend_after * resend).await;
                }
                answer => return answer.map(tonic::Response::into_inner),
            }
        }
    }

    /// Acts on the DS's answer to the group's pending commit: merges it when
    /// accepted (`Some`), drops it when refused (`None` for a lost race, the
    /// error otherwise), and keeps it, in doubt, when there was no answer.
    fn conclude_commit(
        &mut self,
        group_id: &[u8],
        answer: Result<v1::SubmitCommitResponse, tonic::Status>,
    ) -> ClientResult<Option<v1::SubmitCommitResponse>> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ClientError::UnknownGroup)?;
        match answer {
            Ok(accepted) => {
                group.merge_pending_commit(&self.provider).map_err(mls)?;
                self.db.mark_own(group_id, accepted.seq)?;
                self.db.forget_commit_in_doubt(group_id)?;
                Ok(Some(accepted))
            }
            Err(status) if in_doubt(&status) => {
                tracing::warn!(client = %self.id, %status, "no answer to a commit; it stays pending until the group's log settles it");
                Err(ClientError::CommitInDoubt)
            }
            Err(status) => {
                group
                    .clear_pending_commit(self.provider.storage())
                    .map_err(mls)?;
                self.db.forget_commit_in_doubt(group_id)?;
                match wrong_epoch(&status) {
                    Some(_) => Ok(None),
                    None => Err(status.into()),
                }
            }
        }
    }

    /// Settles the group's commit left in doubt, if any, before anything new
    /// is built on the group. The log settles it when it holds a commit for
    /// that epoch (ours is merged, another's replaces it: see
    /// [`Client::apply_group_entry`]); when it holds none yet, the DS never
    /// got the commit or has not finished with it, and sending the same
    /// bytes again gets its verdict.
    async fn settle_commit_in_doubt(&mut self, group_id: &[u8]) -> ClientResult<()> {
        if self.db.commit_in_doubt(group_id)?.is_none() {
            return Ok(());
        }
        self.catch_up_group(group_id).await?;
        let Some(in_doubt) = self.db.commit_in_doubt(group_id)? else {
            return Ok(());
        };
        if self
            .groups
            .get(group_id)
            .is_none_or(|group| group.epoch().as_u64() > in_doubt.epoch)
        {
            // Settled by the log before a stop left the record behind.
            return self.db.forget_commit_in_doubt(group_id);
        }
        let answer = self.submit_commit(group_id, &in_doubt).await;
        if self.conclude_commit(group_id, answer)?.is_none() {
            // Another commit took the epoch; the log has it.
            self.catch_up_group(group_id).await?;
        }
        Ok(())
    }

    /// Encrypts `body` for the group's current epoch and returns the MLS
    /// PrivateMessage exactly as [`Client::send_with_id`] puts it in a
    /// `SendMessageRequest`, without sending it. Each call advances this
    /// member's sender ratchet, so each result is a distinct message; it stays
    /// sendable until the group is `max_epoch_lag` epochs further on. For a
    /// benchmark that keeps client crypto out of what it times
    /// (`confide-ingress`); messages sent this way are not recorded as the
    /// client's own, so the client would not recognise them in its log.
    pub fn encrypt_message(&mut self, group_id: &[u8], body: &[u8]) -> ClientResult<Vec<u8>> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ClientError::UnknownGroup)?;
        let message = group
            .create_message(&self.provider, &self.signer, body)
            .map_err(mls)?;
        to_bytes(message)
    }

    /// Pulls and processes everything pending (inbox, then every group) and
    /// returns the events, in order.
    pub async fn sync(&mut self) -> ClientResult<Vec<Event>> {
        self.catch_up().await?;
        let events: Vec<(i64, Event)> = self.events.drain(..).collect();
        if let Some((last, _)) = events.last() {
            self.db.events_taken(*last)?;
        }
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }

    /// Pulls and processes everything pending, like [`Client::sync`], but
    /// keeps the events for a later `sync` or [`Client::next_event`]: for
    /// reading the group's current roster without taking its events.
    pub async fn catch_up(&mut self) -> ClientResult<()> {
        self.flush_outbox().await?;
        self.catch_up_inbox().await?;
        let groups: Vec<GroupId> = self.groups.keys().cloned().collect();
        for group_id in groups {
            self.catch_up_group(&group_id).await?;
            self.settle_commit_in_doubt(&group_id).await?;
        }
        self.commit_external_removals().await
    }

    /// Keeps an event (in the state file too) until it is handed over.
    fn emit(&mut self, event: Event) -> ClientResult<()> {
        let id = self.db.push_event(&event)?;
        self.events.push_back((id, event));
        Ok(())
    }

    /// Hands over the oldest event kept, if any.
    pub fn take_event(&mut self) -> ClientResult<Option<Event>> {
        let Some((id, event)) = self.events.pop_front() else {
            return Ok(None);
        };
        self.db.events_taken(id)?;
        Ok(Some(event))
    }

    /// Commits the removals the DS proposed (deprovisioned devices). Every
    /// member tries; one commit wins the epoch and the others, catching up,
    /// find nothing left to commit.
    async fn commit_external_removals(&mut self) -> ClientResult<()> {
        while let Some(group_id) = self.external_removals.pop_first() {
            if !self.groups.contains_key(&group_id) {
                continue;
            }
            match self.commit(&group_id, Change::PendingProposals).await {
                Ok(_) | Err(ClientError::NothingToCommit) => {}
                Err(error) => {
                    self.external_removals.insert(group_id);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// The next event from the live stream (opened on first use).
    ///
    /// Not cancel-safe: dropped while it processes an entry, it may leave
    /// that entry half done. To wait for something else at the same time,
    /// race [`Client::receive`] instead, then [`Client::process`] what it
    /// returns and take the events ([`Client::take_event`]).
    pub async fn next_event(&mut self) -> ClientResult<Event> {
        if self.stream.is_none() {
            self.flush_outbox().await?;
        }
        loop {
            if let Some(event) = self.take_event()? {
                return Ok(event);
            }
            self.commit_external_removals().await?;
            if let Some(event) = self.take_event()? {
                return Ok(event);
            }
            let incoming = self.receive().await?;
            self.process(incoming).await?;
        }
    }

    /// Waits for the next entry of the live stream (opened on first use).
    /// Cancel-safe: dropped while waiting, it has changed nothing, and the
    /// entry it was waiting for is returned by the next call.
    pub async fn receive(&mut self) -> ClientResult<Incoming> {
        if self.stream.is_none() {
            let request = self.api.request(v1::SubscribeRequest {});
            self.stream = Some(self.api.delivery().subscribe(request).await?.into_inner());
        }
        let stream = self.stream.as_mut().expect("opened above");
        match stream.message().await {
            Ok(Some(envelope)) => Ok(Incoming(envelope)),
            Ok(None) => {
                self.stream = None;
                Err(ClientError::StreamEnded)
            }
            Err(status) => {
                self.stream = None;
                Err(status.into())
            }
        }
    }

    /// Processes an entry [`Client::receive`] returned (refilling a gap
    /// before it from the log) and acknowledges it; its events are kept
    /// until taken. Run it to completion, never inside a `select!`.
    pub async fn process(&mut self, incoming: Incoming) -> ClientResult<()> {
        match incoming.0.entry {
            Some(v1::envelope::Entry::Group(entry)) => {
                let group_id = entry.group_id.to_vec();
                let processed = self.db.processed(&Stream::Group(group_id.clone()))?;
                if entry.seq > processed + 1 {
                    // A gap in the live stream (a dropped or reordered
                    // entry): refill it, in order, from the log. The
                    // entry itself is then usually a duplicate.
                    self.catch_up_group(&group_id).await?;
                }
                if self.apply_group_entry(entry)? {
                    self.ack(group_selector(&group_id)).await?;
                }
            }
            Some(v1::envelope::Entry::Inbox(entry)) => {
                if entry.seq > self.db.processed(&Stream::Inbox)? + 1 {
                    self.catch_up_inbox().await?;
                } else {
                    let seq = entry.seq;
                    self.apply_inbox_entry(entry).await?;
                    self.api.ack(inbox_selector(), seq).await?;
                }
            }
            None => {}
        }
        self.commit_external_removals().await
    }

    /// Acknowledges everything processed on a stream.
    ///
    /// Methods that await take `&mut self`: `Client` is `Send` but not `Sync`
    /// (it owns SQLite connections), so its futures stay `Send` only if no
    /// `&Client` is held across an await.
    async fn ack(&mut self, stream: v1::StreamSelector) -> ClientResult<()> {
        let seq = match &stream.stream {
            Some(v1::stream_selector::Stream::GroupId(id)) => {
                self.db.processed(&Stream::Group(id.to_vec()))?
            }
            _ => self.db.processed(&Stream::Inbox)?,
        };
        self.api.ack(stream, seq).await
    }

    async fn catch_up_inbox(&mut self) -> ClientResult<()> {
        loop {
            let after = self.db.processed(&Stream::Inbox)?;
            let entries = self.api.fetch(inbox_selector(), after, FETCH_PAGE).await?;
            if entries.is_empty() {
                break;
            }
            for envelope in entries {
                if let Some(v1::envelope::Entry::Inbox(entry)) = envelope.entry {
                    self.apply_inbox_entry(entry).await?;
                }
            }
        }
        self.ack(inbox_selector()).await
    }

    /// Reads and applies every entry of the group after what was processed.
    async fn catch_up_group(&mut self, group_id: &[u8]) -> ClientResult<()> {
        let stream = Stream::Group(group_id.to_vec());
        loop {
            if !self.groups.contains_key(group_id) {
                return Ok(());
            }
            let after = self.db.processed(&stream)?;
            let mut entries: Vec<v1::GroupEntry> = self
                .api
                .fetch(group_selector(group_id), after, FETCH_PAGE)
                .await?
                .into_iter()
                .filter_map(|envelope| match envelope.entry {
                    Some(v1::envelope::Entry::Group(entry)) if entry.group_id == group_id => {
                        Some(entry)
                    }
                    _ => None,
                })
                .filter(|entry| entry.seq > after)
                .collect();
            if entries.is_empty() {
                break;
            }
            // The DS sends a page in order; one that does not is put back
            // in order rather than trusted.
            entries.sort_by_key(|entry| entry.seq);
            for entry in entries {
                self.apply_group_entry(entry)?;
            }
        }
        if self.groups.contains_key(group_id) {
            self.ack(group_selector(group_id)).await?;
        }
        Ok(())
    }

    /// Applies the next entry of a group log: one already processed (a
    /// duplicate, or a replay under its old number) is ignored, and one past
    /// the next number is applied after reporting the entries skipped
    /// ([`Event::Gap`]). Returns whether the group is still tracked (false
    /// once this client was removed).
    fn apply_group_entry(&mut self, entry: v1::GroupEntry) -> ClientResult<bool> {
        let group_id = entry.group_id.to_vec();
        let stream = Stream::Group(group_id.clone());
        let processed = self.db.processed(&stream)?;
        if entry.seq <= processed {
            return Ok(true);
        }
        if entry.seq > processed + 1 && self.groups.contains_key(&group_id) {
            tracing::warn!(client = %self.id, after = processed, next = entry.seq, "entries withheld");
            self.emit(Event::Gap {
                group: group_id.clone(),
                after: processed,
                next: entry.seq,
            })?;
        }
        // Our own entry: answered when sent, or one whose answer never came
        // (its bytes are in the outbox, which now learns its seq).
        if self.db.take_own(&group_id, entry.seq)?
            || self
                .db
                .outgoing_in_log(&group_id, &entry.message, entry.seq)?
        {
            self.db.set_processed(&stream, entry.seq)?;
            return Ok(true);
        }
        let joined_epoch = self.db.joined_epoch(&group_id)?;
        let in_doubt = self.db.commit_in_doubt(&group_id)?;
        let Some(group) = self.groups.get_mut(&group_id) else {
            return Ok(false);
        };
        let mut removed = false;
        // A commit left in doubt is settled by the log: the entry that is
        // ours merges it (openmls recognises its pending commit), another
        // commit for that epoch replaces it (`process_entry`); either moves
        // the group on.
        let processed = process_entry(group, &self.provider, &entry, joined_epoch);
        if let Some(commit) = &in_doubt
            && group.epoch().as_u64() > commit.epoch
        {
            let ours = entry.message.as_ref() == commit.commit.as_slice();
            tracing::debug!(client = %self.id, seq = entry.seq, ours, "the log settled a commit in doubt");
            self.db.forget_commit_in_doubt(&group_id)?;
        }
        match processed {
            Ok(events) => {
                if group
                    .pending_proposals()
                    .any(|p| matches!(p.sender(), Sender::External(_)))
                {
                    self.external_removals.insert(group_id.clone());
                }
                for event in events {
                    removed |= matches!(event, Event::Removed { .. });
                    self.emit(event)?;
                }
            }
            Err(reason) => {
                tracing::warn!(client = %self.id, group = %hex::encode(&group_id[..group_id.len().min(4)]), seq = entry.seq, %reason, "could not process an entry");
                self.emit(Event::Undecryptable {
                    group: group_id.clone(),
                    seq: entry.seq,
                    reason,
                })?;
            }
        }
        if removed {
            // Forget the group entirely, so a later Welcome can re-add us.
            if let Some(mut group) = self.groups.remove(&group_id) {
                group.delete(self.provider.storage()).map_err(mls)?;
            }
            self.db.forget_stream(&stream)?;
            self.db.forget_commit_in_doubt(&group_id)?;
            return Ok(false);
        }
        self.db.set_processed(&stream, entry.seq)?;
        Ok(true)
    }

    async fn apply_inbox_entry(&mut self, entry: v1::InboxEntry) -> ClientResult<()> {
        if entry.seq <= self.db.processed(&Stream::Inbox)? {
            return Ok(());
        }
        match entry.item {
            Some(v1::inbox_entry::Item::Welcome(item)) => match self.join(&item) {
                Ok(event) => self.emit(event)?,
                Err(error) => {
                    tracing::warn!(client = %self.id, %error, "could not join from a Welcome");
                    self.emit(Event::Undecryptable {
                        group: item.group_id.to_vec(),
                        seq: item.commit_seq,
                        reason: error.to_string(),
                    })?;
                }
            },
            Some(v1::inbox_entry::Item::KeyPackagesLow(_)) => {
                let uploaded = KEY_PACKAGE_BATCH;
                self.publish_key_packages(uploaded, false).await?;
                self.emit(Event::KeyPackagesReplenished { uploaded })?;
            }
            None => {}
        }
        self.db.set_processed(&Stream::Inbox, entry.seq)?;
        Ok(())
    }

    fn join(&mut self, item: &v1::WelcomeItem) -> ClientResult<Event> {
        let message = MlsMessageIn::tls_deserialize_exact(&item.welcome).map_err(mls)?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(ClientError::Invalid(
                "the inbox entry is not a Welcome".into(),
            ));
        };
        // The DS serves the tree beside the Welcome; openmls checks it
        // against the tree hash the committer signed into the GroupInfo.
        let ratchet_tree = match item.ratchet_tree.is_empty() {
            true => None,
            false => Some(RatchetTreeIn::tls_deserialize_exact(&item.ratchet_tree).map_err(mls)?),
        };
        let group = StagedWelcome::new_from_welcome(
            &self.provider,
            &profile::join_config(),
            welcome,
            ratchet_tree,
        )
        .map_err(mls)?
        .into_group(&self.provider)
        .map_err(mls)?;
        let group_id = group.group_id().as_slice().to_vec();
        if group_id != item.group_id.as_ref() {
            return Err(ClientError::Invalid(
                "the Welcome is for another group".into(),
            ));
        }
        let members = roster::roster(&group);
        let epoch = group.epoch().as_u64();
        self.db.set_joined_epoch(&group_id, epoch)?;
        self.db
            .set_processed(&Stream::Group(group_id.clone()), item.commit_seq)?;
        self.groups.insert(group_id.clone(), group);
        Ok(Event::Joined {
            group: group_id,
            members,
            epoch,
        })
    }

    /// Groups this client is a member of.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups.keys().cloned().collect()
    }

    fn group(&self, group_id: &[u8]) -> ClientResult<&MlsGroup> {
        self.groups.get(group_id).ok_or(ClientError::UnknownGroup)
    }

    /// The clients in the group, sorted, as this client's own MLS state has
    /// them.
    pub fn members(&self, group_id: &[u8]) -> ClientResult<Vec<ClientId>> {
        let mut members: Vec<ClientId> = self
            .roster(group_id)?
            .into_iter()
            .map(|m| m.client)
            .collect();
        members.sort();
        Ok(members)
    }

    /// The group's roster, leaf by leaf, with each member's credential and
    /// key fingerprint: what a user checks to see who can read the group.
    pub fn roster(&self, group_id: &[u8]) -> ClientResult<Vec<GroupMember>> {
        Ok(roster::roster(self.group(group_id)?))
    }

    /// This device's key fingerprint, as other members see it in their
    /// rosters ([`GroupMember::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        roster::fingerprint(self.signer.public())
    }

    pub fn epoch(&self, group_id: &[u8]) -> ClientResult<u64> {
        Ok(self.group(group_id)?.epoch().as_u64())
    }

    /// The group's safety code for its current epoch ([`roster::safety_code`]):
    /// members compare it out of band; a forked member's differs.
    pub fn safety_code(&self, group_id: &[u8]) -> ClientResult<String> {
        Ok(roster::safety_code(self.group(group_id)?))
    }

    /// Secret material this client holds that must never reach the DS: its
    /// signature private key and, per group, a secret exported from the
    /// current epoch. For leak tests (searching what the DS stores, logs and
    /// exports); the client already owns these keys.
    #[doc(hidden)]
    pub fn secret_material(&self) -> ClientResult<Vec<Vec<u8>>> {
        // openmls exposes the private key only through its serde form.
        let signer = serde_json::to_value(&self.signer).map_err(mls)?;
        let private: Vec<u8> = serde_json::from_value(signer["private"].clone())
            .or_else(|_| serde_json::from_value(signer["private"]["vec"].clone()))
            .map_err(|e| ClientError::Invalid(format!("reading the signature key: {e}")))?;
        let mut secrets = vec![private];
        for group in self.groups.values() {
            secrets.push(
                group
                    .export_secret(self.provider.crypto(), "confide leak test", b"", 32)
                    .map_err(mls)?,
            );
        }
        Ok(secrets)
    }

    /// The epoch authenticator: equal for every member in the same epoch of
    /// the same group, different on a fork.
    pub fn epoch_authenticator(&self, group_id: &[u8]) -> ClientResult<Vec<u8>> {
        Ok(self
            .group(group_id)?
            .epoch_authenticator()
            .as_slice()
            .to_vec())
    }
}

/// Fails to compile if a `Client` future could not be spawned on a
/// multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn client_futures_are_send(client: &mut Client, group: &[u8]) {
    fn send<T: Send>(_: T) {}
    send(client.sync());
    send(client.next_event());
    send(client.receive());
    send(client.catch_up());
    send(client.send(group, b""));
    send(client.self_update(group));
    send(client.add_users(group, &[]));
    send(client.remove_users(group, &[]));
    send(client.create_group());
    send(client.authenticate());
    send(client.publish_key_packages(1, false));
}

/// Processes one MLS message of a group log into events.
/// Applies one entry of a group's log; `joined_epoch` is the epoch this
/// client joined at.
fn process_entry(
    group: &mut MlsGroup,
    provider: &Provider,
    entry: &v1::GroupEntry,
    joined_epoch: u64,
) -> Result<Vec<Event>, String> {
    let group_id = entry.group_id.to_vec();
    let message = MlsMessageIn::tls_deserialize_exact(&entry.message).map_err(|e| e.to_string())?;
    let message = message
        .try_into_protocol_message()
        .map_err(|e| e.to_string())?;
    let message_epoch = message.epoch().as_u64();
    if message_epoch < joined_epoch {
        // Sent to the members of an epoch before this client joined (by a
        // member that had not yet seen the commit adding it, which the DS
        // accepts for a few epochs): not encrypted for this client.
        tracing::debug!(
            seq = entry.seq,
            message_epoch,
            joined_epoch,
            "an entry from before this client joined"
        );
        return Ok(Vec::new());
    }
    let processed = group
        .process_message(provider, message)
        .map_err(|e| e.to_string())?;
    if let Sender::External(_) = processed.sender() {
        // The DS as external sender: it may only propose removing a member
        // (a deprovisioned device); anything else is refused, so the DS can
        // never get anyone added.
        return match processed.into_content() {
            ProcessedMessageContent::ProposalMessage(proposal)
                if matches!(proposal.proposal(), Proposal::Remove(_)) =>
            {
                group
                    .store_pending_proposal(provider.storage(), *proposal)
                    .map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
            _ => Err("the delivery service may only propose removals".into()),
        };
    }
    let sender = client_of(processed.credential()).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(message) => events.push(Event::Message {
            group: group_id,
            seq: entry.seq,
            sender,
            body: message.into_bytes(),
        }),
        ProcessedMessageContent::ProposalMessage(proposal) => {
            group
                .store_pending_proposal(provider.storage(), *proposal)
                .map_err(|e| e.to_string())?;
        }
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            // Membership changes are read off the roster itself, not the
            // proposals, so no way into the group (an Add, an external
            // commit) goes unreported.
            let before = roster::roster(group);
            let self_removed = staged.self_removed();
            // Another's commit took the epoch: a pending commit of ours for
            // it (one left in doubt) can never be accepted now.
            group
                .clear_pending_commit(provider.storage())
                .map_err(|e| e.to_string())?;
            group
                .merge_staged_commit(provider, *staged)
                .map_err(|e| e.to_string())?;
            let (added, removed) = roster::diff(&before, &roster::roster(group));
            if !added.is_empty() {
                events.push(Event::MembersAdded {
                    group: group_id.clone(),
                    by: sender.clone(),
                    members: added,
                });
            }
            if self_removed {
                events.push(Event::Removed {
                    group: group_id,
                    by: sender,
                });
                return Ok(events);
            }
            if !removed.is_empty() {
                events.push(Event::MembersRemoved {
                    group: group_id.clone(),
                    by: sender.clone(),
                    members: removed,
                });
            }
            events.push(Event::EpochChanged {
                group: group_id,
                epoch: group.epoch().as_u64(),
                by: sender,
            });
        }
        ProcessedMessageContent::OwnPendingCommit => {
            group
                .merge_pending_commit(provider)
                .map_err(|e| e.to_string())?;
        }
        ProcessedMessageContent::OwnPrivateMessage
        | ProcessedMessageContent::ExternalJoinProposalMessage(_) => {}
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use openmls_rust_crypto::OpenMlsRustCrypto;

    use super::*;

    fn device(index: usize) -> (OpenMlsRustCrypto, SignatureKeyPair, CredentialWithKey) {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        signer.store(provider.storage()).expect("storing the key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(format!("u{index}/d0").into_bytes()).into(),
            signature_key: signer.public().into(),
        };
        (provider, signer, credential)
    }

    fn key_package(index: usize) -> KeyPackage {
        let (provider, signer, credential) = device(index);
        KeyPackage::builder()
            .build(CIPHERSUITE, &provider, &signer, credential)
            .expect("a key package")
            .key_package()
            .clone()
    }

    /// What a member uploads (commit, Welcome, GroupInfo) to add one member
    /// to a group of `size` made with `config`.
    fn upload_for_one_add(config: &MlsGroupCreateConfig, size: usize) -> usize {
        let (provider, signer, credential) = device(0);
        let mut group = MlsGroup::new(&provider, &signer, config, credential).expect("a group");
        let others: Vec<KeyPackage> = (1..size).map(key_package).collect();
        group
            .add_members(&provider, &signer, &others)
            .expect("adding everyone");
        group.merge_pending_commit(&provider).expect("merging");
        // As `Client::commit` builds it: a GroupInfo for the DS, always.
        let (commit, welcome, info) = group
            .commit_builder()
            .propose_adds([key_package(size)])
            .load_psks(provider.storage())
            .expect("no PSKs")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), &signer, |_| true)
            .expect("adding one more")
            .stage_commit(&provider)
            .expect("staging")
            .into_messages();
        [Some(commit), welcome, info]
            .into_iter()
            .map(|m| {
                to_bytes(m.expect("commit, Welcome and GroupInfo"))
                    .expect("serialising")
                    .len()
            })
            .sum()
    }

    #[test]
    fn adding_one_member_to_a_1000_member_group_uploads_20_times_less_without_the_tree() {
        let with_tree = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(profile::WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let served = upload_for_one_add(&profile::group_create_config(None), 1000);
        let carried = upload_for_one_add(&with_tree, 1000);
        println!(
            "upload to add one member to 1,000: {served} B (tree served), {carried} B (tree in the Welcome)"
        );
        assert!(
            carried >= 20 * served,
            "{carried} B with the tree, {served} B without: less than 20 times smaller"
        );
    }
}
