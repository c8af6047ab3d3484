//! Real MLS devices for the domain's tests: users with identity keys,
//! devices certified by them, and groups built through [`Ds`] as clients
//! build them (openmls with the core profile).

use bytes::Bytes;
use confide_core::certificate::{DeviceCertificate, Revocation};
use confide_core::profile::{self, CIPHERSUITE};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::domain::{ClientId, GroupId};
use crate::error::{ApiError, ApiResult};
use crate::groups::{CommitResult, GroupInfoResult};
use crate::state::{AppState, Ds};
use crate::store::memory::MemoryStore;

/// A DS on a fresh in-memory store, with the DS as external sender.
pub fn ds() -> AppState {
    ds_with(Settings::for_tests())
}

/// The same with `settings` (the external sender key is the test's own).
pub fn ds_with(mut settings: Settings) -> AppState {
    let dir = std::env::temp_dir().join(format!("confide-ds-test-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    settings.external_sender_key_file = Some(dir.join("external-sender.key"));
    let ds = crate::state(MemoryStore::new(), settings, CancellationToken::new()).expect("a DS");
    std::fs::remove_dir_all(&dir).expect("removing the scratch directory");
    ds
}

pub fn id(user: &str, device: &str) -> ClientId {
    ClientId::new(user, device).expect("a valid id")
}

pub fn key() -> SignatureKeyPair {
    SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a signature key")
}

fn bytes(message: &MlsMessageOut) -> Bytes {
    message
        .tls_serialize_detached()
        .expect("an MLS message serialises")
        .into()
}

/// The status class a refusal maps to, for assertions.
pub fn code(error: &ApiError) -> &'static str {
    match error {
        ApiError::InvalidArgument(_) => "INVALID_ARGUMENT",
        ApiError::PermissionDenied(_) => "PERMISSION_DENIED",
        ApiError::NotFound(_) => "NOT_FOUND",
        ApiError::AlreadyExists(_) => "ALREADY_EXISTS",
        ApiError::FailedPrecondition(_) | ApiError::WrongEpoch { .. } => "FAILED_PRECONDITION",
        ApiError::Exhausted(_) | ApiError::TooLarge(_) | ApiError::RateLimited { .. } => {
            "RESOURCE_EXHAUSTED"
        }
        ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
        other => panic!("unexpected error {other:?}"),
    }
}

/// Asserts `result` failed with `expected` (a status name) and a reason
/// containing `reason`.
#[track_caller]
pub fn assert_refused<T: std::fmt::Debug>(result: ApiResult<T>, expected: &str, reason: &str) {
    match result {
        Err(error) => {
            assert_eq!(code(&error), expected, "{error}");
            assert!(
                error.to_string().contains(reason),
                "the reason `{error}` does not say `{reason}`"
            );
        }
        Ok(value) => panic!("expected {expected}, got {value:?}"),
    }
}

/// A user and its identity key.
pub struct User {
    pub name: String,
    identity: SignatureKeyPair,
}

impl User {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            identity: key(),
        }
    }

    pub fn identity_key(&self) -> &[u8] {
        self.identity.public()
    }

    /// A device of this user with a new key, certified by its identity key.
    pub fn device(&self, device: &str) -> Device {
        self.certify(
            ClientId::new(&self.name, device).expect("a valid id"),
            key(),
        )
    }

    /// `id` with `signer`, certified by this user's identity key (whether or
    /// not `id` is this user's).
    pub fn certify(&self, id: ClientId, signer: SignatureKeyPair) -> Device {
        let certificate = self.certificate(&id, signer.public());
        let provider = OpenMlsRustCrypto::default();
        signer.store(provider.storage()).expect("storing the key");
        Device {
            id,
            signer,
            certificate,
            provider,
            group: None,
        }
    }

    pub fn certificate(&self, id: &ClientId, signature_key: &[u8]) -> DeviceCertificate {
        DeviceCertificate::issue(&self.identity, self.identity.public(), id, signature_key)
            .expect("a certificate")
    }

    /// This user's revocation of `device`, as it travels.
    pub fn revoke(&self, device: &Device) -> Vec<u8> {
        Revocation::issue(&self.identity, &device.id, device.signer.public())
            .expect("a revocation")
            .to_bytes()
    }
}

/// A commit as `SubmitCommit` carries it.
#[derive(Clone)]
pub struct Commit {
    pub commit: Bytes,
    pub welcome: Option<Bytes>,
    pub group_info: Bytes,
}

