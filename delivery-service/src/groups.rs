//! Groups: creation, commits (exactly one per epoch), proposals and
//! application messages, and the per-group lock that orders them.
//!
//! Every write of a group's public state (commits, proposals) runs under that
//! group's [`GroupLocks`] slot in this process, and inside one store
//! transaction holding the group's row lock, so: the cached public state is
//! only touched by one writer; its entries are pushed live in sequence order;
//! and a roster change takes effect for live delivery exactly after the
//! commit that made it. Application messages change no state: they take no
//! slot, only the row lock, in the group commit of `crate::appender`, which
//! pushes them live in sequence order per batch.
//!
//! A commit is validated with `PublicGroup` against the state of epoch N
//! before the transaction, then accepted only if the group is still at epoch N
//! under the row lock. That is the same decision as validating under the lock
//! (the state of epoch N is fixed by the log), but keeps signature checks and
//! tree hashing out of the database transaction.
//!
//! Every leaf a commit brings in, and a new group's creator, must be a
//! registered device certified by its user's identity key
//! ([`Ds::check_certified`]). An external commit is accepted only from a
//! device of a user with a device in the group (`mls::external_commit` has
//! the rest of that rule), and the same devices may fetch the GroupInfo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::domain::{
    ClientId, EntryKind, GroupEntry, GroupId, MAX_MESSAGE_ID_LEN, valid_message_id,
};
use crate::error::{ApiError, ApiResult, not_a_member};
use crate::mls::{self, GroupHandle};
use crate::state::Ds;
use crate::store::{
    AppendOutcome, CommitAccepted, CommitOutcome, CommitRecord, NewGroup, NewMessage, StoreError,
};

/// How often a write is re-validated when another replica changed the
/// group's state in the meantime.
const STATE_RETRIES: usize = 3;

/// A group's public state and the store version it corresponds to.
struct Cached {
    handle: GroupHandle,
    version: u64,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The protocol of every write of a group's public state, held under the
/// group's lock: each attempt derives the write from the cached state as of
/// the store's current version ([`StateWriter::attempt`]) and lets the store
/// decide. The write is derived on the cached state itself: a copy would
/// cost a `PublicGroup` load per write (measured: a commit 1.3× slower at 10
/// members, 2× at 1,000). So the writer owns the one rule that keeps the
/// cache true: once an attempt has changed the cached state, the cache is
/// kept only if the store took that state ([`StateWriter::accepted`]); a
/// refusal, a duplicate, an error or an early return forgets it, at the next
/// attempt or when the writer is dropped, and the next write reloads the
/// stored state. If another replica changed the state meanwhile
/// (`StateChanged`), the next attempt reloads it, up to [`STATE_RETRIES`]
/// attempts in all.
struct StateWriter<'a> {
    ds: &'a Ds,
    group_id: &'a GroupId,
    slot: tokio::sync::OwnedMutexGuard<Option<Cached>>,
    attempts: usize,
    /// The cached state holds a write the store has not taken (yet).
    unaccepted: bool,
}

impl StateWriter<'_> {
    /// The current state for the next attempt, to derive the write on, or
    /// ABORTED once [`STATE_RETRIES`] attempts lost to other replicas.
    async fn attempt(&mut self) -> ApiResult<&mut Cached> {
        self.forget_unaccepted();
        if self.attempts == STATE_RETRIES {
            return Err(StoreError::StateChanged.into());
        }
        self.attempts += 1;
        let cached = self.ds.current_state(&mut self.slot, self.group_id).await?;
        self.unaccepted = true;
        Ok(cached)
    }

    /// The store took the state the last attempt derived: it is the cached
    /// state now, at the next version.
    fn accepted(&mut self) {
        let cached = self.slot.as_mut().expect("an attempt loaded the state");
        cached.version += 1;
        self.unaccepted = false;
    }

    fn forget_unaccepted(&mut self) {
        if std::mem::take(&mut self.unaccepted) {
            *self.slot = None;
        }
    }
}

impl Drop for StateWriter<'_> {
    fn drop(&mut self) {
        self.forget_unaccepted();
    }
}

/// One async lock per group, holding the cached public state of that group.
#[derive(Default)]
pub struct GroupLocks {
    slots: Mutex<HashMap<GroupId, Slot>>,
}

impl GroupLocks {
    fn slot(&self, group_id: &GroupId) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(group_id.clone())
            .or_default()
            .clone()
    }
}

#[derive(Debug)]
pub struct CommitResult {
    pub seq: u64,
    pub epoch: u64,
}

