//! Applying what the DS delivers: each entry of a group's log, in order,
//! through this client's `MlsGroup` (and so through openmls's checks), and
//! each inbox item (a Welcome, a low key package pool).

use confide_core::ClientId;
use confide_core::certificate::certified_client;
use confide_core::content::{Body, Content};
use confide_core::profile::client_of;
use confide_proto::v1;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use super::Client;
use super::commit::removals_to_commit;
use super::resync::{Stuck, UNDECRYPTABLE_RUN, stuck_by};
use crate::error::{ClientResult, mls};
use crate::events::{Event, GroupId};
use crate::roster;
use crate::store::{Provider, StateDb, Stream};
use crate::verify::Verifier;

impl Client {
    /// Applies the next entry of a group log: one already processed (a
    /// duplicate, or a replay under its old number) is ignored, and one past
    /// the next number is applied after reporting the entries skipped
    /// ([`Event::Gap`]). Returns whether the group is still tracked (false
    /// once this client was removed).
    pub(super) fn apply_group_entry(&mut self, entry: v1::GroupEntry) -> ClientResult<bool> {
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
        let epoch = group.epoch().as_u64();
        // A commit left in doubt is settled by the log: the entry that is
        // ours merges it (openmls recognises its pending commit), another
        // commit for that epoch replaces it (`process_entry`); either moves
        // the group on.
        let trust = Trust {
            verifier: &self.verifier,
            db: &self.db,
        };
        let processed = process_entry(group, &self.provider, trust, &entry, joined_epoch);
        if let Some(commit) = &in_doubt
            && group.epoch().as_u64() > commit.epoch
        {
            let ours = entry.message.as_ref() == commit.commit.as_slice();
            tracing::debug!(client = %self.id, seq = entry.seq, ours, "the log settled a commit in doubt");
            self.db.forget_commit_in_doubt(&group_id)?;
        }
        let mut stuck = None;
        match processed {
            Ok(events) => {
                self.undecryptable_run.remove(&group_id);
                if removals_to_commit(group) {
                    self.pending_removals.insert(group_id.clone());
                }
                for event in events {
                    removed |= matches!(event, Event::Removed { .. });
                    let event = match event {
                        Event::Removed { group, by, .. } => {
                            let left = self.db.leaving()?.iter().any(|(g, _)| *g == group);
                            Event::Removed { group, by, left }
                        }
                        event => event,
                    };
                    if self.is_known_profile(&event)? {
                        // A member re-announcing the name (for members it
                        // added): nothing changed for this one.
                        continue;
                    }
                    self.emit_entry(event, entry.seq)?;
                }
            }
            Err(reason) => {
                tracing::warn!(client = %self.id, group = %hex::encode(&group_id[..group_id.len().min(4)]), seq = entry.seq, %reason, "could not process an entry");
                stuck = match stuck_by(&entry.message, epoch) {
                    Some(Stuck::Commit) => Some(format!(
                        "could not process the commit #{}: {reason}",
                        entry.seq
                    )),
                    Some(Stuck::Message) => {
                        let run = self.undecryptable_run.entry(group_id.clone()).or_default();
                        *run += 1;
                        (*run >= UNDECRYPTABLE_RUN)
                            .then(|| format!("{run} messages in a row could not be decrypted"))
                    }
                    None => None,
                };
                self.emit_entry(
                    Event::Undecryptable {
                        group: group_id.clone(),
                        seq: entry.seq,
                        reason,
                    },
                    entry.seq,
                )?;
            }
        }
        if let Some(reason) = stuck {
            self.undecryptable_run.remove(&group_id);
            self.want_resync(&group_id, epoch, reason)?;
        }
        if removed {
            self.forget_group(&group_id)?;
            return Ok(false);
        }
        self.db.set_processed(&stream, entry.seq)?;
        Ok(true)
    }

    /// Forgets a group this client was removed from entirely (its MLS
    /// state, its place in the log, a commit in doubt, that it was leaving),
    /// so a later Welcome can re-add it.
    pub(super) fn forget_group(&mut self, group_id: &[u8]) -> ClientResult<()> {
        if let Some(mut group) = self.groups.remove(group_id) {
            group.delete(self.provider.storage()).map_err(mls)?;
        }
        self.db.forget_stream(&Stream::Group(group_id.to_vec()))?;
        self.db.forget_leaving(group_id)?;
        self.db.forget_commit_in_doubt(group_id)
    }

    pub(super) async fn apply_inbox_entry(&mut self, entry: v1::InboxEntry) -> ClientResult<()> {
        if entry.seq <= self.db.processed(&Stream::Inbox)? {
            return Ok(());
        }
        match entry.item {
            Some(v1::inbox_entry::Item::Welcome(item)) => match self.join(&item) {
                Ok(events) => {
                    for event in events {
                        self.emit(event)?;
                    }
                }
                Err(error) => {
                    tracing::warn!(client = %self.id, %error, "could not join from a Welcome");
                    self.emit(Event::Undecryptable {
                        group: item.group_id.to_vec(),
                        seq: item.commit_seq,
                        reason: error.to_string(),
                    })?;
                }
            },
            Some(v1::inbox_entry::Item::KeyPackagesLow(_)) => self.replenish_key_packages().await?,
            None => {}
        }
        self.db.set_processed(&Stream::Inbox, entry.seq)?;
        Ok(())
    }
}

