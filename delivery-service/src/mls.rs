//! Everything the DS knows about MLS: parsing client bytes, validating
//! handshakes with openmls [`PublicGroup`], and the group's public state as
//! one blob.
//!
//! The DS never holds a private key or a group secret. It sees what RFC 9420
//! §16.4.1 says a delivery service sees: group ids, epochs, the public ratchet
//! tree (credentials and public keys) and sizes. Application messages stay
//! PrivateMessages it cannot open.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls::treesync::errors::LifetimeError;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use sha2::{Digest, Sha256};

use crate::domain::{ClientId, GroupId};
use crate::store::DedupKey;

pub use confide_core::profile::{CIPHERSUITE, LifetimeRules};

/// Why client-supplied MLS input was refused. Each maps to INVALID_ARGUMENT
/// except where noted at the mapping in `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    #[error("{what} is not a valid TLS-encoded MLS message")]
    Malformed { what: &'static str },
    #[error("{what} must be {expected}")]
    WrongType {
        what: &'static str,
        expected: &'static str,
    },
    #[error("the message is for another group")]
    GroupMismatch,
    #[error("the message is for epoch {got}, the group is at epoch {current}")]
    WrongEpoch { got: u64, current: u64 },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the sender is not the authenticated client")]
    SenderMismatch,
    #[error("{0}")]
    Rejected(String),
    #[error("the stored group state is unreadable")]
    CorruptState,
}

fn invalid(what: &'static str, reason: impl std::fmt::Display) -> MlsError {
    MlsError::Invalid {
        what,
        reason: reason.to_string(),
    }
}

fn parse_message(bytes: &[u8], what: &'static str) -> Result<MlsMessageBodyIn, MlsError> {
    let mut slice = bytes;
    let message =
        MlsMessageIn::tls_deserialize(&mut slice).map_err(|_| MlsError::Malformed { what })?;
    if !slice.is_empty() {
        return Err(MlsError::Malformed { what });
    }
    Ok(message.extract())
}

/// The client a credential names ([`confide_core::profile::client_of`]).
pub fn client_of(credential: &Credential) -> Result<ClientId, MlsError> {
    confide_core::profile::client_of(credential).map_err(|e| invalid("credential", e))
}

/// SHA-256 over a domain label and the parts, as an idempotency key.
pub fn dedup_key(label: &str, parts: &[&[u8]]) -> DedupKey {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A key package that passed validation.
pub struct ValidKeyPackage {
    pub key_package_ref: Vec<u8>,
    pub client: ClientId,
    pub signature_key: Vec<u8>,
    /// Whether it carries the `last_resort` extension (RFC 9420 §16.8), which
    /// tells its claimers it may be handed out more than once.
    pub last_resort: bool,
}

/// Parses and validates a key package: signatures, lifetime (within
/// `rules`), ciphersuite and the credential it names. The caller checks the
/// credential is the uploader's.
pub fn validate_key_package(
    bytes: &[u8],
    rules: &LifetimeRules,
) -> Result<ValidKeyPackage, MlsError> {
    let MlsMessageBodyIn::KeyPackage(key_package) = parse_message(bytes, "key package")? else {
        return Err(MlsError::WrongType {
            what: "key package",
            expected: "an MlsMessage carrying a KeyPackage",
        });
    };
    let crypto = RustCrypto::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MlsError::CorruptState)?
        .as_secs();
    let key_package = match key_package
        .clone()
        .validate(&crypto, ProtocolVersion::Mls10)
    {
        Ok(key_package) => key_package,
        // openmls checks the lifetime last, against its own clock and with no
        // tolerance: every signature and every other check passed, and
        // `not_before` is within the skew allowed (checked below).
        Err(KeyPackageVerifyError::LifetimeError(LifetimeError::NotValidYet {
            not_before,
            ..
        })) if not_before <= now.saturating_add(rules.clock_skew.as_secs()) => {
            key_package.into_unchecked()
        }
        Err(e) => return Err(invalid("key package", e)),
    };
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(invalid(
            "key package",
            format!("ciphersuite must be {CIPHERSUITE:?}"),
        ));
    }
    rules
        .check(key_package.life_time(), now)
        .map_err(|e| invalid("key package", e))?;
    let leaf = key_package.leaf_node();
    Ok(ValidKeyPackage {
        key_package_ref: key_package
            .hash_ref(&crypto)
            .map_err(|e| invalid("key package", e))?
            .as_slice()
            .to_vec(),
        client: client_of(leaf.credential())?,
        signature_key: leaf.signature_key().as_slice().to_vec(),
        last_resort: key_package.last_resort(),
    })
}

