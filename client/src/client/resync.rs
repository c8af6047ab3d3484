//! Re-syncing by external commit (RFC 9420 §12.4.3.2). A device that lost
//! its state, or that a commit it could not process left behind, rejoins
//! the group from the GroupInfo and ratchet tree the DS serves, with a new
//! leaf carrying its certificate; the external commit removes its own old
//! leaf. What the log held before that commit was for epochs this client
//! has no secrets of, so processing goes on after it.
//!
//! The external commit goes through the same one-commit-per-epoch gate as
//! any other: a rejoin that lost the race fetches a fresh GroupInfo and is
//! built again; one that got no answer is recorded (`store/resync.rs`) and
//! sent again, the same bytes, until the DS gives its verdict.

use confide_core::profile::{self, client_of};
use confide_proto::v1;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use confide_core::ClientId;

use super::commit::{Change, CommitSummary};
use super::stream::{group_selector, inbox_selector};
use super::{Client, to_bytes};
use crate::api::Api;
use crate::error::{ClientError, ClientResult, in_doubt, mls, wrong_epoch};
use crate::events::Event;
use crate::events::GroupId;
use crate::identity::{Backup, UserIdentity};
use crate::store::StateLocation;
use crate::store::{CommitInDoubt, Stream};

/// Inbox entries read per page when a restored device skips its inbox.
const SKIP_PAGE: u32 = 500;

/// How often a rejoin is built again after losing the race for an epoch.
const MAX_REJOIN_ATTEMPTS: u32 = 8;

/// Undecryptable application messages from the current epoch in a row after
/// which a client takes itself to be stuck and rejoins.
pub(super) const UNDECRYPTABLE_RUN: u32 = 3;

/// Whether a failed rejoin may succeed if tried again: no verdict, a
/// session to renew, a rate limit, or races lost too often.
fn transient(error: &ClientError) -> bool {
    error.is_in_doubt()
        || error.needs_new_session()
        || matches!(error, ClientError::TooManyRetries(_))
        || matches!(error, ClientError::Rpc(status) if status.code() == tonic::Code::ResourceExhausted)
}

/// Why an entry that could not be processed may mean this client is stuck.
pub(super) enum Stuck {
    /// A commit for the epoch this client is in.
    Commit,
    /// An application message from the epoch this client is in (or later).
    Message,
}

/// Whether the entry `message`, which could not be processed in `epoch`,
/// is a sign of being stuck.
pub(super) fn stuck_by(message: &[u8], epoch: u64) -> Option<Stuck> {
    let message = MlsMessageIn::tls_deserialize_exact(message)
        .ok()?
        .try_into_protocol_message()
        .ok()?;
    let message_epoch = message.epoch().as_u64();
    match message.content_type() {
        ContentType::Commit if message_epoch == epoch => Some(Stuck::Commit),
        ContentType::Application if message_epoch >= epoch => Some(Stuck::Message),
        _ => None,
    }
}

impl Client {
    /// Restores a device that lost its state file from its backup
    /// ([`Client::backup`], `confide identity export`) into a new state at
    /// `location`: registers the device again, certified by the backed-up
    /// identity key, and rejoins every group the DS has it in. With the
    /// device's own signature key in the backup it keeps that key; with the
    /// identity key alone it gets a new one (the DS re-keys the device), and
    /// rejoins only groups it has no leaf in any more (see
    /// `remove_own_old_leaves`). Returns the client and the groups it
    /// rejoined; a group it could not rejoin is logged and skipped.
    pub async fn restore(
        api: Api,
        id: ClientId,
        location: &StateLocation,
        registration_token: &str,
        backup: Backup,
    ) -> ClientResult<(Self, Vec<GroupId>)> {
        let (identity, signer) = backup.into_parts(&id);
        let mut client =
            Self::register_device(api, id, location, registration_token, identity, signer).await?;
        client.skip_inbox().await?;
        let mut rejoined = Vec::new();
        for group_id in client.groups_on_server().await? {
            match client.rejoin(&group_id).await {
                Ok(_) => rejoined.push(group_id),
                Err(error) => {
                    tracing::warn!(client = %client.id, %error, "could not re-join a group");
                }
            }
        }
        Ok((client, rejoined))
    }

