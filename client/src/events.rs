//! What a client observes in its groups, in the order the DS fixed.

use confide_ds::domain::ClientId;

/// A group id as the client sees it.
pub type GroupId = Vec<u8>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An application message, decrypted.
    Message {
        group: GroupId,
        seq: u64,
        sender: ClientId,
        body: Vec<u8>,
    },
    /// This client joined a group through a Welcome.
    Joined {
        group: GroupId,
        members: Vec<ClientId>,
        epoch: u64,
    },
    /// A commit by `by` added members.
    MembersAdded {
        group: GroupId,
        by: ClientId,
        members: Vec<ClientId>,
    },
    /// A commit by `by` removed members.
    MembersRemoved {
        group: GroupId,
        by: ClientId,
        members: Vec<ClientId>,
    },
    /// This client was removed from the group; nothing more arrives from it.
    Removed { group: GroupId, by: ClientId },
    /// A commit moved the group to a new epoch.
    EpochChanged {
        group: GroupId,
        epoch: u64,
        by: ClientId,
    },
    /// The DS said this client's key package pool ran low; it uploaded more.
    KeyPackagesReplenished { uploaded: usize },
    /// An entry could not be processed (e.g. it was tampered with).
    Undecryptable {
        group: GroupId,
        seq: u64,
        reason: String,
    },
}