/// The confirmation tag of a GroupInfo, TLS-serialised (openmls keeps its
/// accessor private): it follows the group context and the extensions.
fn group_info_confirmation_tag(
    info: &openmls::messages::group_info::GroupInfo,
) -> Result<Vec<u8>, MlsError> {
    use openmls::prelude::tls_codec::Size as _;
    let bytes = info
        .tls_serialize_detached()
        .map_err(|e| invalid("group info", e))?;
    let offset = info.group_context().tls_serialized_len() + info.extensions().tls_serialized_len();
    let mut rest = bytes
        .get(offset..)
        .ok_or_else(|| invalid("group info", "it has no confirmation tag"))?;
    let before = rest.len();
    VLBytes::tls_deserialize(&mut rest).map_err(|e| invalid("group info", e))?;
    Ok(bytes[offset..offset + before - rest.len()].to_vec())
}

/// An application message that may be appended to a group log.
pub struct ApplicationMessage {
    pub epoch: u64,
}

/// Checks that bytes are a PrivateMessage with application content for `group_id`.
pub fn parse_application_message(
    bytes: &[u8],
    group_id: &GroupId,
) -> Result<ApplicationMessage, MlsError> {
    let message = match parse_message(bytes, "message")? {
        MlsMessageBodyIn::PrivateMessage(message) => message,
        MlsMessageBodyIn::PublicMessage(_) => {
            return Err(MlsError::WrongType {
                what: "an application message",
                expected: "a PrivateMessage (application messages are always encrypted)",
            });
        }
        _ => {
            return Err(MlsError::WrongType {
                what: "message",
                expected: "a PrivateMessage",
            });
        }
    };
    if message.group_id().as_slice() != group_id.as_slice() {
        return Err(MlsError::GroupMismatch);
    }
    if message.content_type() != ContentType::Application {
        return Err(MlsError::WrongType {
            what: "a handshake message",
            expected: "a PublicMessage submitted as a commit or proposal",
        });
    }
    Ok(ApplicationMessage {
        epoch: message.epoch().as_u64(),
    })
}

fn parse_public_message(
    bytes: &[u8],
    what: &'static str,
    group_id: &GroupId,
    content: ContentType,
) -> Result<PublicMessageIn, MlsError> {
    let message = match parse_message(bytes, what)? {
        MlsMessageBodyIn::PublicMessage(message) => message,
        MlsMessageBodyIn::PrivateMessage(_) => {
            return Err(MlsError::WrongType {
                what,
                expected: "a PublicMessage (groups use the pure-plaintext handshake policy)",
            });
        }
        _ => {
            return Err(MlsError::WrongType {
                what,
                expected: "a PublicMessage",
            });
        }
    };
    if message.group_id().as_slice() != group_id.as_slice() {
        return Err(MlsError::GroupMismatch);
    }
    if message.content_type() != content {
        return Err(MlsError::WrongType {
            what,
            expected: match content {
                ContentType::Commit => "a PublicMessage with a Commit",
                _ => "a PublicMessage with a Proposal",
            },
        });
    }
    Ok(message)
}

/// The epoch a handshake message claims, read before full validation so a
/// stale resubmission can be answered from the log.
pub fn handshake_epoch(bytes: &[u8]) -> Option<u64> {
    match parse_message(bytes, "message").ok()? {
        MlsMessageBodyIn::PublicMessage(message) => Some(message.epoch().as_u64()),
        _ => None,
    }
}