/// The event an application message is: its MIMI content read (a text, a
/// name for the group, or a type this version cannot show), or, for a
/// payload that is not MIMI content (a client of another make), the bytes
/// as they came.
pub(super) fn application_event(
    group: GroupId,
    seq: u64,
    sender: ClientId,
    payload: Vec<u8>,
) -> Event {
    let content = match Content::from_bytes(&payload) {
        Ok(content) => content,
        Err(error) => {
            tracing::debug!(seq, %error, "an application message that is not MIMI content");
            return Event::Message {
                group,
                seq,
                sender,
                body: payload,
                sent_at_ms: None,
            };
        }
    };
    let sent_at_ms = content.sent_at_ms;
    match content.body {
        Body::Text(text) => Event::Message {
            group,
            seq,
            sender,
            body: text.into_bytes(),
            sent_at_ms,
        },
        Body::Bytes(body) => Event::Message {
            group,
            seq,
            sender,
            body,
            sent_at_ms,
        },
        Body::GroupProfile(profile) => Event::GroupRenamed {
            group,
            seq,
            by: sender,
            name: profile.name,
            topic: profile.topic,
        },
        Body::Other { content_type, .. } => Event::Unsupported {
            group,
            seq,
            sender,
            content_type,
        },
    }
}

/// What judges the leaves a commit brings: the verifier and the pinned keys.
#[derive(Clone, Copy)]
struct Trust<'a> {
    verifier: &'a Verifier,
    db: &'a StateDb,
}

/// Processes one MLS message of a group log into events; `joined_epoch`
/// is the epoch this client joined at.
fn process_entry(
    group: &mut MlsGroup,
    provider: &Provider,
    trust: Trust<'_>,
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
        return store_external_proposal(group, provider, processed.into_content());
    }
    let external_commit = matches!(processed.sender(), Sender::NewMemberCommit);
    let sender = client_of(processed.credential()).map_err(|e| e.to_string())?;
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(message) => Ok(vec![application_event(
            group_id,
            entry.seq,
            sender,
            message.into_bytes(),
        )]),
        ProcessedMessageContent::ProposalMessage(proposal) => {
            group
                .store_pending_proposal(provider.storage(), *proposal)
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        }
        ProcessedMessageContent::StagedCommitMessage(staged) => merge_commit(
            group,
            provider,
            trust,
            *staged,
            group_id,
            sender,
            external_commit,
        ),
        ProcessedMessageContent::OwnPendingCommit => {
            group
                .merge_pending_commit(provider)
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        }
        ProcessedMessageContent::OwnPrivateMessage
        | ProcessedMessageContent::ExternalJoinProposalMessage(_) => Ok(Vec::new()),
    }
}

/// The DS as external sender: it may only propose removing a member (a
/// deprovisioned device); anything else is refused, so the DS can never get
/// anyone added.
fn store_external_proposal(
    group: &mut MlsGroup,
    provider: &Provider,
    content: ProcessedMessageContent,
) -> Result<Vec<Event>, String> {
    match content {
        ProcessedMessageContent::ProposalMessage(proposal)
            if matches!(proposal.proposal(), Proposal::Remove(_)) =>
        {
            group
                .store_pending_proposal(provider.storage(), *proposal)
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        }
        _ => Err("the delivery service may only propose removals".into()),
    }
}

/// Every leaf a commit puts into the tree: each Add's and each Update's,
/// and the committer's new leaf on its update path (for an external
/// commit, the joiner's).
fn new_leaves(staged: &StagedCommit) -> Vec<LeafNode> {
    staged
        .add_proposals()
        .map(|p| p.add_proposal().key_package().leaf_node().clone())
        .chain(
            staged
                .update_proposals()
                .map(|p| p.update_proposal().leaf_node().clone()),
        )
        .chain(staged.update_path_leaf_node().cloned())
        .collect()
}

/// The members a staged commit removes on a proposal by a device of their
/// own user (see `leave.rs`), as the roster before the commit has them.
pub(super) fn left_members(
    group: &MlsGroup,
    staged: &StagedCommit,
    certified: impl Fn(&LeafNode) -> bool,
) -> Vec<roster::GroupMember> {
    let leavers = leavers(group, staged);
    if leavers.is_empty() {
        // Most commits: no roster to build.
        return Vec::new();
    }
    roster::roster(group, certified)
        .into_iter()
        .filter(|member| leavers.contains(&member.client))
        .collect()
}