    /// Marks the inbox read as far as it goes, unprocessed: a restored
    /// device has none of the key packages its Welcomes were made for.
    async fn skip_inbox(&mut self) -> ClientResult<()> {
        loop {
            let after = self.db.processed(&Stream::Inbox)?;
            let last = self
                .api
                .fetch(inbox_selector(), after, SKIP_PAGE)
                .await?
                .into_iter()
                .filter_map(|envelope| match envelope.entry {
                    Some(v1::envelope::Entry::Inbox(entry)) => Some(entry.seq),
                    _ => None,
                })
                .max();
            match last {
                Some(seq) if seq > after => self.db.set_processed(&Stream::Inbox, seq)?,
                _ => break,
            }
        }
        let seq = self.db.processed(&Stream::Inbox)?;
        self.api.ack(inbox_selector(), seq).await
    }

    /// This device's backup: its user's identity key and its own signature
    /// key, secret, for [`Client::restore`] after losing the state file.
    pub fn backup(&self) -> ClientResult<Backup> {
        let identity = UserIdentity::from_secret_bytes(&self.identity.to_secret_bytes()?)?;
        let signer: openmls_basic_credential::SignatureKeyPair =
            serde_json::from_value(serde_json::to_value(&self.signer).map_err(mls)?)
                .map_err(mls)?;
        Ok(Backup::new(identity, self.id.clone(), signer))
    }

    /// The groups the DS's roster has this client in (which may differ from
    /// those its state holds: after a restore, it holds none).
    pub async fn groups_on_server(&mut self) -> ClientResult<Vec<GroupId>> {
        let request = self.api.request(v1::ListGroupsRequest {});
        Ok(self
            .api
            .groups()
            .list_groups(request)
            .await?
            .into_inner()
            .group_ids
            .into_iter()
            .map(|id| id.to_vec())
            .collect())
    }

    /// Rejoins the group by external commit: fetches its GroupInfo and
    /// ratchet tree, joins with this device's credential and certificate,
    /// removes this device's old leaf, and submits the commit. Once the DS
    /// accepts it, the group's log is read on after it and
    /// [`Event::Resynced`] is kept for the application.
    ///
    /// The group's state is replaced when the commit is built, before the
    /// DS's verdict: rejoin a group this client is stuck in or lost. If
    /// the DS refuses the rejoin (other than for a lost race), the group is
    /// forgotten.
    pub async fn rejoin(&mut self, group_id: &[u8]) -> ClientResult<CommitSummary> {
        self.rejoin_from(group_id, None).await
    }

    /// [`Client::rejoin`], the first attempt built on `info` (a GroupInfo
    /// fetched earlier) rather than on one fetched now: for tests of what
    /// the DS does with an external commit on a stale or borrowed GroupInfo.
    #[doc(hidden)]
    pub async fn rejoin_from(
        &mut self,
        group_id: &[u8],
        mut info: Option<v1::GetGroupInfoResponse>,
    ) -> ClientResult<CommitSummary> {
        if let Some(done) = self.settle_resync_in_doubt(group_id).await? {
            return Ok(done);
        }
        for retries in 0..MAX_REJOIN_ATTEMPTS {
            let info = match info.take() {
                Some(info) => info,
                None => self.group_info(group_id).await?,
            };
            let submitted = self.build_rejoin(group_id, info)?;
            let answer = self.submit_commit(group_id, &submitted).await;
            if let Some(accepted) = self.conclude_rejoin(group_id, answer).await? {
                return Ok(CommitSummary {
                    retries,
                    ..accepted
                });
            }
            tracing::debug!(client = %self.id, retries, "lost the race for an epoch with a rejoin; building it again");
        }
        Err(ClientError::TooManyRetries(MAX_REJOIN_ATTEMPTS))
    }

    /// Rejoins every group this client decided it is stuck in.
    pub(super) async fn resync_where_stuck(&mut self) -> ClientResult<()> {
        for (group_id, reason) in self.db.wanted_resyncs()? {
            tracing::info!(client = %self.id, %reason, "stuck in a group; re-joining it");
            match self.rejoin(&group_id).await {
                Ok(_) => {}
                Err(error) if error.is_in_doubt() => return Err(error),
                Err(error) => {
                    // Refused: the group is forgotten (see `rejoin`), and
                    // so is the wish to rejoin it.
                    tracing::warn!(client = %self.id, %error, "could not re-join a group");
                    self.db.forget_resync(&group_id)?;
                }
            }
        }
        Ok(())
    }

