//! What the store keeps about users and their devices: the identity key of
//! each user, each device's certificate, revocations, and the linking
//! mailbox. The store compares these as bytes; the domain checks the
//! signatures before anything reaches it.

use std::time::SystemTime;

use bytes::Bytes;

use super::ClientRecord;
use crate::domain::ClientId;

/// A device to register: its client, signature key and certificate
/// (`client.certificate` is set), and the identity key the certificate is by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDevice {
    pub client: ClientRecord,
    pub identity_key: Vec<u8>,
}

/// A client as registered, whether or not it was removed since.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredClient {
    pub record: ClientRecord,
    pub removed: bool,
}

/// A user's identity key, its devices that were not removed (by device
/// name) and the revocations its identity key signed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserDevices {
    /// `None` for a user no certified device registered for.
    pub identity_key: Option<Vec<u8>>,
    pub devices: Vec<ClientRecord>,
    pub revocations: Vec<(ClientId, Vec<u8>)>,
}

/// A new device's sealed offer to be linked to `user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkOffer {
    pub link_id: Vec<u8>,
    pub user: String,
    pub sealed_offer: Bytes,
    pub expires_at: SystemTime,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkPosted {
    /// Stored, or posted before with the same user and offer: kept until then.
    Posted { expires_at: SystemTime },
    /// The user has no identity key: no device could take the offer.
    UnknownUser,
    /// The user has as many pending links as allowed.
    TooMany,
    /// Another offer holds the link id.
    Taken,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkAnswered {
    /// Stored, or this same answer was stored before.
    Posted,
    /// No pending link with this id for this user.
    NotFound,
    /// The link was answered with other bytes.
    AlreadyAnswered,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkAnswer {
    /// The link is pending, unanswered.
    Pending,
    /// The answer, taken: the link is gone.
    Answered(Bytes),
    /// No such link, it expired, or its answer was taken.
    NotFound,
}
