//! The in-memory store's data: users, clients, their inboxes and
//! memberships, device links, and groups with their logs, all behind the
//! one mutex of [`super::MemoryStore`].

use std::collections::{BTreeMap, HashMap};
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
    pub(super) key_packages: BTreeMap<Vec<u8>, Bytes>,
    pub(super) last_resort: Option<KeyPackageRecord>,
    /// Told its pool is low since its last publish.
    pub(super) low_pool_notified: bool,
    pub(super) inbox: Vec<InboxEntry>,
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
            inbox: Vec::new(),
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
    pub(super) log: Vec<GroupEntry>,
    /// Idempotency and content keys of the log entries, to their seq (the
    /// keys are hashes with distinct domain labels, so they never collide).
    pub(super) dedup: HashMap<DedupKey, u64>,
    pub(super) members: std::collections::BTreeSet<ClientId>,
}

impl GroupState {
    pub(super) fn duplicate(&self, key: &DedupKey) -> Option<GroupEntry> {
        self.dedup
            .get(key)
            .map(|&seq| self.log[(seq - 1) as usize].clone())
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
            seq: self.log.len() as u64 + 1,
            epoch,
            kind,
            message,
        };
        self.dedup.insert(dedup_key, entry.seq);
        self.log.push(entry.clone());
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
            seq: state.inbox.len() as u64 + 1,
            item,
        };
        state.inbox.push(entry.clone());
        Ok(entry)
    }
}