/// A group's public state: openmls [`PublicGroup`] with its own small
/// in-memory storage, persisted as one blob of that storage.
pub struct GroupHandle {
    group: PublicGroup,
    storage: MemoryStorage,
}

/// A commit that validated against the current state, not yet merged.
pub struct StagedGroupCommit {
    staged: Box<StagedCommit>,
    pub from_epoch: u64,
    pub added: Vec<ClientId>,
    pub removed: Vec<ClientId>,
    /// The (client, signature key) of every leaf the commit adds or updates,
    /// for the caller to check against registrations before merging.
    pub new_leaves: Vec<LeafIdentity>,
}

/// A member leaf's identity as the DS checks it against registrations.
pub struct LeafIdentity {
    pub client: ClientId,
    pub signature_key: Vec<u8>,
}

impl GroupHandle {
    /// Builds the public state of a new group from its GroupInfo and ratchet
    /// tree. This re-verifies every leaf signature, so it is for creation only.
    pub fn create(group_info: &[u8], ratchet_tree: &[u8]) -> Result<Self, MlsError> {
        let MlsMessageBodyIn::GroupInfo(group_info) = parse_message(group_info, "group info")?
        else {
            return Err(MlsError::WrongType {
                what: "group info",
                expected: "an MlsMessage carrying a GroupInfo",
            });
        };
        if group_info.ciphersuite() != CIPHERSUITE {
            return Err(invalid(
                "group info",
                format!("ciphersuite must be {CIPHERSUITE:?}"),
            ));
        }
        GroupId::new(group_info.group_id().as_slice().to_vec())
            .map_err(|e| invalid("group info", e))?;
        let mut slice = ratchet_tree;
        let tree = RatchetTreeIn::tls_deserialize(&mut slice).map_err(|_| MlsError::Malformed {
            what: "ratchet tree",
        })?;
        let storage = MemoryStorage::default();
        let (group, _) = PublicGroup::from_external(
            &RustCrypto::default(),
            &storage,
            tree,
            group_info,
            ProposalStore::new(),
        )
        .map_err(|e| invalid("group", e))?;
        Ok(Self { group, storage })
    }

    /// Restores the state persisted by [`GroupHandle::to_blob`].
    pub fn from_blob(group_id: &GroupId, blob: &[u8]) -> Result<Self, MlsError> {
        let storage = MemoryStorage::default();
        *storage.values.write().map_err(|_| MlsError::CorruptState)? =
            decode_map(blob).ok_or(MlsError::CorruptState)?;
        let group = PublicGroup::load(
            &storage,
            &openmls::group::GroupId::from_slice(group_id.as_slice()),
        )
        .map_err(|_| MlsError::CorruptState)?
        .ok_or(MlsError::CorruptState)?;
        Ok(Self { group, storage })
    }

    pub fn to_blob(&self) -> Vec<u8> {
        let values = self
            .storage
            .values
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        encode_map(&values)
    }

    pub fn group_id(&self) -> GroupId {
        GroupId::new(self.group.group_id().as_slice().to_vec())
            .expect("validated when the group was created")
    }

    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// Every member leaf.
    pub fn members(&self) -> Result<Vec<LeafIdentity>, MlsError> {
        self.group
            .members()
            .map(|member| {
                Ok(LeafIdentity {
                    client: client_of(&member.credential)?,
                    signature_key: member.signature_key,
                })
            })
            .collect()
    }

    /// The TLS-serialised ratchet tree, for clients that need it.
    pub fn ratchet_tree(&self) -> Vec<u8> {
        self.group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("a ratchet tree always serialises")
    }

    fn sender_client(&self, sender: &Sender) -> Result<ClientId, MlsError> {
        match sender {
            Sender::Member(index) => {
                let leaf = self
                    .group
                    .leaf(*index)
                    .ok_or_else(|| invalid("sender", "no member at that leaf"))?;
                client_of(leaf.credential())
            }
            _ => Err(MlsError::Rejected(
                "only group members may send handshake messages".into(),
            )),
        }
    }

