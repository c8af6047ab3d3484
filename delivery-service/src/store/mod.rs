//! Storage behind one interface, [`Store`], with two implementations that pass
//! the same conformance suite (`conformance`, feature `testing`):
//! [`postgres::PostgresStore`] for deployments and [`memory::MemoryStore`] for
//! the zero-configuration demo and the in-process simulator.
//!
//! The store is where the ordering invariants live: every method that changes
//! a group does so atomically (one PostgreSQL transaction holding the group's
//! row lock), so sequence numbers are gap-free and commit order is total.
//! Nothing here parses MLS; callers hand in validated bytes.

/// Test support, for this crate's tests and other stores' (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod devices;
pub mod memory;
pub mod postgres;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::domain::{ClientId, GroupEntry, GroupId, InboxEntry, InboxItem, StreamRef};

pub use devices::{
    LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, NewDevice, RegisteredClient, UserDevices,
};

/// Length of idempotency keys: SHA-256 of what identifies a submission.
pub type DedupKey = [u8; 32];

/// A registered client, the signature key bound to it and its certificate
/// by its user's identity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: ClientId,
    pub signature_key: Vec<u8>,
    /// `None` for a client registered before certificates (migration V6).
    pub certificate: Option<Vec<u8>>,
}

/// A live session: the client it authenticates, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub client: ClientId,
    pub expires_at: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// A new client; for a user that had no identity key, the user too,
    /// with the certificate's.
    Created,
    /// The same client with the same key was registered before (its
    /// certificate is the one given now).
    AlreadyRegistered,
    /// The same client, certified by its user's identity key, with a new
    /// signature key (a device restored after losing its state): the new
    /// key and certificate replace the old, its sessions, challenges and key
    /// packages are gone; its memberships and inbox stay.
    Rekeyed,
    /// The client exists with a different signature key and its user has
    /// no identity key to certify the new one (a client from before
    /// certificates).
    KeyMismatch,
    /// The client was removed (deprovisioned); its id is never reused.
    Removed,
    /// The user's devices are certified by another identity key (or, from
    /// before certificates, by none): this device must be linked by one of
    /// them.
    OtherIdentity,
}

/// A validated key package, ready to be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPackageRecord {
    /// The KeyPackageRef (hash), unique per key package.
    pub key_package_ref: Vec<u8>,
    /// The TLS-serialised MlsMessage carrying the key package.
    pub data: Bytes,
    /// The end of its lifetime (checked at upload): [`Store::prune`]
    /// deletes it once passed.
    pub not_after: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedKeyPackage {
    pub client: ClientId,
    pub data: Bytes,
    pub last_resort: bool,
    /// Key packages (not counting the last-resort one) left after this claim.
    pub remaining: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyPackageCount {
    pub available: u32,
    pub has_last_resort: bool,
}

/// A group to register, with its creator as the only member.
#[derive(Clone, Debug)]
pub struct NewGroup {
    pub group_id: GroupId,
    pub epoch: u64,
    /// The serialised public group state (see `crate::mls::GroupStateBlob`).
    pub state: Vec<u8>,
    pub group_info: Bytes,
    pub creator: ClientId,
}

/// The persisted public state of a group at an epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroupState {
    pub epoch: u64,
    pub state: Vec<u8>,
    /// Bumped on every write of the state; see [`CommitRecord::state_version`].
    pub version: u64,
}

/// A commit validated against the state of `from_epoch`, to be accepted
/// atomically if and only if the group is still at `from_epoch`.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    pub group_id: GroupId,
    pub from_epoch: u64,
    /// The state version the commit was validated against. If another writer
    /// (another replica) changed the state since, the store refuses with
    /// `StateChanged` and the DS re-validates against the new state.
    pub state_version: u64,
    /// Identifies the commit (a hash of its bytes); also its content key.
    pub dedup_key: DedupKey,
    pub commit: Bytes,
    /// Public group state after merging the commit (epoch `from_epoch + 1`).
    pub new_state: Vec<u8>,
    pub group_info: Bytes,
    /// Clients the commit adds; each gets `welcome` in its inbox.
    pub added: Vec<ClientId>,
    pub welcome: Option<Bytes>,
    /// The ratchet tree after the commit, served to the joiners with the
    /// Welcome (empty when the commit adds nobody).
    pub ratchet_tree: Bytes,
    /// Clients the commit removes; they see the commit itself, nothing after.
    pub removed: Vec<ClientId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitAccepted {
    pub entry: GroupEntry,
    /// The Welcome inbox entries, one per added client.
    pub welcomes: Vec<(ClientId, InboxEntry)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Accepted(CommitAccepted),
    /// The same commit was accepted before; this is its log entry.
    Duplicate(GroupEntry),
}

