//! The delivery service's own types: what the domain and the storage layer
//! work on, independent of prost and of openmls.

use std::fmt;

use bytes::Bytes;

/// Longest user or device name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest MLS group id the DS accepts.
pub const MAX_GROUP_ID_LEN: usize = 255;

/// One client: a device of a user. Its MLS credential identity is `user/device`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId {
    user: String,
    device: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidClientId {
    #[error("{0} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadName(&'static str),
    #[error("credential identity is not `user/device`")]
    BadIdentity,
}

/// Whether `name` is a valid user or device name.
pub fn valid_user(name: &str) -> bool {
    valid_name(name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ClientId {
    pub fn new(
        user: impl Into<String>,
        device: impl Into<String>,
    ) -> Result<Self, InvalidClientId> {
        let (user, device) = (user.into(), device.into());
        if !valid_name(&user) {
            return Err(InvalidClientId::BadName("user"));
        }
        if !valid_name(&device) {
            return Err(InvalidClientId::BadName("device"));
        }
        Ok(Self { user, device })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The MLS credential identity naming this client.
    pub fn identity(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses an MLS credential identity.
    pub fn from_identity(identity: &[u8]) -> Result<Self, InvalidClientId> {
        let text = std::str::from_utf8(identity).map_err(|_| InvalidClientId::BadIdentity)?;
        let (user, device) = text.split_once('/').ok_or(InvalidClientId::BadIdentity)?;
        Self::new(user, device)
    }
}

/// As its identity string `user/device` (checked when read back).
impl TryFrom<String> for ClientId {
    type Error = InvalidClientId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_identity(text.as_bytes())
    }
}

impl From<ClientId> for String {
    fn from(client: ClientId) -> Self {
        client.to_string()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, for tables.
        f.pad(&format!("{}/{}", self.user, self.device))
    }
}

/// An MLS group id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("group id must be 1 to 255 bytes")]
pub struct InvalidGroupId;

impl GroupId {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, InvalidGroupId> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_GROUP_ID_LEN {
            return Err(InvalidGroupId);
        }
        Ok(Self(bytes))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", hex::encode(&self.0))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

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
