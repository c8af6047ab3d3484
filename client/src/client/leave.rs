//! Leaving a group. Nobody may commit their own removal (RFC 9420 §12.2),
//! so a member leaves by proposing it: one Remove proposal per device of its
//! user in the group (a user who leaves takes its other devices along
//! rather than leave them behind unnoticed), submitted to the DS, which
//! validates and queues them. Another member's device commits them (see
//! `commit.rs`, [`Change::PendingProposals`]) when it next catches up; the
//! leaver sees [`crate::Event::Removed`] and forgets the group then.
//!
//! Proposals live for one epoch: a commit that takes the epoch without
//! them drops them. So the leaver records that it is leaving, with the
//! epoch it proposed in (`confide_leaving`), and proposes again whenever
//! it sees the group in a later epoch, after a restart too, until it is out.

use confide_core::ClientId;
use confide_core::profile::client_of;
use confide_proto::v1;
use openmls::prelude::*;

use super::commit::Change;
use super::{Client, MAX_COMMIT_ATTEMPTS, to_bytes};
use crate::error::{ClientError, ClientResult, mls, wrong_epoch};

/// What [`Client::leave`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Leave {
    /// The removal of every device of this user in the group is proposed
    /// for `epoch`; this device is out once another member's device commits
    /// it (this client proposes again if the epoch passes first).
    Proposed { epoch: u64, devices: Vec<ClientId> },
    /// No device of another user was in the group to commit a removal:
    /// this device removed its user's other devices itself (if any) and
    /// forgot the group. The DS still lists it in the group, now empty of
    /// anyone else.
    Alone,
    /// This device was removed from the group while catching up with it.
    Out,
}

impl Client {
    /// Leaves the group: proposes removing every device of this user in it
    /// and keeps proposing, epoch after epoch, until another member commits
    /// it. A refused proposal is an error (and this client is not leaving);
    /// one without an answer is proposed again at the next sync.
    pub async fn leave(&mut self, group_id: &[u8]) -> ClientResult<Leave> {
        if !self.groups.contains_key(group_id) {
            return Err(ClientError::UnknownGroup);
        }
        // Recorded before anything leaves: a stop from here on keeps leaving.
        self.db.set_leaving(group_id, None)?;
        self.leave_once(group_id).await
    }

    /// Proposes leaving again in each group this client is leaving whose
    /// epoch moved on since it last proposed (the proposal was dropped by a
    /// commit that did not carry it).
    pub(super) async fn keep_leaving(&mut self) -> ClientResult<()> {
        for (group_id, proposed_in) in self.db.leaving()? {
            let Some(group) = self.groups.get(&group_id) else {
                self.db.forget_leaving(&group_id)?;
                continue;
            };
            if proposed_in == Some(group.epoch().as_u64()) {
                continue;
            }
            tracing::debug!(client = %self.id, ?proposed_in, "still leaving a group in a new epoch; proposing again");
            self.leave_once(&group_id).await?;
        }
        Ok(())
    }

    /// Proposes leaving on the group's current epoch and records the
    /// outcome: the epoch proposed in, or nothing left to leave, or (after
    /// a refusal) no longer leaving. Without an answer from the DS the
    /// record stays as it was, so the next sync proposes again.
    async fn leave_once(&mut self, group_id: &[u8]) -> ClientResult<Leave> {
        let outcome = self.propose_leaving(group_id).await;
        match &outcome {
            Ok(Leave::Proposed { epoch, .. }) => self.db.set_leaving(group_id, Some(*epoch))?,
            Ok(Leave::Alone | Leave::Out) => self.db.forget_leaving(group_id)?,
            Err(error) if !error.is_in_doubt() => self.db.forget_leaving(group_id)?,
            Err(_) => {}
        }
        outcome
    }

