//! The delivery service's own types: what the domain and the storage layer
//! work on, independent of prost and of openmls.

use bytes::Bytes;

pub use confide_core::ids::{
    ClientId, GroupId, InvalidClientId, InvalidGroupId, MAX_GROUP_ID_LEN, MAX_MESSAGE_ID_LEN,
    MAX_NAME_LEN, valid_message_id, valid_user,
};

/// What kind of MLS message a group log entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Commit,
    Proposal,
    Application,
}

impl EntryKind {
    pub fn as_i16(self) -> i16 {
        match self {
            EntryKind::Commit => 1,
            EntryKind::Proposal => 2,
            EntryKind::Application => 3,
        }
    }

    pub fn from_i16(value: i16) -> Option<Self> {
        match value {
            1 => Some(EntryKind::Commit),
            2 => Some(EntryKind::Proposal),
            3 => Some(EntryKind::Application),
            _ => None,
        }
    }
}

/// One entry of a group's totally ordered log. Written once, read by every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupEntry {
    pub group_id: GroupId,
    /// 1-based, gap-free position in the group's log.
    pub seq: u64,
    /// The epoch the message was sent in.
    pub epoch: u64,
    pub kind: EntryKind,
    /// The TLS-serialised MlsMessage, exactly as the sender submitted it.
    pub message: Bytes,
}

/// Something addressed to one client rather than to a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboxItem {
    /// The Welcome of the commit at `commit_seq` of `group_id`'s log.
    Welcome {
        group_id: GroupId,
        commit_seq: u64,
        welcome: Bytes,
        /// The group's ratchet tree after the commit, so the Welcome need
        /// not carry it.
        ratchet_tree: Bytes,
    },
    /// The client's key package pool fell below the low watermark.
    KeyPackagesLow { available: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEntry {
    /// 1-based, gap-free position in the client's inbox.
    pub seq: u64,
    pub item: InboxItem,
}

/// Which ordered stream a read or an ack addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StreamRef {
    Group(GroupId),
    Inbox,
}
