//! The commit protocol. A membership change becomes one commit for the
//! group's current epoch, recorded in the state file before it leaves. The
//! DS takes one commit per epoch: a commit that lost the race is dropped, the
//! group caught up, and the change built again on the new epoch. A commit
//! that got no answer stays pending, in doubt, until the group's log (or the
//! same bytes sent again) settles it.

use std::time::Duration;

use confide_core::ClientId;
use confide_core::profile::client_of;
use confide_proto::v1;
use openmls::prelude::*;

use super::processing::left_members;
use super::{Client, MAX_COMMIT_ATTEMPTS, to_bytes};
use crate::error::{ClientError, ClientResult, in_doubt, mls, wrong_epoch};
use crate::events::Event;
use crate::store::CommitInDoubt;

/// Times a commit whose answer never came is sent again, and the pause
/// before the first resend (growing linearly): 11 s in all.
const COMMIT_RESENDS: u32 = 10;
pub(super) const COMMIT_RESEND_AFTER: Duration = Duration::from_millis(200);

/// A membership change to commit.
pub(super) enum Change {
    Add(Vec<KeyPackage>),
    Remove(Vec<String>),
    /// Remove these devices (a revoked one), not every device of their users.
    RemoveClients(Vec<ClientId>),
    Update,
    /// Commit the proposals queued in the group (the DS's removals, a
    /// member's leaving).
    PendingProposals,
    /// Remove this client's leaves other than its own: those left by its
    /// state before it was restored with a new key and rejoined.
    RemoveOwnOldLeaves,
}

/// What an accepted commit did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSummary {
    pub seq: u64,
    pub epoch: u64,
    /// Commit races lost before this one was accepted.
    pub retries: u32,
}