    /// Recovers from the DS having pruned entries of the group (before
    /// `first_seq`) that this client had not read, away longer than the
    /// DS keeps them: it cannot go on from where it was, so it rejoins by
    /// external commit (reported as [`Event::Resyncing`], then
    /// [`Event::Resynced`]) and reads on after that. If it no longer holds
    /// the group, or the DS refuses the rejoin (it forgets the group then),
    /// it acknowledges what was pruned, so the DS serves what it still
    /// holds. Either way the DS's answer changes, so a pruned read is never
    /// met with the same request again.
    pub(super) async fn recover_pruned(
        &mut self,
        group_id: &[u8],
        first_seq: u64,
    ) -> ClientResult<()> {
        let after = self.db.processed(&Stream::Group(group_id.to_vec()))?;
        if after.saturating_add(1) >= first_seq {
            // Processed here before they were pruned, only not yet
            // acknowledged (the DS's cursor is behind): nothing was lost.
            return self.api.ack(group_selector(group_id), after).await;
        }
        tracing::info!(client = %self.id, after, first_seq, "entries of a group were pruned before this client read them");
        if self.groups.contains_key(group_id) {
            self.emit(Event::Resyncing {
                group: group_id.to_vec(),
                reason: format!(
                    "the delivery service no longer holds entries {}–{} of the group (this \
                     device was away longer than it keeps them)",
                    after + 1,
                    first_seq.saturating_sub(1)
                ),
            })?;
            match self.rejoin(group_id).await {
                // Acknowledged at once: the DS's cursor for this client is
                // still below what it holds (a rejoin keeps the membership).
                Ok(rejoined) => return self.api.ack(group_selector(group_id), rejoined.seq).await,
                // Worth trying again (at the next read of the group).
                Err(error) if transient(&error) => return Err(error),
                Err(error) => {
                    // Refused: this client cannot read the group again.
                    tracing::warn!(client = %self.id, %error, "could not re-join a group whose entries were pruned; forgetting it");
                    self.forget_group(group_id)?;
                    self.db.forget_resync(group_id)?;
                }
            }
        }
        self.api
            .ack(group_selector(group_id), first_seq.saturating_sub(1))
            .await
    }

    /// Marks the group as one to rejoin, unless this client already
    /// rejoined it at this epoch (once per epoch: a rejoin that leaves it
    /// stuck again is not repeated until the group moves on).
    pub(super) fn want_resync(
        &mut self,
        group_id: &[u8],
        epoch: u64,
        reason: String,
    ) -> ClientResult<()> {
        if self.db.resynced_at(group_id)?.is_some_and(|at| at >= epoch)
            || self
                .db
                .wanted_resyncs()?
                .iter()
                .any(|(wanted, _)| wanted == group_id)
        {
            return Ok(());
        }
        self.db.want_resync(group_id, &reason)?;
        self.emit(Event::Resyncing {
            group: group_id.to_vec(),
            reason,
        })
    }

    /// Builds the external commit on the group's GroupInfo `info` and
    /// installs the group it makes (replacing this client's state of it),
    /// recording the commit before it leaves.
    fn build_rejoin(
        &mut self,
        group_id: &[u8],
        info: v1::GetGroupInfoResponse,
    ) -> ClientResult<CommitInDoubt> {
        let message = MlsMessageIn::tls_deserialize_exact(&info.group_info).map_err(mls)?;
        let MlsMessageBodyIn::GroupInfo(group_info) = message.extract() else {
            return Err(ClientError::Invalid("the DS served no GroupInfo".into()));
        };
        if group_info.group_id().as_slice() != group_id {
            return Err(ClientError::Invalid(
                "the DS served the GroupInfo of another group".into(),
            ));
        }
        let epoch = group_info.epoch().as_u64();
        let ratchet_tree = RatchetTreeIn::tls_deserialize_exact(&info.ratchet_tree).map_err(mls)?;
        // openmls removes a leaf with this very signature key itself: the
        // leaf of a device that kept its key but fell behind. One restored
        // with a new key removes its old leaf in a commit of its own once
        // it is back in (`remove_own_old_leaves`).
        let complete = MlsGroup::external_commit_builder()
            .with_ratchet_tree(ratchet_tree)
            .with_config(profile::join_config())
            .build_group(&self.provider, group_info, self.credential.clone())
            .map_err(mls)?
            .leaf_node_parameters(profile::external_join_leaf(&self.certificate))
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .create_group_info(true)
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(mls)?;
        // The new group is stored under the same id: the old state goes
        // first, so none of it (a pending commit, old proposals) lingers.
        if let Some(mut old) = self.groups.remove(group_id) {
            old.delete(self.provider.storage()).map_err(mls)?;
        }
        self.db.forget_commit_in_doubt(group_id)?;
        let (group, bundle) = complete.finalize(&self.provider).map_err(mls)?;
        let (commit, _, group_info) = bundle.into_messages();
        let group_info =
            group_info.ok_or_else(|| ClientError::Mls("openmls produced no GroupInfo".into()))?;
        let submitted = CommitInDoubt {
            epoch,
            commit: to_bytes(commit)?,
            welcome: Vec::new(),
            group_info: to_bytes(group_info)?,
        };
        self.db.set_resync_in_doubt(group_id, &submitted)?;
        // Entries from before the new epoch are skipped, unread: this
        // client holds no secrets of those epochs.
        let stream = Stream::Group(group_id.to_vec());
        self.db.set_joined_epoch(group_id, group.epoch().as_u64())?;
        self.db
            .set_processed(&stream, self.db.processed(&stream)?)?;
        self.groups.insert(group_id.to_vec(), group);
        Ok(submitted)
    }