/// The clients a commit removes on a proposal by a device of their own
/// user: they left (see `leave.rs`) rather than were removed by the
/// committer. Read from the tree before the commit is merged.
fn leavers(group: &MlsGroup, staged: &StagedCommit) -> Vec<ClientId> {
    let client_at = |leaf: LeafNodeIndex| group.member(leaf).and_then(|c| client_of(c).ok());
    staged
        .queued_proposals()
        // A standalone proposal, committed by reference; one the committer
        // put in its commit is its own removal of the member (a revoked
        // device), even of a device of its own user.
        .filter(|queued| queued.proposal_or_ref_type() == ProposalOrRefType::Reference)
        .filter_map(|queued| {
            let (Proposal::Remove(remove), Sender::Member(proposer)) =
                (queued.proposal(), queued.sender())
            else {
                return None;
            };
            let removed = client_at(remove.removed())?;
            let proposer = client_at(*proposer)?;
            (removed.user() == proposer.user()).then_some(removed)
        })
        .collect()
}

/// Merges another member's commit and reports what it changed, and every
/// leaf it brought that is not certified by its user (a ghost).
fn merge_commit(
    group: &mut MlsGroup,
    provider: &Provider,
    trust: Trust<'_>,
    staged: StagedCommit,
    group_id: GroupId,
    sender: ClientId,
    external_commit: bool,
) -> Result<Vec<Event>, String> {
    // The DS took the commit and every other member merges it: a ghost in
    // it cannot be kept out, only reported. Checked first, so that a first
    // contact is pinned before the roster judges it.
    let mut reports = Vec::new();
    for leaf in new_leaves(&staged) {
        reports.extend(
            trust
                .verifier
                .report(trust.db, &group_id, &leaf)
                .map_err(|e| e.to_string())?,
        );
    }
    let certified = |leaf: &LeafNode| trust.verifier.certified(trust.db, leaf);
    // Membership changes are read off the roster itself, not the
    // proposals, so no way into the group (an Add, an external
    // commit) goes unreported.
    let before = roster::roster(group, certified);
    let self_removed = staged.self_removed();
    let leavers = leavers(group, &staged);
    let path_leaf = staged.update_path_leaf_node().cloned();
    // Another's commit took the epoch: a pending commit of ours for
    // it (one left in doubt) can never be accepted now.
    group
        .clear_pending_commit(provider.storage())
        .map_err(|e| e.to_string())?;
    group
        .merge_staged_commit(provider, staged)
        .map_err(|e| e.to_string())?;
    let (added, removed) = roster::diff(&before, &roster::roster(group, certified));
    let mut events = Vec::new();
    if external_commit
        && reports.is_empty()
        && let Some((member, fingerprint)) =
            rejoined(path_leaf.as_ref(), &sender, &before, &removed)
    {
        events.push(Event::MemberRejoined {
            group: group_id.clone(),
            member,
            fingerprint,
        });
        events.push(Event::EpochChanged {
            group: group_id,
            epoch: group.epoch().as_u64(),
            by: sender,
        });
        return Ok(events);
    }
    if !added.is_empty() {
        events.push(Event::MembersAdded {
            group: group_id.clone(),
            by: sender.clone(),
            members: added,
        });
    }
    events.extend(reports);
    if self_removed {
        events.push(Event::Removed {
            group: group_id,
            by: sender,
            left: false,
        });
        return Ok(events);
    }
    events.extend(departures_and_epoch(
        group_id,
        sender,
        removed,
        &leavers,
        group.epoch().as_u64(),
    ));
    Ok(events)
}

/// What a commit by `by` that moved the group to `epoch` reports after its
/// additions: the members of `removed` who left on their own user's
/// proposal (`leavers`), those `by` removed, then the new epoch.
pub(super) fn departures_and_epoch(
    group: GroupId,
    by: ClientId,
    removed: Vec<roster::GroupMember>,
    leavers: &[ClientId],
    epoch: u64,
) -> Vec<Event> {
    let (left, removed): (Vec<_>, Vec<_>) = removed
        .into_iter()
        .partition(|member| leavers.contains(&member.client));
    let mut events = Vec::new();
    if !left.is_empty() {
        events.push(Event::MembersLeft {
            group: group.clone(),
            members: left,
        });
    }
    if !removed.is_empty() {
        events.push(Event::MembersRemoved {
            group: group.clone(),
            by: by.clone(),
            members: removed,
        });
    }
    events.push(Event::EpochChanged { group, epoch, by });
    events
}

/// The member and key of an external commit that is a re-sync: its
/// committer was in the group already, removed no leaf but its own old one,
/// and its new leaf (`path_leaf`) is certified by its user's identity key.
/// An uncertified one is not a re-sync but a ghost, reported as such
/// elsewhere.
fn rejoined(
    path_leaf: Option<&LeafNode>,
    sender: &ClientId,
    before: &[roster::GroupMember],
    removed: &[roster::GroupMember],
) -> Option<(ClientId, String)> {
    let leaf = path_leaf?;
    let was_member = before.iter().any(|old| &old.client == sender);
    if !was_member || removed.iter().any(|old| &old.client != sender) {
        return None;
    }
    certified_client(leaf)
        .ok()
        .filter(|(client, _)| client == sender)?;
    Some((
        sender.clone(),
        roster::fingerprint(leaf.signature_key().as_slice()),
    ))
}
