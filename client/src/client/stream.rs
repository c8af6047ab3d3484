//! The event stream: what arrives from the DS, live or read back from the
//! logs, and the events it becomes, kept in the state file until handed
//! over. Entries are applied in `processing.rs`.

use confide_proto::v1;

use super::Client;
use crate::error::{ClientError, ClientResult, entries_pruned};
use crate::events::{Event, GroupId};
use crate::store::Stream;

/// Entries asked for per fetch when catching up from a log.
const FETCH_PAGE: u32 = 500;

/// An entry of the live stream, received ([`Client::receive`]) but not yet
/// processed ([`Client::process`]).
pub struct Incoming(Arrived);

enum Arrived {
    Envelope(v1::Envelope),
    /// The stream ended with ENTRIES_PRUNED: entries of the group after
    /// this client's position are gone before `first_seq`.
    Pruned {
        group: GroupId,
        first_seq: u64,
    },
}

pub(super) fn group_selector(group_id: &[u8]) -> v1::StreamSelector {
    v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::GroupId(
            group_id.to_vec().into(),
        )),
    }
}

pub(super) fn inbox_selector() -> v1::StreamSelector {
    v1::StreamSelector {
        stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
    }
}

impl Client {
    /// Pulls and processes everything pending (inbox, then every group) and
    /// returns the events, in order.
    pub async fn sync(&mut self) -> ClientResult<Vec<Event>> {
        self.catch_up().await?;
        let events: Vec<(i64, Event)> = self.events.drain(..).collect();
        if let Some((last, _)) = events.last() {
            self.db.events_taken(*last)?;
        }
        Ok(events.into_iter().map(|(_, event)| event).collect())
    }

    /// Pulls and processes everything pending, like [`Client::sync`], but
    /// keeps the events for a later `sync` or [`Client::next_event`]: for
    /// reading the group's current roster without taking its events.
    pub async fn catch_up(&mut self) -> ClientResult<()> {
        self.flush_outbox().await?;
        self.catch_up_inbox().await?;
        let groups: Vec<GroupId> = self.groups.keys().cloned().collect();
        for group_id in groups {
            self.settle_resync_in_doubt(&group_id).await?;
            self.catch_up_group(&group_id).await?;
            self.settle_commit_in_doubt(&group_id).await?;
        }
        self.resync_where_stuck().await?;
        self.commit_pending_removals().await?;
        self.keep_leaving().await
    }

    /// Keeps an event (in the state file too) until it is handed over.
    pub(super) fn emit(&mut self, event: Event) -> ClientResult<()> {
        self.record_history(&event, None)?;
        self.push_event(event)
    }

    /// [`Client::emit`] for an event of entry `seq` of its group's log,
    /// which places it in the group's history.
    pub(super) fn emit_entry(&mut self, event: Event, seq: u64) -> ClientResult<()> {
        self.record_history(&event, Some(seq))?;
        self.push_event(event)
    }

    /// Keeps an event until it is handed over, without recording it in
    /// the group's history (its caller did).
    pub(super) fn push_event(&mut self, event: Event) -> ClientResult<()> {
        let id = self.db.push_event(&event)?;
        self.events.push_back((id, event));
        Ok(())
    }

    /// Hands over the oldest event kept, if any.
    pub fn take_event(&mut self) -> ClientResult<Option<Event>> {
        let Some((id, event)) = self.events.pop_front() else {
            return Ok(None);
        };
        self.db.events_taken(id)?;
        Ok(Some(event))
    }

    /// The next event from the live stream (opened on first use).
    ///
    /// Not cancel-safe: dropped while it processes an entry, it may leave
    /// that entry half done. To wait for something else at the same time,
    /// race [`Client::receive`] instead, then [`Client::process`] what it
    /// returns and take the events ([`Client::take_event`]).
    pub async fn next_event(&mut self) -> ClientResult<Event> {
        if self.stream.is_none() {
            self.flush_outbox().await?;
        }
        loop {
            if let Some(event) = self.take_event()? {
                return Ok(event);
            }
            self.resync_where_stuck().await?;
            self.commit_pending_removals().await?;
            self.keep_leaving().await?;
            if let Some(event) = self.take_event()? {
                return Ok(event);
            }
            let incoming = self.receive().await?;
            self.process(incoming).await?;
        }
    }

    /// Waits for the next entry of the live stream (opened on first use).
    /// Cancel-safe: dropped while waiting, it has changed nothing, and the
    /// entry it was waiting for is returned by the next call.
    pub async fn receive(&mut self) -> ClientResult<Incoming> {
        if self.stream.is_none() {
            let request = self.api.request(v1::SubscribeRequest {});
            self.stream = Some(self.api.delivery().subscribe(request).await?.into_inner());
        }
        let stream = self.stream.as_mut().expect("opened above");
        match stream.message().await {
            Ok(Some(envelope)) => Ok(Incoming(Arrived::Envelope(envelope))),
            Ok(None) => {
                self.stream = None;
                Err(ClientError::StreamEnded)
            }
            Err(status) => {
                self.stream = None;
                match entries_pruned(&status) {
                    // Recovered in `process`; the stream opens again after.
                    Some((group, first_seq)) => Ok(Incoming(Arrived::Pruned { group, first_seq })),
                    None => Err(status.into()),
                }
            }
        }
    }