    /// The group's latest GroupInfo and ratchet tree, as the DS serves them
    /// to a client that may rejoin it.
    pub async fn group_info(&mut self, group_id: &[u8]) -> ClientResult<v1::GetGroupInfoResponse> {
        let request = self.api.request(v1::GetGroupInfoRequest {
            group_id: group_id.to_vec().into(),
        });
        Ok(self
            .api
            .groups()
            .get_group_info(request)
            .await?
            .into_inner())
    }

    /// Acts on the DS's answer to a rejoin: `Some` once accepted, `None`
    /// for a lost race (to build again), the error otherwise.
    async fn conclude_rejoin(
        &mut self,
        group_id: &[u8],
        answer: Result<v1::SubmitCommitResponse, tonic::Status>,
    ) -> ClientResult<Option<CommitSummary>> {
        let accepted = match answer {
            Ok(accepted) => accepted,
            Err(status) if in_doubt(&status) => {
                tracing::warn!(client = %self.id, %status, "no answer to a rejoin; it is sent again at the next sync");
                return Err(ClientError::CommitInDoubt);
            }
            Err(status) if wrong_epoch(&status).is_some() => {
                self.db.forget_resync_in_doubt(group_id)?;
                return Ok(None);
            }
            Err(status) => {
                self.forget_group(group_id)?;
                self.db.forget_resync(group_id)?;
                return Err(status.into());
            }
        };
        // The log is read on after the external commit.
        self.db
            .set_processed(&Stream::Group(group_id.to_vec()), accepted.seq)?;
        self.db.resynced(group_id, accepted.epoch)?;
        self.emit(Event::Resynced {
            group: group_id.to_vec(),
            epoch: accepted.epoch,
        })?;
        self.remove_own_old_leaves(group_id).await;
        Ok(Some(CommitSummary {
            seq: accepted.seq,
            epoch: accepted.epoch,
            retries: 0,
        }))
    }

    /// Sends the recorded rejoin of the group again, if one got no answer.
    pub(super) async fn settle_resync_in_doubt(
        &mut self,
        group_id: &[u8],
    ) -> ClientResult<Option<CommitSummary>> {
        let Some(submitted) = self.db.resync_in_doubt(group_id)? else {
            return Ok(None);
        };
        let answer = self.submit_commit(group_id, &submitted).await;
        self.conclude_rejoin(group_id, answer).await
    }

    /// Removes the leaves of this client other than its own (those of its
    /// state before a restore with a new key), in one commit. Best effort:
    /// the rejoin stands either way.
    async fn remove_own_old_leaves(&mut self, group_id: &[u8]) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let own = group.own_leaf_index();
        let stale = group
            .members()
            .any(|m| m.index != own && client_of(&m.credential).is_ok_and(|c| c == self.id));
        if !stale {
            return;
        }
        if let Err(error) = self.commit(group_id, Change::RemoveOwnOldLeaves).await {
            tracing::warn!(client = %self.id, %error, "could not remove this device's old leaf");
        }
    }
}
