//! The in-memory [`Store`]: the zero-configuration demo and the in-process
//! simulator run on it. One mutex over the whole state makes every method
//! atomic, which is what the PostgreSQL transactions guarantee per group.
//! Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    AppendOutcome, ClaimedKeyPackage, ClientRecord, CommitAccepted, CommitOutcome, CommitRecord,
    DedupKey, KeyPackageCount, KeyPackageRecord, LinkAnswer, LinkAnswered, LinkOffer, LinkPosted,
    Membership, NewDevice, NewGroup, NewMessage, PruneReport, RegisteredClient, Registration,
    SessionRecord, Store, StoreError, StoreResult, StoredGroupState, UserDevices,
};
use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId, InboxEntry, InboxItem, StreamRef};

mod devices;
mod state;

use state::{GroupState, State};

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent because every method mutates last.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn register_client(&self, device: &NewDevice) -> StoreResult<Registration> {
        Ok(self.lock().register(device))
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>> {
        Ok(self
            .registered_client(id)
            .await?
            .filter(|c| !c.removed)
            .map(|c| c.record))
    }

    async fn registered_client(&self, id: &ClientId) -> StoreResult<Option<RegisteredClient>> {
        Ok(self.lock().clients.get(id).map(|c| RegisteredClient {
            record: ClientRecord {
                id: id.clone(),
                signature_key: c.signature_key.clone(),
                certificate: c.certificate.clone(),
            },
            removed: c.removed,
        }))
    }

    async fn identity_key(&self, user: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().users.get(user).cloned())
    }

    async fn user_devices(&self, user: &str) -> StoreResult<UserDevices> {
        Ok(self.lock().user_devices(user))
    }

    async fn remove_client(&self, id: &ClientId, revocation: Option<&[u8]>) -> StoreResult<bool> {
        self.lock().remove(id, revocation)
    }

    async fn revoke_session(&self, token_hash: &DedupKey) -> StoreResult<()> {
        self.lock().sessions.remove(token_hash);
        Ok(())
    }

    async fn devices(&self, user: &str) -> StoreResult<Vec<ClientId>> {
        Ok(self
            .lock()
            .clients
            .iter()
            .filter(|(id, c)| id.user() == user && !c.removed)
            .map(|(id, _)| id.clone())
            .collect())
    }

    async fn put_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        expires_at: SystemTime,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let now = SystemTime::now();
        state.challenges.retain(|_, expires| *expires > now);
        state
            .challenges
            .insert((client.clone(), challenge.to_vec()), expires_at);
        Ok(())
    }

    async fn take_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        now: SystemTime,
    ) -> StoreResult<bool> {
        let removed = self
            .lock()
            .challenges
            .remove(&(client.clone(), challenge.to_vec()));
        Ok(removed.is_some_and(|expires| expires > now))
    }

    async fn put_session(
        &self,
        token_hash: &DedupKey,
        client: &ClientId,
        expires_at: SystemTime,
    ) -> StoreResult<()> {
        let mut state = self.lock();
        let now = SystemTime::now();
        state.sessions.retain(|_, (_, expires)| *expires > now);
        state
            .sessions
            .insert(*token_hash, (client.clone(), expires_at));
        Ok(())
    }

    async fn session(
        &self,
        token_hash: &DedupKey,
        now: SystemTime,
    ) -> StoreResult<Option<SessionRecord>> {
        Ok(self
            .lock()
            .sessions
            .get(token_hash)
            .filter(|(_, expires)| *expires > now)
            .map(|(client, expires_at)| SessionRecord {
                client: client.clone(),
                expires_at: *expires_at,
            }))
    }

    async fn purge_expired(&self, now: SystemTime) -> StoreResult<u64> {
        let mut state = self.lock();
        let count = |s: &State| s.challenges.len() + s.sessions.len() + s.links.len();
        let before = count(&state);
        state.challenges.retain(|_, expires| *expires > now);
        state.sessions.retain(|_, (_, expires)| *expires > now);
        state.links.retain(|_, link| link.expires_at > now);
        Ok((before - count(&state)) as u64)
    }

    async fn prune(&self, now: SystemTime, retention: Duration) -> StoreResult<PruneReport> {
        let mut state = self.lock();
        let state = &mut *state;
        let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
        let mut report = PruneReport::default();
        // The lowest cursor of each group's readers: current members, and
        // removed ones that have not read up to their removal.
        let mut acked: HashMap<&GroupId, u64> = HashMap::new();
        for client in state.clients.values() {
            for m in client.memberships.values() {
                if m.left_seq.is_none_or(|left| m.acked_seq < left) {
                    let low = acked.entry(&m.group_id).or_insert(u64::MAX);
                    *low = (*low).min(m.acked_seq);
                }
            }
        }
        let mut horizons = HashMap::new();
        for (group_id, group) in state.groups.iter_mut() {
            let expired = group
                .log
                .iter()
                .take_while(|(_, at)| *at < cutoff)
                .last()
                .map_or(0, |(entry, _)| entry.seq);
            let acked = acked
                .get(group_id)
                .copied()
                .unwrap_or(u64::MAX)
                .min(group.last_seq());
            report.log_entries += group.prune_to(acked.max(expired));
            horizons.insert(group_id.clone(), group.pruned);
        }
        for client in state.clients.values_mut() {
            let before = client.memberships.len();
            client.memberships.retain(|group_id, m| {
                let pruned = horizons.get(group_id).copied().unwrap_or(0);
                !m.left_seq
                    .is_some_and(|left| left <= pruned && m.acked_seq >= left)
            });
            report.memberships += (before - client.memberships.len()) as u64;
            let acked = client.inbox_acked;
            while client
                .inbox
                .front()
                .is_some_and(|(entry, at)| entry.seq <= acked || *at < cutoff)
            {
                client.inbox.pop_front();
                report.inbox_entries += 1;
            }
            let before = client.key_packages.len();
            client
                .key_packages
                .retain(|_, (_, not_after)| *not_after >= now);
            report.key_packages += (before - client.key_packages.len()) as u64;
            if client
                .last_resort
                .as_ref()
                .is_some_and(|kp| kp.not_after < now)
            {
                client.last_resort = None;
                report.key_packages += 1;
            }
        }
        Ok(report)
    }

    async fn post_link_offer(
        &self,
        offer: &LinkOffer,
        max_pending: usize,
        now: SystemTime,
    ) -> StoreResult<LinkPosted> {
        Ok(self.lock().post_link_offer(offer, max_pending, now))
    }

    async fn link_offer(
        &self,
        link_id: &[u8],
        now: SystemTime,
    ) -> StoreResult<Option<(String, Bytes)>> {
        Ok(self.lock().link_offer(link_id, now))
    }

    async fn post_link_answer(
        &self,
        link_id: &[u8],
        user: &str,
        sealed_answer: &Bytes,
        now: SystemTime,
    ) -> StoreResult<LinkAnswered> {
        Ok(self
            .lock()
            .post_link_answer(link_id, user, sealed_answer, now))
    }

    async fn take_link_answer(&self, link_id: &[u8], now: SystemTime) -> StoreResult<LinkAnswer> {
        Ok(self.lock().take_link_answer(link_id, now))
    }

    async fn publish_key_packages(
        &self,
        client: &ClientId,
        key_packages: Vec<KeyPackageRecord>,
        last_resort: Option<KeyPackageRecord>,
    ) -> StoreResult<u32> {
        let mut state = self.lock();
        let client = state.client_mut(client)?;
        for kp in key_packages {
            client
                .key_packages
                .entry(kp.key_package_ref)
                .or_insert((kp.data, kp.not_after));
        }
        if last_resort.is_some() {
            client.last_resort = last_resort;
        }
        client.low_pool_notified = false;
        Ok(client.key_packages.len() as u32)
    }

    async fn take_low_pool_notice(&self, client: &ClientId) -> StoreResult<bool> {
        let mut state = self.lock();
        let client = state.client_mut(client)?;
        Ok(!std::mem::replace(&mut client.low_pool_notified, true))
    }

    async fn claim_key_package(&self, client: &ClientId) -> StoreResult<Option<ClaimedKeyPackage>> {
        let mut state = self.lock();
        let Some(state) = state.clients.get_mut(client) else {
            return Ok(None);
        };
        let claimed = match state.key_packages.pop_first() {
            Some((_, (data, _))) => Some((data, false)),
            None => state.last_resort.as_ref().map(|kp| (kp.data.clone(), true)),
        };
        Ok(claimed.map(|(data, last_resort)| ClaimedKeyPackage {
            client: client.clone(),
            data,
            last_resort,
            remaining: state.key_packages.len() as u32,
        }))
    }

    async fn count_key_packages(&self, client: &ClientId) -> StoreResult<KeyPackageCount> {
        Ok(self
            .lock()
            .clients
            .get(client)
            .map(|c| KeyPackageCount {
                available: c.key_packages.len() as u32,
                has_last_resort: c.last_resort.is_some(),
            })
            .unwrap_or_default())
    }

    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        let mut state = self.lock();
        if state.groups.contains_key(&group.group_id) {
            return Err(StoreError::AlreadyExists("group"));
        }
        state.client_mut(&group.creator)?.memberships.insert(
            group.group_id.clone(),
            Membership {
                group_id: group.group_id.clone(),
                joined_seq: 0,
                left_seq: None,
                acked_seq: 0,
            },
        );
        state.groups.insert(
            group.group_id,
            GroupState {
                epoch: group.epoch,
                state: group.state,
                state_version: 0,
                group_info: group.group_info,
                log: Default::default(),
                pruned: 0,
                dedup: HashMap::new(),
                members: [group.creator].into(),
            },
        );
        Ok(())
    }

    async fn group_state(&self, group_id: &GroupId) -> StoreResult<Option<StoredGroupState>> {
        Ok(self.lock().groups.get(group_id).map(|g| StoredGroupState {
            epoch: g.epoch,
            state: g.state.clone(),
            version: g.state_version,
        }))
    }

    async fn group_state_version(&self, group_id: &GroupId) -> StoreResult<Option<u64>> {
        Ok(self.lock().groups.get(group_id).map(|g| g.state_version))
    }

    async fn group_info(&self, group_id: &GroupId) -> StoreResult<Option<(u64, Bytes)>> {
        Ok(self
            .lock()
            .groups
            .get(group_id)
            .map(|g| (g.epoch, g.group_info.clone())))
    }

    async fn find_entry(
        &self,
        group_id: &GroupId,
        dedup_key: &DedupKey,
    ) -> StoreResult<Option<GroupEntry>> {
        Ok(self
            .lock()
            .groups
            .get(group_id)
            .and_then(|g| g.duplicate(dedup_key)))
    }

    async fn accept_commit(&self, commit: CommitRecord) -> StoreResult<CommitOutcome> {
        let mut state = self.lock();
        let state = &mut *state;
        let group = state
            .groups
            .get_mut(&commit.group_id)
            .ok_or(StoreError::NotFound("group"))?;
        if let Some(entry) = group.duplicate(&commit.dedup_key) {
            return Ok(CommitOutcome::Duplicate(entry));
        }
        if group.epoch != commit.from_epoch {
            return Err(StoreError::WrongEpoch {
                current: group.epoch,
            });
        }
        if group.state_version != commit.state_version {
            return Err(StoreError::StateChanged);
        }
        // Check every client exists before mutating anything.
        for client in commit.added.iter().chain(&commit.removed) {
            if !state.clients.contains_key(client) {
                return Err(StoreError::NotFound("client"));
            }
        }
        let entry = group.push(
            &commit.group_id,
            commit.from_epoch,
            EntryKind::Commit,
            commit.dedup_key,
            commit.commit,
        );
        group.epoch = commit.from_epoch + 1;
        group.state = commit.new_state;
        group.state_version += 1;
        group.group_info = commit.group_info;
        for client in &commit.removed {
            group.members.remove(client);
        }
        for client in &commit.added {
            group.members.insert(client.clone());
        }
        for client in &commit.removed {
            if let Some(m) = state
                .clients
                .get_mut(client)
                .and_then(|c| c.memberships.get_mut(&commit.group_id))
            {
                m.left_seq = Some(entry.seq);
            }
        }
        let mut welcomes = Vec::new();
        for client in &commit.added {
            state.client_mut(client)?.memberships.insert(
                commit.group_id.clone(),
                Membership {
                    group_id: commit.group_id.clone(),
                    joined_seq: entry.seq,
                    left_seq: None,
                    acked_seq: entry.seq,
                },
            );
            if let Some(welcome) = &commit.welcome {
                let inbox = state.push_inbox(
                    client,
                    InboxItem::Welcome {
                        group_id: commit.group_id.clone(),
                        commit_seq: entry.seq,
                        welcome: welcome.clone(),
                        ratchet_tree: commit.ratchet_tree.clone(),
                    },
                )?;
                welcomes.push((client.clone(), inbox));
            }
        }
        Ok(CommitOutcome::Accepted(CommitAccepted { entry, welcomes }))
    }

    async fn append(&self, message: NewMessage) -> StoreResult<AppendOutcome> {
        let mut state = self.lock();
        let group = state
            .groups
            .get_mut(&message.group_id)
            .ok_or(StoreError::NotFound("group"))?;
        if let Some(sender) = &message.sender
            && !group.members.contains(sender)
        {
            return Err(StoreError::NotMember);
        }
        // A retry finds its entry whatever the epoch is now.
        if let Some(entry) = group.duplicate(&message.dedup_key) {
            return Ok(AppendOutcome::Duplicate(entry));
        }
        let current = group.epoch;
        if !message.fits_epoch(current) {
            return Err(StoreError::WrongEpoch { current });
        }
        // A replay of the same bytes under another key, within the window.
        if let Some(entry) = group.duplicate(&message.content_key) {
            return Ok(AppendOutcome::Duplicate(entry));
        }
        if let Some((new_state, version)) = message.new_state {
            if version != group.state_version {
                return Err(StoreError::StateChanged);
            }
            group.state = new_state;
            group.state_version += 1;
        }
        group
            .dedup
            .insert(message.content_key, group.last_seq() + 1);
        Ok(AppendOutcome::Appended(group.push(
            &message.group_id,
            message.epoch,
            message.kind,
            message.dedup_key,
            message.message,
        )))
    }

    async fn user_in_group(&self, group_id: &GroupId, user: &str) -> StoreResult<bool> {
        Ok(self
            .lock()
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.iter().any(|member| member.user() == user)))
    }

    async fn membership(
        &self,
        client: &ClientId,
        group_id: &GroupId,
    ) -> StoreResult<Option<Membership>> {
        Ok(self
            .lock()
            .clients
            .get(client)
            .and_then(|c| c.memberships.get(group_id).cloned()))
    }

    async fn memberships(&self, client: &ClientId) -> StoreResult<Vec<Membership>> {
        Ok(self
            .lock()
            .clients
            .get(client)
            .map(|c| c.memberships.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn read_group(
        &self,
        client: &ClientId,
        group_id: &GroupId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<GroupEntry>> {
        let state = self.lock();
        let membership = state
            .clients
            .get(client)
            .and_then(|c| c.memberships.get(group_id))
            .ok_or(StoreError::NotMember)?;
        let group = state
            .groups
            .get(group_id)
            .ok_or(StoreError::NotFound("group"))?;
        let after = after_seq.max(membership.joined_seq);
        let last = membership
            .left_seq
            .map_or(group.last_seq(), |left| left.min(group.last_seq()));
        if after < group.pruned && after < last {
            return Err(StoreError::Pruned {
                group_id: group_id.clone(),
                first_seq: group.pruned + 1,
            });
        }
        Ok((after + 1..=last)
            .take(limit as usize)
            .filter_map(|seq| group.entry(seq).cloned())
            .collect())
    }

    async fn read_inbox(
        &self,
        client: &ClientId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        let state = self.lock();
        let client = state
            .clients
            .get(client)
            .ok_or(StoreError::NotFound("client"))?;
        Ok(client
            .inbox
            .iter()
            .map(|(entry, _)| entry)
            .filter(|entry| entry.seq > after_seq)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn push_inbox(&self, client: &ClientId, item: InboxItem) -> StoreResult<InboxEntry> {
        self.lock().push_inbox(client, item)
    }

    async fn ack(&self, client: &ClientId, stream: &StreamRef, seq: u64) -> StoreResult<()> {
        let mut state = self.lock();
        let last = match stream {
            StreamRef::Inbox => state.client_mut(client)?.inbox_next - 1,
            StreamRef::Group(group_id) => state
                .groups
                .get(group_id)
                .ok_or(StoreError::NotMember)?
                .last_seq(),
        };
        let client = state.client_mut(client)?;
        let cursor = match stream {
            StreamRef::Inbox => &mut client.inbox_acked,
            StreamRef::Group(group_id) => {
                &mut client
                    .memberships
                    .get_mut(group_id)
                    .ok_or(StoreError::NotMember)?
                    .acked_seq
            }
        };
        if seq > last {
            return Err(StoreError::BeyondEnd { last });
        }
        *cursor = (*cursor).max(seq);
        Ok(())
    }

    async fn inbox_cursor(&self, client: &ClientId) -> StoreResult<u64> {
        Ok(self.lock().clients.get(client).map_or(0, |c| c.inbox_acked))
    }
}

#[cfg(test)]
mod tests {
    crate::store::conformance::conformance_tests!(super::MemoryStore::new());
}
