//! The in-memory store's data: users, clients, their inboxes and
//! memberships, device links, and groups with their logs, all behind the
//! one mutex of [`super::MemoryStore`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::SystemTime;

use bytes::Bytes;

use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId, InboxEntry, InboxItem};
use crate::store::{DedupKey, KeyPackageRecord, Membership, StoreError, StoreResult};

#[derive(Default)]
pub(super) struct State {
    /// Each user's identity key. Every client here registered with a
    /// certificate, so every client's user is here.
    pub(super) users: HashMap<String, Vec<u8>>,
    pub(super) clients: BTreeMap<ClientId, ClientState>,
    pub(super) links: HashMap<Vec<u8>, LinkState>,
    pub(super) challenges: HashMap<(ClientId, Vec<u8>), SystemTime>,
    pub(super) sessions: HashMap<DedupKey, (ClientId, SystemTime)>,
    pub(super) groups: HashMap<GroupId, GroupState>,
}

pub(super) struct ClientState {
    pub(super) signature_key: Vec<u8>,
    pub(super) certificate: Option<Vec<u8>>,
    /// Deprovisioned: a tombstone that is never registered or authenticated again.
    pub(super) removed: bool,
    /// The revocation its user's identity key signed, if one was given.
    pub(super) revocation: Option<Vec<u8>>,
    /// Each key package's bytes and the end of its lifetime, by its ref.
    pub(super) key_packages: BTreeMap<Vec<u8>, (Bytes, SystemTime)>,
    pub(super) last_resort: Option<KeyPackageRecord>,
    /// Told its pool is low since its last publish.
    pub(super) low_pool_notified: bool,
    /// The inbox entries not pruned, in seq order, each with when it was
    /// pushed.
    pub(super) inbox: VecDeque<(InboxEntry, SystemTime)>,
    /// The seq the next inbox entry gets.
    pub(super) inbox_next: u64,
    pub(super) inbox_acked: u64,
    pub(super) memberships: BTreeMap<GroupId, Membership>,
}

/// A pending device link: the new device's offer and, once posted, the
/// existing device's answer.
pub(super) struct LinkState {
    pub(super) user: String,
    pub(super) sealed_offer: Bytes,
    pub(super) sealed_answer: Option<Bytes>,
    pub(super) expires_at: SystemTime,
}

impl ClientState {
    pub(super) fn new(signature_key: Vec<u8>, certificate: Option<Vec<u8>>) -> Self {
        Self {
            signature_key,
            certificate,
            removed: false,
            revocation: None,
            key_packages: BTreeMap::new(),
            last_resort: None,
            low_pool_notified: false,
            inbox: VecDeque::new(),
            inbox_next: 1,
            inbox_acked: 0,
            memberships: BTreeMap::new(),
        }
    }

    /// Forgets its key packages (a removed or re-keyed client's).
    pub(super) fn clear_key_packages(&mut self) {
        self.key_packages.clear();
        self.last_resort = None;
        self.low_pool_notified = false;
    }
}

pub(super) struct GroupState {
    pub(super) epoch: u64,
    pub(super) state: Vec<u8>,
    pub(super) state_version: u64,
    pub(super) group_info: Bytes,
    /// The entries after `pruned`, in seq order, each with when it was
    /// appended.
    pub(super) log: VecDeque<(GroupEntry, SystemTime)>,
    /// The seq the log was pruned up to.
    pub(super) pruned: u64,
    /// Idempotency and content keys of the log entries, to their seq (the
    /// keys are hashes with distinct domain labels, so they never collide).
    pub(super) dedup: HashMap<DedupKey, u64>,
    pub(super) members: std::collections::BTreeSet<ClientId>,
}

impl GroupState {
    pub(super) fn duplicate(&self, key: &DedupKey) -> Option<GroupEntry> {
        self.dedup
            .get(key)
            .and_then(|&seq| self.entry(seq))
            .cloned()
    }

    /// The entry `seq`, unless it was pruned or is not there yet.
    pub(super) fn entry(&self, seq: u64) -> Option<&GroupEntry> {
        let index = seq.checked_sub(self.pruned + 1)?;
        self.log.get(usize::try_from(index).ok()?).map(|(e, _)| e)
    }

    /// The seq of the last entry appended (0 before the first).
    pub(super) fn last_seq(&self) -> u64 {
        self.pruned + self.log.len() as u64
    }

    /// Prunes the log up to `seq` (the entries and their keys).
    pub(super) fn prune_to(&mut self, seq: u64) -> u64 {
        let mut deleted = 0;
        while self.pruned < seq && self.log.pop_front().is_some() {
            self.pruned += 1;
            deleted += 1;
        }
        if deleted > 0 {
            let pruned = self.pruned;
            self.dedup.retain(|_, seq| *seq > pruned);
        }
        deleted
    }

    pub(super) fn push(
        &mut self,
        group_id: &GroupId,
        epoch: u64,
        kind: EntryKind,
        dedup_key: DedupKey,
        message: Bytes,
    ) -> GroupEntry {
        let entry = GroupEntry {
            group_id: group_id.clone(),
            seq: self.last_seq() + 1,
            epoch,
            kind,
            message,
        };
        self.dedup.insert(dedup_key, entry.seq);
        self.log.push_back((entry.clone(), SystemTime::now()));
        entry
    }
}

impl State {
    /// Ends every session and challenge of the client.
    pub(super) fn sign_out(&mut self, id: &ClientId) {
        self.sessions.retain(|_, (owner, _)| owner != id);
        self.challenges.retain(|(owner, _), _| owner != id);
    }

    pub(super) fn client_mut(&mut self, id: &ClientId) -> StoreResult<&mut ClientState> {
        self.clients
            .get_mut(id)
            .ok_or(StoreError::NotFound("client"))
    }

    pub(super) fn push_inbox(
        &mut self,
        client: &ClientId,
        item: InboxItem,
    ) -> StoreResult<InboxEntry> {
        let state = self.client_mut(client)?;
        let entry = InboxEntry {
            seq: state.inbox_next,
            item,
        };
        state.inbox_next += 1;
        state.inbox.push_back((entry.clone(), SystemTime::now()));
        Ok(entry)
    }
}
