//! A person's view of each group over time: its history (every event this
//! device saw, its own messages included), its name and topic, and what is
//! unread; and sending the MIMI content those are made of
//! ([`confide_core::content`]).

use confide_core::ClientId;
use confide_core::content::{Body, Content, GroupProfile};

use super::Client;
use super::processing::departures_and_epoch;
use crate::error::{ClientError, ClientResult};
use crate::events::{Event, GroupId};
use crate::roster::{self, GroupMember};
use crate::store::{GroupProfileRecord, HistoryEntry, now_ms};

impl Client {
    /// Sends a text message; it is kept in this device's history too.
    pub async fn send_text(&mut self, group_id: &[u8], text: &str) -> ClientResult<u64> {
        self.send(group_id, text.as_bytes()).await
    }

    /// Names the group (and sets or clears its topic) for every member: a
    /// message like any other, so the DS never sees the name.
    pub async fn rename(
        &mut self,
        group_id: &[u8],
        name: &str,
        topic: Option<&str>,
    ) -> ClientResult<u64> {
        let profile = GroupProfile::new(name, topic)
            .map_err(|error| ClientError::Invalid(error.to_string()))?;
        self.send_body(group_id, Body::GroupProfile(profile)).await
    }

    /// Sends the group's name again, for members added since it was set
    /// (they cannot read the message that set it). Members who knew it see
    /// nothing.
    pub(super) async fn announce_profile(&mut self, group_id: &[u8]) {
        let GroupProfileRecord { name, topic } = match self.db.group_profile(group_id) {
            Ok(profile) => profile,
            Err(error) => {
                tracing::warn!(%error, "reading the group's name");
                return;
            }
        };
        let Some(name) = name else { return };
        if let Err(error) = self.rename(group_id, &name, topic.as_deref()).await {
            tracing::warn!(client = %self.id, %error, "could not tell new members the group's name");
        }
    }

    /// The last `limit` events of the group's history, oldest first: what
    /// arrived and what this device sent, with when it recorded each.
    pub fn history(&self, group_id: &[u8], limit: usize) -> ClientResult<Vec<HistoryEntry>> {
        self.db.history(group_id, limit)
    }

    /// What every group's history gained after entry `after` (its
    /// [`HistoryEntry::id`]), in the order this device recorded it, at most
    /// `limit` entries: for a live view, which shows messages this device
    /// sent once the DS has them, even after a reconnection.
    pub fn history_since(
        &self,
        after: i64,
        limit: usize,
    ) -> ClientResult<Vec<(GroupId, HistoryEntry)>> {
        self.db.history_since(after, limit)
    }

    /// Every group with a history on this device, including those it has
    /// left or was removed from.
    pub fn groups_with_history(&self) -> ClientResult<Vec<GroupId>> {
        self.db.groups_with_history()
    }

    /// The group's name and topic, as its members last set them (both
    /// chosen by members: show them with [`crate::display::safe`]).
    pub fn group_profile(&self, group_id: &[u8]) -> ClientResult<GroupProfileRecord> {
        self.db.group_profile(group_id)
    }

    /// Messages from other members not yet marked read.
    pub fn unread(&self, group_id: &[u8]) -> ClientResult<u64> {
        self.db.unread(group_id)
    }

    /// Marks everything the group's history holds read.
    pub fn mark_read(&self, group_id: &[u8]) -> ClientResult<()> {
        self.db.mark_read(group_id)
    }

    /// Keeps an event in its group's history, at its place in the group's
    /// log if it is an entry's (`seq`); a new name or topic becomes the
    /// group's.
    pub(super) fn record_history(&self, event: &Event, seq: Option<u64>) -> ClientResult<()> {
        let Some(group) = event.group() else {
            return Ok(());
        };
        if let Event::GroupRenamed { name, topic, .. } = event {
            self.db.set_group_profile(group, name, topic.as_deref())?;
        }
        let counts_unread = matches!(
            event,
            Event::Message { sender, .. } | Event::Unsupported { sender, .. } if sender != &self.id
        );
        self.db.record_history(group, event, seq, counts_unread)
    }

    /// Whether `event` names the group as it is named already.
    pub(super) fn is_known_profile(&self, event: &Event) -> ClientResult<bool> {
        let Event::GroupRenamed {
            group, name, topic, ..
        } = event
        else {
            return Ok(false);
        };
        let known = self.db.group_profile(group)?;
        Ok(known.name.as_ref() == Some(name) && &known.topic == topic)
    }

    /// Keeps a message this device sent, now entry `seq` of the group's
    /// log, in its history, as the others see it.
    pub(super) fn record_own(&self, group_id: &[u8], seq: u64, content: &[u8]) -> ClientResult<()> {
        let event = super::processing::application_event(
            group_id.to_vec(),
            seq,
            self.id.clone(),
            content.to_vec(),
        );
        if self.is_known_profile(&event)? {
            return Ok(());
        }
        self.record_history(&event, Some(seq))
    }

    /// Keeps what this device's own commit, entry `seq`, changed in the
    /// group's history: the members it added and removed (read off the
    /// roster `before` it and now; those in `left` left, on their own
    /// proposal) and the new epoch, as the others see it.
    pub(super) fn record_own_commit(
        &self,
        group_id: &[u8],
        seq: u64,
        before: &[GroupMember],
        left: &[ClientId],
    ) -> ClientResult<()> {
        let (added, removed) = roster::diff(before, &self.roster(group_id)?);
        let mut events = Vec::new();
        if !added.is_empty() {
            events.push(Event::MembersAdded {
                group: group_id.to_vec(),
                by: self.id.clone(),
                members: added,
            });
        }
        events.extend(departures_and_epoch(
            group_id.to_vec(),
            self.id.clone(),
            removed,
            left,
            self.epoch(group_id)?,
        ));
        for event in &events {
            self.record_history(event, Some(seq))?;
        }
        Ok(())
    }
}

/// New MIMI content for `body`, sent now.
pub(super) fn new_content(body: Body) -> Vec<u8> {
    Content::new(body, now_ms()).to_bytes()
}