    /// Validates a commit from `caller` against the current epoch. The Welcome
    /// must address exactly the commit's new members and the GroupInfo must
    /// describe the new epoch. Nothing changes until [`GroupHandle::merge`].
    pub fn stage_commit(
        &self,
        caller: &ClientId,
        commit: &[u8],
        welcome: Option<&[u8]>,
        group_info: &[u8],
    ) -> Result<StagedGroupCommit, MlsError> {
        let mut new_leaves = Vec::new();
        let group_id = self.group_id();
        let message = parse_public_message(commit, "commit", &group_id, ContentType::Commit)?;
        let from_epoch = self.epoch();
        if message.epoch().as_u64() != from_epoch {
            return Err(MlsError::WrongEpoch {
                got: message.epoch().as_u64(),
                current: from_epoch,
            });
        }
        if self.sender_client(message.sender())? != *caller {
            return Err(MlsError::SenderMismatch);
        }
        // The committer signs the new GroupInfo (with its new key, if the
        // commit's update path rotated it).
        let committer_key = match message.sender() {
            Sender::Member(index) => self.group.leaf(*index).map(|l| l.signature_key().clone()),
            _ => None,
        }
        .ok_or_else(|| invalid("sender", "no member at that leaf"))?;
        let confirmation_tag = message
            .confirmation_tag()
            .ok_or_else(|| invalid("commit", "it has no confirmation tag"))?
            .tls_serialize_detached()
            .map_err(|e| invalid("commit", e))?;
        let crypto = RustCrypto::default();
        let processed = self
            .group
            .process_message(&crypto, ProtocolMessage::from(message))
            .map_err(|e| invalid("commit", e))?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(MlsError::WrongType {
                what: "commit",
                expected: "a PublicMessage with a Commit",
            });
        };
        let committer_key = staged
            .update_path_leaf_node()
            .map_or(committer_key, |leaf| leaf.signature_key().clone());

        let current: HashMap<u32, ClientId> = self
            .group
            .members()
            .map(|m| Ok((m.index.u32(), client_of(&m.credential)?)))
            .collect::<Result<_, MlsError>>()?;

        // Adds: every new leaf names a client that is not yet in the group.
        let mut add_refs = BTreeSet::new();
        let mut added = Vec::new();
        for add in staged.add_proposals() {
            let key_package = add.add_proposal().key_package();
            let client = client_of(key_package.leaf_node().credential())?;
            if current.values().any(|c| *c == client) || added.contains(&client) {
                return Err(MlsError::Rejected(format!("{client} is already a member")));
            }
            add_refs.insert(
                key_package
                    .hash_ref(&crypto)
                    .map_err(|e| invalid("commit", e))?
                    .as_slice()
                    .to_vec(),
            );
            new_leaves.push(LeafIdentity {
                client: client.clone(),
                signature_key: key_package.leaf_node().signature_key().as_slice().to_vec(),
            });
            added.push(client);
        }
        let removed: Vec<ClientId> = staged
            .remove_proposals()
            .filter_map(|remove| current.get(&remove.remove_proposal().removed().u32()))
            .cloned()
            .collect();

        // Updates may refresh keys but never change who a leaf belongs to;
        // refreshed signature keys are checked against registrations too.
        let mut updates = Vec::new();
        if let Some(leaf) = staged.update_path_leaf_node() {
            updates.push((caller.clone(), leaf.clone()));
        }
        for update in staged.update_proposals() {
            let sender = self.sender_client(update.sender())?;
            updates.push((sender, update.update_proposal().leaf_node().clone()));
        }
        for (owner, leaf) in updates {
            let client = client_of(leaf.credential())?;
            if client != owner {
                return Err(MlsError::Rejected(
                    "an update may not change a member's credential".into(),
                ));
            }
            new_leaves.push(LeafIdentity {
                client,
                signature_key: leaf.signature_key().as_slice().to_vec(),
            });
        }