/// A proposal or application message to append to a group log.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub group_id: GroupId,
    /// The member that sent it, who must be on the roster; `None` for the
    /// DS's own external-sender proposals.
    pub sender: Option<ClientId>,
    /// The idempotency key: a retry with it returns the original entry.
    pub dedup_key: DedupKey,
    /// A hash of the MLS message: a replay of the same bytes under another
    /// idempotency key also returns the original entry.
    pub content_key: DedupKey,
    pub kind: crate::domain::EntryKind,
    pub epoch: u64,
    pub message: Bytes,
    /// Accept `epoch` if it is at most this many epochs behind the group's.
    pub max_epoch_lag: u64,
    /// New public group state to store with the entry (a proposal changes the
    /// proposal queue), and the state version it was derived from; only valid
    /// when `epoch` is the group's current epoch.
    pub new_state: Option<(Vec<u8>, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    Appended(GroupEntry),
    /// The sender submitted this message before; this is its log entry.
    Duplicate(GroupEntry),
}

impl NewMessage {
    /// Whether a group at `group_epoch` accepts the message's epoch: at most
    /// `max_epoch_lag` behind, and exactly current when it carries a new
    /// state.
    pub fn fits_epoch(&self, group_epoch: u64) -> bool {
        self.epoch <= group_epoch
            && group_epoch - self.epoch <= self.max_epoch_lag
            && (self.new_state.is_none() || self.epoch == group_epoch)
    }
}

impl AppendOutcome {
    pub fn entry(&self) -> &GroupEntry {
        match self {
            AppendOutcome::Appended(entry) | AppendOutcome::Duplicate(entry) => entry,
        }
    }
}

/// A client's membership of a group, as the DS roster knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub group_id: GroupId,
    /// The client sees entries with `seq > joined_seq` ...
    pub joined_seq: u64,
    /// ... and `seq <= left_seq` once it has been removed.
    pub left_seq: Option<u64>,
    /// Highest seq the client acknowledged.
    pub acked_seq: u64,
}

impl Membership {
    pub fn is_current(&self) -> bool {
        self.left_seq.is_none()
    }

    pub fn sees(&self, seq: u64) -> bool {
        seq > self.joined_seq && self.left_seq.is_none_or(|left| seq <= left)
    }
}