    /// Processes an entry [`Client::receive`] returned (refilling a gap
    /// before it from the log) and acknowledges it; its events are kept
    /// until taken. Run it to completion, never inside a `select!`.
    pub async fn process(&mut self, incoming: Incoming) -> ClientResult<()> {
        let envelope = match incoming.0 {
            Arrived::Envelope(envelope) => envelope,
            Arrived::Pruned { group, first_seq } => {
                self.recover_pruned(&group, first_seq).await?;
                v1::Envelope { entry: None }
            }
        };
        match envelope.entry {
            Some(v1::envelope::Entry::Group(entry)) => {
                let group_id = entry.group_id.to_vec();
                let processed = self.db.processed(&Stream::Group(group_id.clone()))?;
                if entry.seq > processed + 1 {
                    // A gap in the live stream (a dropped or reordered
                    // entry): refill it, in order, from the log. The
                    // entry itself is then usually a duplicate.
                    self.catch_up_group(&group_id).await?;
                }
                if self.apply_group_entry(entry)? {
                    self.ack(group_selector(&group_id)).await?;
                }
            }
            Some(v1::envelope::Entry::Inbox(entry)) => {
                if entry.seq > self.db.processed(&Stream::Inbox)? + 1 {
                    self.catch_up_inbox().await?;
                } else {
                    let seq = entry.seq;
                    self.apply_inbox_entry(entry).await?;
                    self.api.ack(inbox_selector(), seq).await?;
                }
            }
            None => {}
        }
        self.resync_where_stuck().await?;
        self.commit_pending_removals().await?;
        self.keep_leaving().await
    }

    /// Acknowledges everything processed on a stream.
    ///
    /// Methods that await take `&mut self`: `Client` is `Send` but not `Sync`
    /// (it owns SQLite connections), so its futures stay `Send` only if no
    /// `&Client` is held across an await.
    async fn ack(&mut self, stream: v1::StreamSelector) -> ClientResult<()> {
        let seq = match &stream.stream {
            Some(v1::stream_selector::Stream::GroupId(id)) => {
                self.db.processed(&Stream::Group(id.to_vec()))?
            }
            _ => self.db.processed(&Stream::Inbox)?,
        };
        self.api.ack(stream, seq).await
    }

    async fn catch_up_inbox(&mut self) -> ClientResult<()> {
        loop {
            let after = self.db.processed(&Stream::Inbox)?;
            let entries = self.api.fetch(inbox_selector(), after, FETCH_PAGE).await?;
            if entries.is_empty() {
                break;
            }
            for envelope in entries {
                if let Some(v1::envelope::Entry::Inbox(entry)) = envelope.entry {
                    self.apply_inbox_entry(entry).await?;
                }
            }
        }
        self.ack(inbox_selector()).await
    }

    /// Reads and applies every entry of the group after what was processed.
    pub(super) async fn catch_up_group(&mut self, group_id: &[u8]) -> ClientResult<()> {
        let stream = Stream::Group(group_id.to_vec());
        let mut recovered = false;
        loop {
            if !self.groups.contains_key(group_id) {
                return Ok(());
            }
            let after = self.db.processed(&stream)?;
            let page = match self
                .api
                .fetch(group_selector(group_id), after, FETCH_PAGE)
                .await
            {
                Ok(page) => page,
                // Entries this client had not read were pruned: it
                // re-syncs, once per catch-up, and reads on after that.
                Err(ClientError::Rpc(status)) if !recovered => match entries_pruned(&status) {
                    Some((group, first_seq)) if group == group_id => {
                        recovered = true;
                        Box::pin(self.recover_pruned(group_id, first_seq)).await?;
                        continue;
                    }
                    _ => return Err(ClientError::Rpc(status)),
                },
                Err(error) => return Err(error),
            };
            let mut entries: Vec<v1::GroupEntry> = page
                .into_iter()
                .filter_map(|envelope| match envelope.entry {
                    Some(v1::envelope::Entry::Group(entry)) if entry.group_id == group_id => {
                        Some(entry)
                    }
                    _ => None,
                })
                .filter(|entry| entry.seq > after)
                .collect();
            if entries.is_empty() {
                break;
            }
            // The DS sends a page in order; one that does not is put back
            // in order rather than trusted.
            entries.sort_by_key(|entry| entry.seq);
            for entry in entries {
                self.apply_group_entry(entry)?;
            }
        }
        if self.groups.contains_key(group_id) {
            self.ack(group_selector(group_id)).await?;
        }
        Ok(())
    }
}