    /// Catches up with the group and proposes removing each of this user's
    /// leaves in its current epoch; a race lost to a commit starts over on
    /// the new epoch.
    async fn propose_leaving(&mut self, group_id: &[u8]) -> ClientResult<Leave> {
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            self.catch_up_group(group_id).await?;
            self.settle_commit_in_doubt(group_id).await?;
            let Some(group) = self.groups.get_mut(group_id) else {
                return Ok(Leave::Out);
            };
            let user = self.id.user().to_owned();
            let members: Vec<(LeafNodeIndex, ClientId)> = group
                .members()
                .filter_map(|m| client_of(&m.credential).ok().map(|c| (m.index, c)))
                .collect();
            if members.iter().all(|(_, client)| client.user() == user) {
                return self.leave_alone(group_id, &members).await;
            }
            let epoch = group.epoch().as_u64();
            // Its other devices first, its own leaf last (the proposal
            // `MlsGroup::leave_group` makes, but with its reference, to
            // withdraw it if the DS refuses).
            let own = group.own_leaf_index();
            let mut ours: Vec<&(LeafNodeIndex, ClientId)> = members
                .iter()
                .filter(|(_, client)| client.user() == user)
                .collect();
            ours.sort_by_key(|(leaf, _)| *leaf == own);
            let mut proposals = Vec::with_capacity(ours.len());
            for (leaf, _) in &ours {
                let (message, reference) = group
                    .propose_remove_member(&self.provider, &self.signer, *leaf)
                    .map_err(mls)?;
                proposals.push((to_bytes(message)?, reference));
            }
            let devices = ours.into_iter().map(|(_, client)| client.clone()).collect();
            let mut accepted = 0;
            let refusal = loop {
                let Some((proposal, _)) = proposals.get(accepted) else {
                    break None;
                };
                match self.submit_proposal(group_id, proposal).await {
                    Ok(seq) => {
                        // Queued when made: its entry in the log is ours.
                        self.db.mark_own(group_id, seq)?;
                        accepted += 1;
                    }
                    Err(status) => break Some(status),
                }
            };
            match refusal {
                None => return Ok(Leave::Proposed { epoch, devices }),
                // Catching up with the commit that took the epoch drops
                // these proposals with it.
                Some(status) if wrong_epoch(&status).is_some() => {
                    tracing::debug!(client = %self.id, "the epoch moved before the proposal to leave arrived; proposing again");
                }
                Some(status) => {
                    let error = ClientError::from(status);
                    // A refused proposal is withdrawn here too, or every
                    // later commit of this client would carry it; one the
                    // DS may hold (no answer) stays, as others may commit it.
                    if !error.is_in_doubt()
                        && let Some(group) = self.groups.get_mut(group_id)
                    {
                        for (_, reference) in &proposals[accepted..] {
                            group
                                .remove_pending_proposal(self.provider.storage(), reference)
                                .map_err(mls)?;
                        }
                    }
                    return Err(error);
                }
            }
        }
        Err(ClientError::TooManyRetries(MAX_COMMIT_ATTEMPTS))
    }

    /// Leaves a group no other user is in: nobody could commit a proposal,
    /// so this device removes its user's other devices by its own commit
    /// and forgets the group.
    async fn leave_alone(
        &mut self,
        group_id: &[u8],
        members: &[(LeafNodeIndex, ClientId)],
    ) -> ClientResult<Leave> {
        let others: Vec<ClientId> = members
            .iter()
            .filter(|(_, client)| client != &self.id)
            .map(|(_, client)| client.clone())
            .collect();
        if !others.is_empty() {
            // Earlier proposals to leave (made while others were in the
            // group) would have this commit remove its committer.
            if let Some(group) = self.groups.get_mut(group_id) {
                group
                    .clear_pending_proposals(self.provider.storage())
                    .map_err(mls)?;
            }
            self.commit(group_id, Change::RemoveClients(others)).await?;
        }
        self.forget_group(group_id)?;
        Ok(Leave::Alone)
    }

    /// Submits one proposal; returns its seq in the group's log.
    async fn submit_proposal(
        &mut self,
        group_id: &[u8],
        proposal: &[u8],
    ) -> Result<u64, tonic::Status> {
        let request = self.api.request(v1::SubmitProposalRequest {
            group_id: group_id.to_vec().into(),
            proposal: proposal.to_vec().into(),
        });
        let answer = self.api.groups().submit_proposal(request).await?;
        Ok(answer.into_inner().seq)
    }
}