/// What one [`Store::prune`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Group log entries, acknowledged by every member or past retention.
    pub log_entries: u64,
    /// Memberships of removed members whose whole window was pruned.
    pub memberships: u64,
    /// Inbox entries (Welcomes with their ratchet trees, notices),
    /// acknowledged or past retention.
    pub inbox_entries: u64,
    /// Key packages whose lifetime ended.
    pub key_packages: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.log_entries + self.memberships + self.inbox_entries + self.key_packages
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("the group is at epoch {current}")]
    WrongEpoch { current: u64 },
    #[error("the client is not a member of the group")]
    NotMember,
    /// An ack for a sequence number the stream has not reached.
    #[error("the stream ends at {last}")]
    BeyondEnd { last: u64 },
    /// A read from below the group's pruned horizon: the entries after the
    /// cursor up to `first_seq - 1` were pruned (past retention), so the
    /// reader cannot go on from where it was; `first_seq` is the first
    /// entry still held.
    #[error("the group's entries before {first_seq} were pruned")]
    Pruned { group_id: GroupId, first_seq: u64 },
    /// The group state changed since the version a write was derived from.
    #[error("the group state changed concurrently")]
    StateChanged,
    #[error("storage backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database cannot be reached (down, restarting, out of reach) or
    /// has no connection free in time: the same call may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- clients and sessions ---
    /// Registers a device atomically with its user: an unknown user is
    /// created with the device's identity key (the first device makes the
    /// identity), a known one must have that identity key; see
    /// [`Registration`] for the outcomes.
    async fn register_client(&self, device: &NewDevice) -> StoreResult<Registration>;
    /// A registered client that was not removed.
    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>>;
    /// A registered client, removed or not.
    async fn registered_client(&self, id: &ClientId) -> StoreResult<Option<RegisteredClient>>;
    /// Every registered device of a user, removed ones excepted.
    async fn devices(&self, user: &str) -> StoreResult<Vec<ClientId>>;
    /// The user's identity key, if a certified device registered for it.
    async fn identity_key(&self, user: &str) -> StoreResult<Option<Vec<u8>>>;
    /// The user's identity key, devices (removed ones excepted) and
    /// revocations.
    async fn user_devices(&self, user: &str) -> StoreResult<UserDevices>;
    /// Deprovisions a client, atomically: it becomes a tombstone (never
    /// registered or authenticated again), its sessions, challenges and
    /// key packages are deleted, and `revocation` (checked by the caller)
    /// is kept, unless one was kept before. True if it was active, false if
    /// it was removed before; NotFound if it never existed.
    async fn remove_client(&self, id: &ClientId, revocation: Option<&[u8]>) -> StoreResult<bool>;
    /// Ends one session.
    async fn revoke_session(&self, token_hash: &DedupKey) -> StoreResult<()>;
    async fn put_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        expires_at: SystemTime,
    ) -> StoreResult<()>;
    /// Consumes the challenge; true if it existed for this client and had not expired.
    async fn take_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        now: SystemTime,
    ) -> StoreResult<bool>;
    async fn put_session(
        &self,
        token_hash: &DedupKey,
        client: &ClientId,
        expires_at: SystemTime,
    ) -> StoreResult<()>;
    /// Deletes challenges, sessions and device links that expired by `now`;
    /// returns how many.
    async fn purge_expired(&self, now: SystemTime) -> StoreResult<u64>;
    /// Deletes what is no longer needed, in short bounded steps (never a
    /// lock held across the whole run, never an append held up for long):
    /// each group's log entries that every member acknowledged (the lowest
    /// cursor of its current members, and of removed members that have not
    /// read up to their removal) or that are older than `retention` at
    /// `now`, always a prefix of the log, after which the group remembers
    /// the seq it was pruned up to; removed members' memberships whose
    /// whole window is pruned; inbox entries acknowledged or older than
    /// `retention`; key packages whose lifetime ended by `now`. Idempotent.
    async fn prune(&self, now: SystemTime, retention: Duration) -> StoreResult<PruneReport>;
    /// The session, if it exists and has not expired by `now`.
    async fn session(
        &self,
        token_hash: &DedupKey,
        now: SystemTime,
    ) -> StoreResult<Option<SessionRecord>>;

    // --- key packages ---
    /// Adds to the client's pool (a ref already stored is ignored) and, if
    /// given, replaces its last-resort key package. Returns the pool size.
    async fn publish_key_packages(
        &self,
        client: &ClientId,
        key_packages: Vec<KeyPackageRecord>,
        last_resort: Option<KeyPackageRecord>,
    ) -> StoreResult<u32>;
    /// Atomically takes one key package of the client (each handed out at
    /// most once), or its last-resort one when the pool is empty.
    async fn claim_key_package(&self, client: &ClientId) -> StoreResult<Option<ClaimedKeyPackage>>;
    /// True for the first call since the client's last publish (then false
    /// until it publishes again): whoever gets true tells the client its pool
    /// is low, so it hears it once per publish however many claims follow.
    async fn take_low_pool_notice(&self, client: &ClientId) -> StoreResult<bool>;
    async fn count_key_packages(&self, client: &ClientId) -> StoreResult<KeyPackageCount>;

    // --- linking devices ---
    /// Stores a new device's offer unless its user has no identity key, has
    /// `max_pending` unexpired links already, or another unexpired offer
    /// holds the link id. An expired link with the id is replaced.
    async fn post_link_offer(
        &self,
        offer: &LinkOffer,
        max_pending: usize,
        now: SystemTime,
    ) -> StoreResult<LinkPosted>;
    /// The user and sealed offer of an unexpired link.
    async fn link_offer(
        &self,
        link_id: &[u8],
        now: SystemTime,
    ) -> StoreResult<Option<(String, Bytes)>>;
    /// Answers an unexpired link of `user`, once.
    async fn post_link_answer(
        &self,
        link_id: &[u8],
        user: &str,
        sealed_answer: &Bytes,
        now: SystemTime,
    ) -> StoreResult<LinkAnswered>;
    /// Takes an unexpired link's answer, deleting the link.
    async fn take_link_answer(&self, link_id: &[u8], now: SystemTime) -> StoreResult<LinkAnswer>;

    // --- groups ---
    /// Registers a group; `AlreadyExists` if the id is taken.
    async fn create_group(&self, group: NewGroup) -> StoreResult<()>;
    async fn group_state(&self, group_id: &GroupId) -> StoreResult<Option<StoredGroupState>>;
    /// The version of the group's state; cheaper than loading the state.
    async fn group_state_version(&self, group_id: &GroupId) -> StoreResult<Option<u64>>;
    /// The latest GroupInfo and its epoch.
    async fn group_info(&self, group_id: &GroupId) -> StoreResult<Option<(u64, Bytes)>>;
    /// The entry a dedup key was accepted as, if any.
    async fn find_entry(
        &self,
        group_id: &GroupId,
        dedup_key: &DedupKey,
    ) -> StoreResult<Option<GroupEntry>>;
    /// Accepts a commit in one transaction: checks the epoch under the group
    /// lock, stores the new state and GroupInfo, appends the commit, puts the
    /// Welcome into each joiner's inbox and updates the roster.
    /// `WrongEpoch` if the group is no longer at `from_epoch`; `StateChanged`
    /// if its state is no longer at `state_version`. On success the state
    /// version is `state_version + 1`.
    async fn accept_commit(&self, commit: CommitRecord) -> StoreResult<CommitOutcome>;
    /// Appends a proposal or application message from a current member.
    /// Checked in this order: `NotFound`, `NotMember`; a retry under the
    /// same idempotency key is a `Duplicate` at any epoch; `WrongEpoch`
    /// (outside the window); a replay of the same bytes is a `Duplicate`;
    /// `StateChanged` (when storing a new state derived from an older
    /// version).
    async fn append(&self, message: NewMessage) -> StoreResult<AppendOutcome>;
    /// Appends members' messages (each with a sender and no new state) as
    /// [`Store::append`] would one after another, answering each in the
    /// batch's order; within a group, sequence numbers follow that order. A
    /// store that can do it in one transaction (group commit) does.
    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<StoreResult<AppendOutcome>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            outcomes.push(self.append(message).await);
        }
        outcomes
    }

    /// Whether the roster of the group has a device of `user`.
    async fn user_in_group(&self, group_id: &GroupId, user: &str) -> StoreResult<bool>;

    // --- membership and delivery ---
    async fn membership(
        &self,
        client: &ClientId,
        group_id: &GroupId,
    ) -> StoreResult<Option<Membership>>;
    /// Every group the client belongs or belonged to and can still read from.
    async fn memberships(&self, client: &ClientId) -> StoreResult<Vec<Membership>>;
    /// Up to `limit` entries after `after_seq` that the client may see;
    /// `NotMember` if it has no membership of the group; `Pruned` if some
    /// entry after `after_seq` it may see was pruned (it is never skipped
    /// silently).
    async fn read_group(
        &self,
        client: &ClientId,
        group_id: &GroupId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<GroupEntry>>;
    async fn read_inbox(
        &self,
        client: &ClientId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>>;
    async fn push_inbox(&self, client: &ClientId, item: InboxItem) -> StoreResult<InboxEntry>;
    /// Moves the client's cursor on a stream to `seq` if that is further;
    /// never backwards. `NotMember` for a group the client has no membership
    /// of; `BeyondEnd` for a seq the stream has not reached.
    async fn ack(&self, client: &ClientId, stream: &StreamRef, seq: u64) -> StoreResult<()>;
    async fn inbox_cursor(&self, client: &ClientId) -> StoreResult<u64>;
}
