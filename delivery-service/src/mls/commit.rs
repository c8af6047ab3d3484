//! Staging a commit: parsed once, then a sequence of named checks against
//! the group's current public state, each refusing with the reason a client
//! needs. Nothing changes until the staged commit is merged.

use std::collections::{BTreeSet, HashMap};

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;

use super::external_commit::{check_external_commit, external_joiner_roster};
use super::group::certified_leaf;
use super::group_info::{NewEpoch, check_group_info};
use super::{
    GroupHandle, LeafIdentity, MlsError, client_of, invalid, parse_message, parse_public_message,
};
use crate::domain::{ClientId, GroupId};

/// A submitted commit, parsed once: a PublicMessage carrying a Commit for
/// the group.
pub struct CommitMessage {
    message: PublicMessageIn,
}

impl CommitMessage {
    pub fn parse(bytes: &[u8], group_id: &GroupId) -> Result<Self, MlsError> {
        let message = parse_public_message(bytes, "commit", group_id, ContentType::Commit)?;
        Ok(Self { message })
    }

    /// The epoch the commit is for, before any validation: a commit for an
    /// older epoch may be a retry of one the DS accepted.
    pub fn epoch(&self) -> u64 {
        self.message.epoch().as_u64()
    }

    /// Whether it is an external commit (RFC 9420 §12.4.3.2): a client
    /// joining, or re-joining, from the GroupInfo, not a member's commit.
    pub fn is_external(&self) -> bool {
        matches!(self.message.sender(), Sender::NewMemberCommit)
    }

    /// The commit's confirmation tag, TLS-serialised.
    fn confirmation_tag(&self) -> Result<Vec<u8>, MlsError> {
        self.message
            .confirmation_tag()
            .ok_or_else(|| invalid("commit", "it has no confirmation tag"))?
            .tls_serialize_detached()
            .map_err(|e| invalid("commit", e))
    }
}

/// A commit that validated against the current state, not yet merged.
pub struct StagedGroupCommit {
    staged: Box<StagedCommit>,
    pub from_epoch: u64,
    /// Clients the roster gains: the Adds' and an external joiner.
    pub added: Vec<ClientId>,
    /// Clients the roster loses (not one re-syncing by external commit,
    /// which removes its old leaf and stays with a new one).
    pub removed: Vec<ClientId>,
    /// The client, signature key and certificate's identity key of every
    /// leaf the commit adds or updates (O(new leaves)), for the caller to
    /// check against registrations and identity keys before merging.
    pub new_leaves: Vec<LeafIdentity>,
}

/// The members a commit adds.
#[derive(Default)]
struct Adds {
    clients: Vec<ClientId>,
    /// The refs of their key packages: whom the Welcome must address.
    key_package_refs: BTreeSet<Vec<u8>>,
    leaves: Vec<LeafIdentity>,
}

impl GroupHandle {
    /// Parses `commit` and stages it ([`GroupHandle::stage`]).
    pub fn stage_commit(
        &self,
        caller: &ClientId,
        commit: &[u8],
        welcome: Option<&[u8]>,
        group_info: &[u8],
    ) -> Result<StagedGroupCommit, MlsError> {
        let commit = CommitMessage::parse(commit, &self.group_id())?;
        self.stage(caller, &commit, welcome, group_info)
    }

    /// Validates a commit from `caller` against the current epoch: a
    /// member's, or an external one that brings in only the caller's own
    /// leaf and removes at most its old one. The Welcome must address
    /// exactly the commit's new members and the GroupInfo must describe the
    /// new epoch. Nothing changes until [`GroupHandle::merge`].
    pub fn stage(
        &self,
        caller: &ClientId,
        commit: &CommitMessage,
        welcome: Option<&[u8]>,
        group_info: &[u8],
    ) -> Result<StagedGroupCommit, MlsError> {
        let from_epoch = self.check_current_epoch(&commit.message)?;
        let member_key = if commit.is_external() {
            None
        } else {
            self.check_sent_by(caller, &commit.message)?;
            Some(self.sender_signature_key(commit.message.sender())?)
        };
        let confirmation_tag = commit.confirmation_tag()?;
        let crypto = RustCrypto::default();
        let staged = self.process_commit(&crypto, commit)?;
        // The committer signs the new GroupInfo, with its new key if the
        // commit's update path rotated it (an external commit's always does).
        let committer_key = staged
            .update_path_leaf_node()
            .map(|leaf| leaf.signature_key().clone())
            .or(member_key)
            .ok_or_else(|| invalid("commit", "an external commit needs an update path"))?;
        let current = self.member_clients()?;
        let adds = check_adds_are_new_clients(&crypto, &current, &staged)?;
        let mut added = adds.clients;
        let mut removed = removed_clients(&current, &staged);
        if commit.is_external() {
            check_external_commit(caller, &current, &staged)?;
            external_joiner_roster(caller, &mut added, &mut removed);
        }
        let mut new_leaves = adds.leaves;
        new_leaves.extend(self.check_updates_keep_credentials(caller, &staged)?);
        check_welcome_is_for_the_adds(welcome, &adds.key_package_refs)?;
        let new_epoch = NewEpoch {
            group_id: &self.group_id(),
            epoch: from_epoch + 1,
            context: staged.group_context(),
            committer_key,
            confirmation_tag,
        };
        check_group_info(&crypto, group_info, new_epoch)?;
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

    /// The signature key of the member leaf that sent a message.
    fn sender_signature_key(&self, sender: &Sender) -> Result<SignaturePublicKey, MlsError> {
        match sender {
            Sender::Member(index) => self.group.leaf(*index).map(|l| l.signature_key().clone()),
            _ => None,
        }
        .ok_or_else(|| invalid("sender", "no member at that leaf"))
    }

    /// openmls's own validation of the commit against the current state
    /// (signature, membership tag, proposals, the new tree), staged.
    fn process_commit(
        &self,
        crypto: &RustCrypto,
        commit: &CommitMessage,
    ) -> Result<Box<StagedCommit>, MlsError> {
        let processed = self
            .group
            .process_message(crypto, ProtocolMessage::from(commit.message.clone()))
            .map_err(|e| invalid("commit", e))?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(MlsError::WrongType {
                what: "commit",
                expected: "a PublicMessage with a Commit",
            });
        };
        Ok(staged)
    }