        match (welcome, add_refs.is_empty()) {
            (None, true) => {}
            (None, false) => {
                return Err(invalid(
                    "welcome",
                    "a commit that adds members needs its Welcome",
                ));
            }
            (Some(_), true) => {
                return Err(invalid("welcome", "the commit adds nobody"));
            }
            (Some(welcome), false) => {
                let MlsMessageBodyIn::Welcome(welcome) = parse_message(welcome, "welcome")? else {
                    return Err(MlsError::WrongType {
                        what: "welcome",
                        expected: "an MlsMessage carrying a Welcome",
                    });
                };
                let welcomed: BTreeSet<Vec<u8>> = welcome
                    .secrets()
                    .iter()
                    .map(|s| s.new_member().as_slice().to_vec())
                    .collect();
                if welcomed != add_refs || welcome.secrets().len() != add_refs.len() {
                    return Err(invalid(
                        "welcome",
                        "its new members are not exactly the commit's Adds",
                    ));
                }
            }
        }

        let MlsMessageBodyIn::GroupInfo(info) = parse_message(group_info, "group info")? else {
            return Err(MlsError::WrongType {
                what: "group info",
                expected: "an MlsMessage carrying a GroupInfo",
            });
        };
        if info.group_id().as_slice() != group_id.as_slice()
            || info.epoch().as_u64() != from_epoch + 1
        {
            return Err(invalid(
                "group info",
                "it must describe this group's new epoch",
            ));
        }
        let signer = OpenMlsSignaturePublicKey::from_signature_key(
            committer_key,
            CIPHERSUITE.signature_algorithm(),
        );
        let info: openmls::messages::group_info::GroupInfo = info
            .verify(&crypto, &signer)
            .map_err(|_| invalid("group info", "it is not signed by the committer"))?;
        // The group context binds the tree hash and the transcript: equal
        // contexts mean this GroupInfo describes exactly the epoch the commit
        // creates, so joiners and re-syncing clients get the real group.
        if info.group_context() != staged.group_context() {
            return Err(invalid(
                "group info",
                "it does not describe the epoch this commit creates",
            ));
        }
        // The commit's confirmation tag is a MAC only members can check, but
        // the committer also signs it into the GroupInfo: a commit whose tag
        // differs (corrupted on the way, say) would wedge every member.
        if group_info_confirmation_tag(&info)? != confirmation_tag {
            return Err(invalid(
                "commit",
                "its confirmation tag is not the one its GroupInfo carries",
            ));
        }