#[derive(Debug)]
pub struct GroupInfoResult {
    pub group_info: Bytes,
    pub ratchet_tree: Vec<u8>,
    pub epoch: u64,
}

impl Ds {
    fn check_size(&self, bytes: &[u8], field: &'static str) -> ApiResult<()> {
        confide_proto::validation::require_bytes(bytes, field, self.settings.max_message_bytes)?;
        Ok(())
    }

    /// The cached public state of the group, reloaded from the store when
    /// missing or when another replica wrote a newer version.
    async fn current_state<'a>(
        &self,
        slot: &'a mut Option<Cached>,
        group_id: &GroupId,
    ) -> ApiResult<&'a mut Cached> {
        let version = self
            .store
            .group_state_version(group_id)
            .await?
            .ok_or_else(not_a_member)?;
        if slot.as_ref().is_none_or(|c| c.version != version) {
            let stored = self
                .store
                .group_state(group_id)
                .await?
                .ok_or_else(not_a_member)?;
            *slot = Some(Cached {
                handle: GroupHandle::from_blob(group_id, &stored.state)?,
                version: stored.version,
            });
        }
        Ok(slot.as_mut().expect("filled above"))
    }

    async fn is_member(&self, client: &ClientId, group_id: &GroupId) -> ApiResult<bool> {
        Ok(self
            .store
            .membership(client, group_id)
            .await?
            .is_some_and(|m| m.is_current()))
    }

    async fn require_member(&self, client: &ClientId, group_id: &GroupId) -> ApiResult<()> {
        if !self.is_member(client, group_id).await? {
            return Err(not_a_member());
        }
        Ok(())
    }

    /// Who may see a group's GroupInfo and commit to it externally: a
    /// member, or a device of a user with a device in the group (a new
    /// device of that user, or one re-syncing). True for a member.
    async fn require_member_or_users_device(
        &self,
        client: &ClientId,
        group_id: &GroupId,
    ) -> ApiResult<bool> {
        if self.is_member(client, group_id).await? {
            return Ok(true);
        }
        if self.store.user_in_group(group_id, client.user()).await? {
            return Ok(false);
        }
        Err(not_a_member())
    }

    /// Checks each leaf a commit brings in (O(new leaves)): it names a
    /// registered client that was not removed, with its registered key, and
    /// carries a certificate by the identity key of the user it names. So
    /// nobody, the operator included, can add a device its user did not
    /// certify, or impersonate a client under a key it does not own.
    async fn check_certified(&self, leaves: &[mls::LeafIdentity]) -> ApiResult<()> {
        let mut identity_keys: HashMap<&str, Option<Vec<u8>>> = HashMap::new();
        for leaf in leaves {
            match self.store.client(&leaf.client).await? {
                Some(record) if record.signature_key == leaf.signature_key => {}
                _ => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "{} is not a registered device with the signature key of its leaf \
                         (unknown, removed, or registered again with another key)",
                        leaf.client
                    )));
                }
            }
            let user = leaf.client.user();
            if !identity_keys.contains_key(user) {
                identity_keys.insert(user, self.store.identity_key(user).await?);
            }
            if identity_keys[user].as_deref() != Some(&leaf.identity_key[..]) {
                return Err(ApiError::FailedPrecondition(format!(
                    "{}'s leaf is not certified by user {user}'s identity key",
                    leaf.client
                )));
            }
        }
        Ok(())
    }

    pub async fn create_group(
        &self,
        caller: &ClientId,
        group_info: Bytes,
        ratchet_tree: Bytes,
    ) -> ApiResult<(GroupId, u64)> {
        self.check_size(&group_info, "group_info")?;
        self.check_size(&ratchet_tree, "ratchet_tree")?;
        let handle = GroupHandle::create(&group_info, &ratchet_tree)?;
        let members = handle.certified_members()?;
        if members.len() != 1 {
            return Err(ApiError::InvalidArgument(
                "a new group must have the caller as its only member".into(),
            ));
        }
        // Whether or not the named client exists: the same answer.
        if members[0].client != *caller {
            return Err(ApiError::PermissionDenied(
                "a client may create a group only with itself as its member".into(),
            ));
        }
        self.check_certified(&members).await?;
        let group_id = handle.group_id();
        let epoch = handle.epoch();
        let slot = self.groups.slot(&group_id);
        let mut guard = slot.lock().await;
        self.store
            .create_group(NewGroup {
                group_id: group_id.clone(),
                epoch,
                state: handle.to_blob(),
                group_info,
                creator: caller.clone(),
            })
            .await?;
        *guard = Some(Cached { handle, version: 0 });
        self.hub.join(&group_id, caller);
        Ok((group_id, epoch))
    }

    pub async fn submit_commit(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
        commit: Bytes,
        welcome: Option<Bytes>,
        group_info: Bytes,
    ) -> ApiResult<CommitResult> {
        self.check_size(&commit, "commit")?;
        self.check_size(&group_info, "group_info")?;
        if let Some(welcome) = &welcome {
            self.check_size(welcome, "welcome")?;
        }
        let member = self
            .require_member_or_users_device(caller, group_id)
            .await?;
        let dedup_key = mls::dedup_key("commit", &[&commit]);
        let after = |entry: GroupEntry| CommitResult {
            seq: entry.seq,
            epoch: entry.epoch + 1,
        };
        let parsed = mls::CommitMessage::parse(&commit, group_id)?;
        // Only an external commit may come from a device not in the group.
        if !member && !parsed.is_external() {
            return Err(not_a_member());
        }
        let mut writer = self.state_writer(group_id).await;
        loop {
            let cached = writer.attempt().await?;
            // A commit for an older epoch may be a retry of one we accepted.
            if parsed.epoch() != cached.handle.epoch()
                && let Some(entry) = self.store.find_entry(group_id, &dedup_key).await?
            {
                return Ok(after(entry));
            }
            if parsed.is_external() {
                // Read after the attempt's state version: a commit that took
                // the user's last device out since is caught as StateChanged.
                self.check_external_committer(caller, group_id).await?;
            }
            let staged = cached
                .handle
                .stage(caller, &parsed, welcome.as_deref(), &group_info)?;
            self.check_certified(&staged.new_leaves).await?;
            let (from_epoch, added, removed) = (
                staged.from_epoch,
                staged.added.clone(),
                staged.removed.clone(),
            );
            cached.handle.merge(staged)?;
            let next = &cached.handle;
            let record = CommitRecord {
                group_id: group_id.clone(),
                from_epoch,
                state_version: cached.version,
                dedup_key,
                commit: commit.clone(),
                new_state: next.to_blob(),
                group_info: group_info.clone(),
                added: added.clone(),
                welcome: welcome.clone(),
                ratchet_tree: match welcome {
                    Some(_) => next.ratchet_tree().into(),
                    None => Bytes::new(),
                },
                removed: removed.clone(),
            };
            match self.store.accept_commit(record).await {
                Ok(CommitOutcome::Accepted(accepted)) => {
                    writer.accepted();
                    self.publish_commit(group_id, from_epoch, (&added, &removed), &accepted);
                    return Ok(after(accepted.entry));
                }
                Ok(CommitOutcome::Duplicate(entry)) => return Ok(after(entry)),
                Err(StoreError::StateChanged) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// An external commit is accepted only from a device of a user with a
    /// device in the group's roster (RFC 9420 §12.4.3.2; the rest of the rule
    /// is `mls::external_commit`).
    async fn check_external_committer(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
    ) -> ApiResult<()> {
        if !self.store.user_in_group(group_id, caller.user()).await? {
            return Err(ApiError::PermissionDenied(format!(
                "an external commit is accepted only from a device of a user in the group, \
                 and user {} has no device in it",
                caller.user()
            )));
        }
        Ok(())
    }

    /// Tells live delivery about an accepted commit: the entry, the roster
    /// change, and each joiner's Welcome.
    fn publish_commit(
        &self,
        group_id: &GroupId,
        from_epoch: u64,
        (added, removed): (&[ClientId], &[ClientId]),
        accepted: &CommitAccepted,
    ) {
        self.publish_group(&accepted.entry);
        for client in removed {
            self.hub.leave(group_id, client);
        }
        for client in added {
            self.hub.join(group_id, client);
        }
        for (client, entry) in &accepted.welcomes {
            self.publish_inbox(client, entry);
        }
        tracing::debug!(group = %group_id, seq = accepted.entry.seq, epoch = from_epoch + 1,
            added = added.len(), removed = removed.len(), "commit accepted");
    }

    pub async fn submit_proposal(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
        proposal: Bytes,
    ) -> ApiResult<u64> {
        self.check_size(&proposal, "proposal")?;
        self.require_member(caller, group_id).await?;
        let dedup_key = mls::dedup_key("proposal", &[&proposal]);
        if let Some(entry) = self.store.find_entry(group_id, &dedup_key).await? {
            return Ok(entry.seq);
        }
        let seq = self
            .append_proposal(group_id, Some(caller), |handle| {
                let epoch = handle.apply_proposal(caller, &proposal)?;
                Ok(Some((proposal.clone(), epoch)))
            })
            .await?;
        Ok(seq.expect("a member's proposal is always made"))
    }

    /// Appends the proposal `make` produces against the group's current
    /// public state (and queues there), under the group's lock; if another
    /// replica changed the state meanwhile, reloads and makes it again.
    /// `make` returns the proposal and its epoch, or `None` to append
    /// nothing. A proposal appended before returns its original seq.
    pub(crate) async fn append_proposal(
        &self,
        group_id: &GroupId,
        sender: Option<&ClientId>,
        mut make: impl FnMut(&mut GroupHandle) -> ApiResult<Option<(Bytes, u64)>>,
    ) -> ApiResult<Option<u64>> {
        let mut writer = self.state_writer(group_id).await;
        loop {
            let cached = writer.attempt().await?;
            let Some((proposal, epoch)) = make(&mut cached.handle)? else {
                return Ok(None);
            };
            let next = &cached.handle;
            let dedup_key = mls::dedup_key("proposal", &[&proposal]);
            let message = NewMessage {
                group_id: group_id.clone(),
                sender: sender.cloned(),
                dedup_key,
                content_key: dedup_key,
                kind: EntryKind::Proposal,
                epoch,
                message: proposal,
                max_epoch_lag: 0,
                new_state: Some((next.to_blob(), cached.version)),
            };
            match self.store.append(message).await {
                Ok(outcome @ AppendOutcome::Appended(_)) => {
                    writer.accepted();
                    return Ok(Some(self.publish_appended(outcome)));
                }
                // Appended before: the cached state has it queued already.
                Ok(outcome) => return Ok(Some(self.publish_appended(outcome))),
                Err(StoreError::StateChanged) => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Starts a write of the group's public state: takes the group's lock.
    async fn state_writer<'a>(&'a self, group_id: &'a GroupId) -> StateWriter<'a> {
        StateWriter {
            ds: self,
            group_id,
            slot: self.groups.slot(group_id).lock_owned().await,
            attempts: 0,
            unaccepted: false,
        }
    }

    pub async fn send_message(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
        message_id: &[u8],
        message: Bytes,
    ) -> ApiResult<u64> {
        if !valid_message_id(message_id) {
            return Err(ApiError::InvalidArgument(format!(
                "message_id must be 1 to {MAX_MESSAGE_ID_LEN} bytes"
            )));
        }
        self.check_size(&message, "message")?;
        let parsed = mls::parse_application_message(&message, group_id)?;
        let new = NewMessage {
            group_id: group_id.clone(),
            sender: Some(caller.clone()),
            dedup_key: mls::dedup_key("application", &[&caller.identity(), message_id]),
            content_key: mls::dedup_key("content", &[&message]),
            kind: EntryKind::Application,
            epoch: parsed.epoch,
            message: message.clone(),
            max_epoch_lag: self.settings.max_epoch_lag,
            new_state: None,
        };
        // Published live by the batch, in sequence order, before it answers.
        let outcome = self.appender.append(new).await.map_err(|e| match e {
            StoreError::NotFound(_) => not_a_member(),
            other => other.into(),
        })?;
        // A retry must carry the bytes the id was first used for: other bytes
        // are another message, which the sender would wrongly believe sent.
        if let AppendOutcome::Duplicate(original) = &outcome
            && original.message != message
        {
            return Err(ApiError::IdempotencyKeyReused);
        }
        Ok(outcome.entry().seq)
    }

    fn publish_appended(&self, outcome: AppendOutcome) -> u64 {
        if let AppendOutcome::Appended(entry) = &outcome {
            self.publish_group(entry);
        }
        outcome.entry().seq
    }

    /// The group's GroupInfo and ratchet tree, for its members and for the
    /// devices that may join it by external commit: any device of a user
    /// with a device in the group.
    pub async fn group_info(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
    ) -> ApiResult<GroupInfoResult> {
        self.require_member_or_users_device(caller, group_id)
            .await?;
        let slot = self.groups.slot(group_id);
        let mut guard = slot.lock().await;
        let (epoch, group_info) = self
            .store
            .group_info(group_id)
            .await?
            .ok_or_else(not_a_member)?;
        let cached = self.current_state(&mut guard, group_id).await?;
        Ok(GroupInfoResult {
            group_info,
            ratchet_tree: cached.handle.ratchet_tree(),
            epoch,
        })
    }

    /// Entries of a group the caller may read, after `after_seq`.
    pub async fn read_group(
        &self,
        caller: &ClientId,
        group_id: &GroupId,
        after_seq: u64,
        limit: u32,
    ) -> ApiResult<Vec<GroupEntry>> {
        Ok(self
            .store
            .read_group(caller, group_id, after_seq, limit)
            .await?)
    }
}