/// One device: its key, certificate and, once in one, its group.
pub struct Device {
    pub id: ClientId,
    pub signer: SignatureKeyPair,
    pub certificate: DeviceCertificate,
    provider: OpenMlsRustCrypto,
    pub group: Option<MlsGroup>,
}

impl Device {
    pub fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.id.identity()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    pub async fn register(&self, ds: &Ds) -> ApiResult<()> {
        ds.register_client(
            self.id.clone(),
            self.signer.public().to_vec(),
            &self.certificate.to_bytes(),
            "",
        )
        .await
    }

    /// A key package whose leaf carries `certificate`.
    pub fn key_package_with(
        &self,
        certificate: &DeviceCertificate,
        last_resort: bool,
    ) -> KeyPackage {
        profile::key_package_builder(last_resort, certificate)
            .build(CIPHERSUITE, &self.provider, &self.signer, self.credential())
            .expect("a key package")
            .key_package()
            .clone()
    }

    pub fn key_package(&self) -> KeyPackage {
        self.key_package_with(&self.certificate, false)
    }

    /// A key package as `PublishKeyPackages` carries it.
    pub fn publishable(key_package: KeyPackage) -> Bytes {
        bytes(&MlsMessageOut::from(key_package))
    }

    /// Creates a group (listing the DS as external sender) and registers it.
    pub async fn create_group(&mut self, ds: &Ds) -> GroupId {
        let sender = ds
            .external_sender
            .as_ref()
            .map(|key| key.as_external_sender());
        let group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &profile::group_create_config(sender, &self.certificate),
            self.credential(),
        )
        .expect("a group");
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .expect("a GroupInfo");
        let tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .unwrap();
        self.group = Some(group);
        let (group_id, _) = ds
            .create_group(&self.id, bytes(&info), tree.into())
            .await
            .expect("the DS registers the group");
        group_id
    }

    /// Stages a commit with `change` (left pending until [`Device::submit`]).
    pub fn stage(
        &mut self,
        change: impl FnOnce(CommitBuilder<'_, Initial>) -> CommitBuilder<'_, Initial>,
    ) -> Commit {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("in a group");
        let (commit, welcome, group_info) = change(group.commit_builder())
            .load_psks(provider.storage())
            .expect("no PSKs")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), signer, |_| true)
            .expect("a commit")
            .stage_commit(provider)
            .expect("staging the commit")
            .into_messages();
        Commit {
            commit: bytes(&commit),
            welcome: welcome.as_ref().map(bytes),
            group_info: bytes(&group_info.expect("a GroupInfo")),
        }
    }

    pub fn add(&mut self, key_packages: Vec<KeyPackage>) -> Commit {
        self.stage(|builder| builder.propose_adds(key_packages))
    }

    /// A self-update whose new leaf has `leaf` (e.g. other extensions).
    pub fn self_update(&mut self, leaf: LeafNodeParameters) -> Commit {
        self.stage(|builder| builder.force_self_update(true).leaf_node_parameters(leaf))
    }

    /// Submits a commit this device staged: merged if the DS accepts it,
    /// dropped if not.
    pub async fn submit(
        &mut self,
        ds: &Ds,
        group: &GroupId,
        commit: Commit,
    ) -> ApiResult<CommitResult> {
        let result = ds
            .submit_commit(
                &self.id,
                group,
                commit.commit,
                commit.welcome,
                commit.group_info,
            )
            .await;
        let provider = &self.provider;
        let pending = self.group.as_mut().expect("in a group");
        match &result {
            Ok(_) => pending.merge_pending_commit(provider).expect("merging"),
            Err(_) => pending
                .clear_pending_commit(provider.storage())
                .expect("dropping the commit"),
        }
        result
    }

    /// Joins from a Welcome, with the tree the DS serves.
    pub async fn join(&mut self, ds: &Ds, group: &GroupId, welcome: &Bytes) {
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(welcome)
            .expect("a Welcome")
            .extract()
        else {
            panic!("not a Welcome");
        };
        let info = ds.group_info(&self.id, group).await.expect("the GroupInfo");
        let tree = RatchetTreeIn::tls_deserialize_exact(&info.ratchet_tree).expect("a tree");
        let group = StagedWelcome::new_from_welcome(
            &self.provider,
            &profile::join_config(),
            welcome,
            Some(tree),
        )
        .expect("a valid Welcome")
        .into_group(&self.provider)
        .expect("joining");
        self.group = Some(group);
    }

    /// An external commit joining `group` from what the DS serves this
    /// device, its leaf with `leaf` (the profile's: [`Device::external_leaf`]).
    /// openmls removes a leaf with this device's signature key in it.
    pub async fn external_commit(
        &mut self,
        ds: &Ds,
        group: &GroupId,
        leaf: LeafNodeParameters,
    ) -> Commit {
        let info = ds.group_info(&self.id, group).await.expect("the GroupInfo");
        self.external_commit_from(&info, leaf)
    }

    /// An external commit from a GroupInfo and tree, however obtained.
    pub fn external_commit_from(
        &mut self,
        info: &GroupInfoResult,
        leaf: LeafNodeParameters,
    ) -> Commit {
        let MlsMessageBodyIn::GroupInfo(group_info) =
            MlsMessageIn::tls_deserialize_exact(&info.group_info)
                .expect("a GroupInfo")
                .extract()
        else {
            panic!("not a GroupInfo");
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(&info.ratchet_tree).expect("a tree");
        let (joined, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .with_config(profile::join_config())
            .build_group(&self.provider, group_info, self.credential())
            .expect("joining from the GroupInfo")
            .leaf_node_parameters(leaf)
            .load_psks(self.provider.storage())
            .expect("no PSKs")
            .create_group_info(true)
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .expect("an external commit")
            .finalize(&self.provider)
            .expect("finalising");
        self.group = Some(joined);
        let (commit, _, group_info) = bundle.into_messages();
        Commit {
            commit: bytes(&commit),
            welcome: None,
            group_info: bytes(&group_info.expect("a GroupInfo")),
        }
    }

    /// The leaf a device joins with by external commit: its certificate.
    pub fn external_leaf(&self) -> LeafNodeParameters {
        profile::external_join_leaf(&self.certificate)
    }

    /// Submits an external commit (already merged on this side).
    pub async fn submit_external(
        &self,
        ds: &Ds,
        group: &GroupId,
        commit: Commit,
    ) -> ApiResult<CommitResult> {
        ds.submit_commit(&self.id, group, commit.commit, None, commit.group_info)
            .await
    }

    /// Proposes an update of its own leaf with `leaf`, as a standalone
    /// proposal.
    pub fn propose_update(&mut self, leaf: LeafNodeParameters) -> Bytes {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("in a group");
        let (proposal, _) = group
            .propose_self_update(provider, signer, leaf)
            .expect("an update proposal");
        bytes(&proposal)
    }

    /// Processes a handshake message another member sent (its proposal, so
    /// a later commit of this device may include it).
    pub fn process(&mut self, message: &Bytes) {
        let message = MlsMessageIn::tls_deserialize_exact(message)
            .expect("an MLS message")
            .try_into_protocol_message()
            .expect("a protocol message");
        let provider = &self.provider;
        let group = self.group.as_mut().expect("in a group");
        let processed = group
            .process_message(provider, message)
            .expect("processing");
        match processed.into_content() {
            ProcessedMessageContent::ProposalMessage(queued) => group
                .store_pending_proposal(provider.storage(), *queued)
                .expect("queueing the proposal"),
            ProcessedMessageContent::StagedCommitMessage(staged) => group
                .merge_staged_commit(provider, *staged)
                .expect("merging the commit"),
            _ => panic!("not a handshake message"),
        }
    }
}

/// The roster the DS holds for `group`, as seen through the store: the
/// current members among `clients`.
pub async fn roster(ds: &Ds, group: &GroupId, clients: &[&ClientId]) -> Vec<ClientId> {
    let mut members = Vec::new();
    for client in clients {
        if let Some(m) = ds.store.membership(client, group).await.expect("the store")
            && m.is_current()
        {
            members.push((*client).clone());
        }
    }
    members
}

/// The number of entries in `group`'s log, as `reader` (a member) sees it.
pub async fn log_len(ds: &Ds, reader: &ClientId, group: &GroupId) -> usize {
    ds.read_group(reader, group, 0, 1000)
        .await
        .expect("the log")
        .len()
}

/// The DS's current epoch of `group`.
pub async fn epoch(ds: &Ds, group: &GroupId) -> u64 {
    ds.store
        .group_info(group)
        .await
        .expect("the store")
        .expect("the group")
        .0
}