        Ok(StagedGroupCommit {
            staged,
            from_epoch,
            added,
            removed,
            new_leaves,
        })
    }

    /// Moves the public state to the staged commit's new epoch.
    pub fn merge(&mut self, commit: StagedGroupCommit) -> Result<(), MlsError> {
        self.group
            .merge_commit(&self.storage, *commit.staged)
            .map_err(|e| invalid("commit", e))
    }

    /// Validates a standalone proposal from `caller` for the current epoch and
    /// queues it, so a later commit can reference it.
    pub fn apply_proposal(&mut self, caller: &ClientId, proposal: &[u8]) -> Result<u64, MlsError> {
        let group_id = self.group_id();
        let message = parse_public_message(proposal, "proposal", &group_id, ContentType::Proposal)?;
        let epoch = self.epoch();
        if message.epoch().as_u64() != epoch {
            return Err(MlsError::WrongEpoch {
                got: message.epoch().as_u64(),
                current: epoch,
            });
        }
        if self.sender_client(message.sender())? != *caller {
            return Err(MlsError::SenderMismatch);
        }
        let processed = self
            .group
            .process_message(&RustCrypto::default(), ProtocolMessage::from(message))
            .map_err(|e| invalid("proposal", e))?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(MlsError::WrongType {
                what: "proposal",
                expected: "a PublicMessage with a Proposal",
            });
        };
        if matches!(queued.proposal(), Proposal::Add(_)) {
            return Err(MlsError::Rejected(
                "add members with a commit and its Welcome, not a standalone Add".into(),
            ));
        }
        self.group
            .add_proposal(&self.storage, *queued)
            .map_err(|_| MlsError::CorruptState)?;
        Ok(epoch)
    }

    /// The DS's position among the group's external senders, if the group
    /// lists `key` there.
    fn external_sender_index(&self, key: &ExternalSenderKey) -> Option<SenderExtensionIndex> {
        let senders = self.group.group_context().extensions().external_senders()?;
        let ds = key.as_external_sender();
        senders
            .iter()
            .position(|sender| *sender == ds)
            .map(|i| SenderExtensionIndex::new(i as u32))
    }

    /// Proposes, as the DS's external sender, to remove `client`'s leaf, and
    /// queues the proposal as a member's would be (so a commit may refer to
    /// it). Returns the PublicMessage and its epoch; `Ok(None)` if the group
    /// does not list the DS as an external sender or `client` has no leaf.
    pub fn propose_remove(
        &mut self,
        key: &ExternalSenderKey,
        client: &ClientId,
    ) -> Result<Option<(Vec<u8>, u64)>, MlsError> {
        let Some(sender_index) = self.external_sender_index(key) else {
            return Ok(None);
        };
        let identity = client.identity();
        let Some(leaf) = self
            .group
            .members()
            .find(|m| m.credential.serialized_content() == identity.as_slice())
            .map(|m| m.index)
        else {
            return Ok(None);
        };
        let message = ExternalProposal::new_remove::<openmls_rust_crypto::OpenMlsRustCrypto>(
            leaf,
            self.group.group_id().clone(),
            self.group.group_context().epoch(),
            key.signer(),
            sender_index,
        )
        .map_err(|_| MlsError::CorruptState)?;
        let bytes = message
            .tls_serialize_detached()
            .map_err(|_| MlsError::CorruptState)?;
        let group_id = self.group_id();
        let parsed = parse_public_message(&bytes, "proposal", &group_id, ContentType::Proposal)?;
        let processed = self
            .group
            .process_message(&RustCrypto::default(), ProtocolMessage::from(parsed))
            .map_err(|e| invalid("proposal", e))?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(MlsError::CorruptState);
        };
        self.group
            .add_proposal(&self.storage, *queued)
            .map_err(|_| MlsError::CorruptState)?;
        Ok(Some((bytes, self.epoch())))
    }
}

/// The DS's own signature key as an MLS external sender (RFC 9420 §12.1.8.1):
/// with it the DS signs Remove proposals for deprovisioned clients. It never
/// opens a message: an external sender holds no group secret.
pub struct ExternalSenderKey {
    signer: openmls_basic_credential::SignatureKeyPair,
}

impl ExternalSenderKey {
    /// The BasicCredential identity the DS uses as an external sender.
    pub const IDENTITY: &'static [u8] = b"confide-ds";

    /// Loads the key from `path`, or creates it there (readable by the owner
    /// only) if the file does not exist. Replicas of one deployment share it.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write as _;
        match std::fs::read(path) {
            Ok(bytes) => {
                let signer = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not a Confide external sender key: {e}",
                            path.display()
                        ),
                    )
                })?;
                Ok(Self { signer })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                file.write_all(&serde_json::to_vec(&key.signer).map_err(std::io::Error::other)?)?;
                file.sync_all()?;
                Ok(key)
            }
            Err(error) => Err(error),
        }
    }

    pub fn generate() -> Self {
        Self {
            signer: openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519)
                .expect("Ed25519 key generation does not fail"),
        }
    }

    pub fn public(&self) -> &[u8] {
        self.signer.public()
    }

    /// The entry a group's ExternalSenders extension has for this DS.
    pub fn as_external_sender(&self) -> ExternalSender {
        ExternalSender::new(
            self.signer.public().into(),
            BasicCredential::new(Self::IDENTITY.to_vec()).into(),
        )
    }

    fn signer(&self) -> &openmls_basic_credential::SignatureKeyPair {
        &self.signer
    }
}