impl Client {
    /// Commits `change` to the group: catches up and settles a commit in
    /// doubt, stages the commit on the current epoch, records it, submits
    /// it and merges it once accepted; a lost race starts over on the new
    /// epoch.
    pub(super) async fn commit(
        &mut self,
        group_id: &[u8],
        change: Change,
    ) -> ClientResult<CommitSummary> {
        for retries in 0..MAX_COMMIT_ATTEMPTS {
            self.catch_up_group(group_id).await?;
            self.settle_commit_in_doubt(group_id).await?;
            let submitted = self.stage_commit(group_id, &change)?;
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

    /// Builds the commit for `change` on the group's current epoch and
    /// stages it as the group's pending commit; returns what to submit.
    fn stage_commit(&mut self, group_id: &[u8], change: &Change) -> ClientResult<CommitInDoubt> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ClientError::UnknownGroup)?;
        if removal_of_self_pending(group) {
            // openmls refuses a commit that removes its committer, and every
            // commit carries the proposals queued (the default of its
            // builder): another member commits this one.
            return Err(match change {
                Change::PendingProposals => ClientError::NothingToCommit,
                _ => ClientError::RemovalPending,
            });
        }
        let removals = match change {
            Change::Remove(users) => leaves_of(group, users)?,
            Change::RemoveOwnOldLeaves => {
                let own = group.own_leaf_index();
                let old: Vec<LeafNodeIndex> = group
                    .members()
                    .filter(|m| {
                        m.index != own && client_of(&m.credential).is_ok_and(|c| c == self.id)
                    })
                    .map(|m| m.index)
                    .collect();
                if old.is_empty() {
                    return Err(ClientError::NothingToCommit);
                }
                old
            }
            Change::RemoveClients(clients) => {
                // A leaf the DS already proposed to remove (it deprovisions
                // a revoked device too) goes with that proposal, which the
                // commit consumes; removing it twice would be invalid.
                let proposed: Vec<LeafNodeIndex> = group
                    .pending_proposals()
                    .filter_map(|p| match p.proposal() {
                        Proposal::Remove(remove) => Some(remove.removed()),
                        _ => None,
                    })
                    .collect();
                group
                    .members()
                    .filter(|m| client_of(&m.credential).is_ok_and(|c| clients.contains(&c)))
                    .map(|m| m.index)
                    .filter(|leaf| !proposed.contains(leaf))
                    .collect()
            }
            _ => Vec::new(),
        };
        if matches!(change, Change::RemoveClients(_))
            && removals.is_empty()
            && group.pending_proposals().next().is_none()
        {
            // Removed meanwhile (by another device of the user).
            return Err(ClientError::NothingToCommit);
        }
        if matches!(change, Change::PendingProposals) && group.pending_proposals().next().is_none()
        {
            // Another member committed them meanwhile.
            return Err(ClientError::NothingToCommit);
        }
        let builder = group.commit_builder();
        let builder = match change {
            // An Add needs no update path (RFC 9420 §12.4): without
            // one, adding to a large group costs the committer O(1)
            // encryptions rather than one per copath resolution.
            Change::Add(key_packages) => builder.propose_adds(key_packages.iter().cloned()),
            Change::Remove(_) | Change::RemoveClients(_) | Change::RemoveOwnOldLeaves => {
                builder.propose_removals(removals)
            }
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
        let group_info =
            group_info.ok_or_else(|| ClientError::Mls("openmls produced no GroupInfo".into()))?;
        Ok(CommitInDoubt {
            epoch: group.epoch().as_u64(),
            commit: to_bytes(commit)?,
            welcome: welcome.map(to_bytes).transpose()?.unwrap_or_default(),
            group_info: to_bytes(group_info)?,
        })
    }

    /// Submits a commit, resending the same bytes while no answer comes.
    ///
    /// No answer (the DS restarting, the connection lost) does not mean the
    /// commit was refused: the DS may have accepted it. The same bytes again
    /// get the original answer (a commit is accepted once per epoch), so
    /// resend rather than give up on a commit the group may already have
    /// merged.
    pub(super) async fn submit_commit(
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
        let before = match &answer {
            Ok(_) => self.roster(group_id)?,
            Err(_) => Vec::new(),
        };
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(ClientError::UnknownGroup)?;
        match answer {
            Ok(accepted) => {
                // Members whose leaving it commits are reported here too:
                // the commit may be this client's only sign of it.
                let left = group
                    .pending_commit()
                    .map(|staged| {
                        left_members(group, staged, |leaf| {
                            self.verifier.certified(&self.db, leaf)
                        })
                    })
                    .unwrap_or_default();
                group.merge_pending_commit(&self.provider).map_err(mls)?;
                self.db.mark_own(group_id, accepted.seq)?;
                self.db.forget_commit_in_doubt(group_id)?;
                let leavers: Vec<ClientId> = left.iter().map(|m| m.client.clone()).collect();
                self.record_own_commit(group_id, accepted.seq, &before, &leavers)?;
                if !left.is_empty() {
                    // In the history already (`record_own_commit`).
                    self.push_event(Event::MembersLeft {
                        group: group_id.to_vec(),
                        members: left,
                    })?;
                }
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
    pub(super) async fn settle_commit_in_doubt(&mut self, group_id: &[u8]) -> ClientResult<()> {
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

    /// Commits the removals proposed in the groups: the DS's (deprovisioned
    /// devices) and members' own (leaving). Every member tries; one commit
    /// wins the epoch and the others, catching up, find nothing left to
    /// commit.
    pub(super) async fn commit_pending_removals(&mut self) -> ClientResult<()> {
        while let Some(group_id) = self.pending_removals.pop_first() {
            if !self.groups.contains_key(&group_id) {
                continue;
            }
            match self.commit(&group_id, Change::PendingProposals).await {
                Ok(_) | Err(ClientError::NothingToCommit) => {}
                Err(error) => {
                    self.pending_removals.insert(group_id);
                    return Err(error);
                }
            }
        }
        Ok(())
    }
}

/// Whether a proposal queued in the group removes this client's own leaf
/// (it is leaving, or being deprovisioned): no commit of its own can carry
/// it.
pub(super) fn removal_of_self_pending(group: &MlsGroup) -> bool {
    let own = group.own_leaf_index();
    group
        .pending_proposals()
        .any(|p| matches!(p.proposal(), Proposal::Remove(r) if r.removed() == own))
}

/// Whether the group holds removals for this client to commit, none of
/// them its own: the DS's (a deprovisioned device) or a member's leaving
/// (its proposal removes a device of its own user). Other members'
/// proposals to remove someone are left to their senders, who can commit
/// a removal themselves.
pub(super) fn removals_to_commit(group: &MlsGroup) -> bool {
    let user_at = |leaf: LeafNodeIndex| {
        group
            .member(leaf)
            .and_then(|credential| client_of(credential).ok())
            .map(|client| client.user().to_owned())
    };
    let mut removals = group
        .pending_proposals()
        .filter_map(|p| match p.proposal() {
            Proposal::Remove(remove) => Some((p.sender(), remove.removed())),
            _ => None,
        });
    !removal_of_self_pending(group)
        && removals.any(|(sender, removed)| match sender {
            Sender::External(_) => true,
            Sender::Member(proposer) => {
                user_at(*proposer).is_some_and(|user| Some(user) == user_at(removed))
            }
            _ => false,
        })
}

/// The leaves of every device of `users` in the group; an error if none of
/// them is a member.
fn leaves_of(group: &MlsGroup, users: &[String]) -> ClientResult<Vec<LeafNodeIndex>> {
    let leaves: Vec<LeafNodeIndex> = group
        .members()
        .filter(|m| client_of(&m.credential).is_ok_and(|c| users.iter().any(|u| u == c.user())))
        .map(|m| m.index)
        .collect();
    if leaves.is_empty() {
        return Err(ClientError::Invalid(
            "none of those users is a member of the group".into(),
        ));
    }
    Ok(leaves)
}