    /// The client of each member leaf, by leaf index.
    fn member_clients(&self) -> Result<HashMap<u32, ClientId>, MlsError> {
        self.group
            .members()
            .map(|m| Ok((m.index.u32(), client_of(&m.credential)?)))
            .collect()
    }

    /// Updates may refresh keys but never change who a leaf belongs to;
    /// returns the refreshed leaves (each certified), whose signature keys
    /// and certificates are checked against registrations too.
    fn check_updates_keep_credentials(
        &self,
        caller: &ClientId,
        staged: &StagedCommit,
    ) -> Result<Vec<LeafIdentity>, MlsError> {
        let mut updates = Vec::new();
        if let Some(leaf) = staged.update_path_leaf_node() {
            updates.push((caller.clone(), leaf.clone()));
        }
        for update in staged.update_proposals() {
            let sender = self.sender_client(update.sender())?;
            updates.push((sender, update.update_proposal().leaf_node().clone()));
        }
        updates
            .into_iter()
            .map(|(owner, leaf)| {
                if client_of(leaf.credential())? != owner {
                    return Err(MlsError::Rejected(
                        "an update may not change a member's credential".into(),
                    ));
                }
                certified_leaf(&leaf)
            })
            .collect()
    }
}

/// Every leaf the commit adds names a client that has no leaf yet: not in
/// the group, and not added twice (one leaf per client).
fn check_adds_are_new_clients(
    crypto: &RustCrypto,
    current: &HashMap<u32, ClientId>,
    staged: &StagedCommit,
) -> Result<Adds, MlsError> {
    let mut adds = Adds::default();
    for add in staged.add_proposals() {
        let key_package = add.add_proposal().key_package();
        let leaf = certified_leaf(key_package.leaf_node())?;
        let client = leaf.client.clone();
        if current.values().any(|c| *c == client) || adds.clients.contains(&client) {
            return Err(MlsError::Rejected(format!("{client} is already a member")));
        }
        adds.key_package_refs.insert(
            key_package
                .hash_ref(crypto)
                .map_err(|e| invalid("commit", e))?
                .as_slice()
                .to_vec(),
        );
        adds.leaves.push(leaf);
        adds.clients.push(client);
    }
    Ok(adds)
}

/// The clients whose leaves the commit removes.
fn removed_clients(current: &HashMap<u32, ClientId>, staged: &StagedCommit) -> Vec<ClientId> {
    staged
        .remove_proposals()
        .filter_map(|remove| current.get(&remove.remove_proposal().removed().u32()))
        .cloned()
        .collect()
}

/// A commit that adds members comes with a Welcome addressed to exactly
/// their key packages; one that adds nobody comes without.
fn check_welcome_is_for_the_adds(
    welcome: Option<&[u8]>,
    key_package_refs: &BTreeSet<Vec<u8>>,
) -> Result<(), MlsError> {
    let welcome = match (welcome, key_package_refs.is_empty()) {
        (None, true) => return Ok(()),
        (None, false) => {
            return Err(invalid(
                "welcome",
                "a commit that adds members needs its Welcome",
            ));
        }
        (Some(_), true) => return Err(invalid("welcome", "the commit adds nobody")),
        (Some(welcome), false) => welcome,
    };
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
    if welcomed != *key_package_refs || welcome.secrets().len() != key_package_refs.len() {
        return Err(invalid(
            "welcome",
            "its new members are not exactly the commit's Adds",
        ));
    }
    Ok(())
}
