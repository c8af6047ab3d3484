//! `confide-client`: the Confide client library on openmls.
//!
//! A [`Client`] is one device. It registers, authenticates, publishes key
//! packages, creates groups, adds and removes members, updates its keys and
//! exchanges end-to-end encrypted messages through a Confide delivery service,
//! turning what arrives into typed [`Event`]s. All keys and group secrets stay
//! here; state persists in SQLite so a restarted client resumes every group.

pub mod api;
pub mod client;
pub mod display;
pub mod error;
pub mod events;
pub mod identity;
pub mod lock;
pub mod retry;
pub mod roster;
pub mod store;
pub mod verify;

pub use api::{Api, TlsOptions};
pub use client::{
    Added, Client, CommitSummary, DeviceStatus, GroupLinked, GroupRemoval, Incoming, LinkRequest,
    ListedDevice, PendingLink,
};
pub use confide_core::ClientId;
pub use error::{ClientError, ClientResult};
pub use events::{Event, GroupId};
pub use identity::{Backup, UserIdentity};
pub use roster::GroupMember;
pub use store::{Contact, GroupProfileRecord, HistoryEntry, StateLocation};
pub use verify::Ghost;
