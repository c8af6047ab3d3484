//! Conversions between `confide.v1` messages and the delivery service's own
//! domain types (those of the core types live in [`confide_proto::convert`]).

use std::time::{SystemTime, UNIX_EPOCH};

use confide_proto::v1;
use confide_proto::validation::RequireField;
use tonic::Status;

use crate::delivery::Delivery;
use crate::domain::{EntryKind, GroupEntry, InboxEntry, InboxItem, StreamRef};

pub use confide_proto::convert::{client_field, group_id_field};

pub fn stream_field(value: Option<v1::StreamSelector>) -> Result<StreamRef, Status> {
    match value.require("stream")?.stream.require("stream")? {
        v1::stream_selector::Stream::GroupId(id) => Ok(StreamRef::Group(group_id_field(&id)?)),
        v1::stream_selector::Stream::Inbox(_) => Ok(StreamRef::Inbox),
    }
}

pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl From<EntryKind> for v1::EntryKind {
    fn from(kind: EntryKind) -> Self {
        match kind {
            EntryKind::Commit => v1::EntryKind::Commit,
            EntryKind::Proposal => v1::EntryKind::Proposal,
            EntryKind::Application => v1::EntryKind::Application,
        }
    }
}

impl From<GroupEntry> for v1::GroupEntry {
    fn from(entry: GroupEntry) -> Self {
        v1::GroupEntry {
            group_id: entry.group_id.as_slice().to_vec().into(),
            seq: entry.seq,
            epoch: entry.epoch,
            kind: v1::EntryKind::from(entry.kind).into(),
            message: entry.message,
        }
    }
}

impl From<InboxEntry> for v1::InboxEntry {
    fn from(entry: InboxEntry) -> Self {
        let item = match entry.item {
            InboxItem::Welcome {
                group_id,
                commit_seq,
                welcome,
                ratchet_tree,
            } => v1::inbox_entry::Item::Welcome(v1::WelcomeItem {
                group_id: group_id.as_slice().to_vec().into(),
                commit_seq,
                welcome,
                ratchet_tree,
            }),
            InboxItem::KeyPackagesLow { available } => {
                v1::inbox_entry::Item::KeyPackagesLow(v1::KeyPackagesLow { available })
            }
        };
        v1::InboxEntry {
            seq: entry.seq,
            item: Some(item),
        }
    }
}

impl From<Delivery> for v1::Envelope {
    fn from(delivery: Delivery) -> Self {
        let entry = match delivery {
            Delivery::Group(entry) => v1::envelope::Entry::Group(entry.into()),
            Delivery::Inbox(entry) => v1::envelope::Entry::Inbox(entry.into()),
        };
        v1::Envelope { entry: Some(entry) }
    }
}