fn encode_map(values: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let size: usize = values.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(values.len() as u32).to_be_bytes());
    // Sorted, so the same state always gives the same blob.
    let mut entries: Vec<_> = values.iter().collect();
    entries.sort();
    for (key, value) in entries {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    out
}

fn decode_map(mut blob: &[u8]) -> Option<HashMap<Vec<u8>, Vec<u8>>> {
    fn take<'a>(blob: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = blob.split_at_checked(n)?;
        *blob = tail;
        Some(head)
    }
    fn take_u32(blob: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(blob, 4)?.try_into().ok()?) as usize)
    }
    let count = take_u32(&mut blob)?;
    let mut map = HashMap::with_capacity(count.min(1024));
    for _ in 0..count {
        let (key_len, value_len) = (take_u32(&mut blob)?, take_u32(&mut blob)?);
        let key = take(&mut blob, key_len)?.to_vec();
        let value = take(&mut blob, value_len)?.to_vec();
        map.insert(key, value);
    }
    blob.is_empty().then_some(map)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn state_blob_round_trips() {
        let map: HashMap<Vec<u8>, Vec<u8>> =
            [(b"tree".to_vec(), vec![1, 2, 3]), (b"ctx".to_vec(), vec![])].into();
        assert_eq!(decode_map(&encode_map(&map)), Some(map));
    }

    #[test]
    fn truncated_state_blob_is_refused() {
        let map: HashMap<Vec<u8>, Vec<u8>> = [(b"tree".to_vec(), vec![1, 2, 3])].into();
        let blob = encode_map(&map);
        assert_eq!(decode_map(&blob[..blob.len() - 1]), None);
    }

    #[test]
    fn the_confirmation_tag_is_read_from_a_group_info() {
        use openmls_basic_credential::SignatureKeyPair;
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"alice/phone".to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let mut group = MlsGroup::new(&provider, &signer, &config, credential).unwrap();
        let (_, _, info) = group
            .self_update(&provider, &signer, LeafNodeParameters::default())
            .unwrap()
            .into_contents();
        group.merge_pending_commit(&provider).unwrap();
        let expected = group.confirmation_tag().tls_serialize_detached().unwrap();
        assert_eq!(
            group_info_confirmation_tag(&info.unwrap()).unwrap(),
            expected
        );
    }

    /// A key package for `alice/phone`, valid from `not_before` for a day.
    fn key_package_from(not_before: u64) -> Vec<u8> {
        use openmls_basic_credential::SignatureKeyPair;
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"alice/phone".to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let bundle = KeyPackage::builder()
            .key_package_lifetime(Lifetime::init(not_before, not_before + 86_400))
            .build(CIPHERSUITE, &provider, &signer, credential)
            .unwrap();
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .unwrap()
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The skew tolerance relies on openmls checking the lifetime last: a
    /// key package dated slightly ahead is accepted only with its
    /// signatures intact.
    #[test]
    fn a_key_package_dated_slightly_ahead_is_accepted_only_if_its_signature_holds() {
        let rules = LifetimeRules::default();
        let ahead = key_package_from(unix_now() + 60);
        assert!(validate_key_package(&ahead, &rules).is_ok());
        let mut forged = ahead.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate_key_package(&forged, &rules),
            Err(MlsError::Invalid { .. })
        ));
        let no_skew = LifetimeRules {
            clock_skew: Duration::ZERO,
            ..rules
        };
        assert!(validate_key_package(&ahead, &no_skew).is_err());
    }

    #[test]
    fn garbage_is_not_an_application_message() {
        let group = GroupId::new(b"g".to_vec()).unwrap();
        assert!(matches!(
            parse_application_message(b"\x00\x01garbage", &group),
            Err(MlsError::Malformed { .. })
        ));
    }
}
