//! Delivery: the live stream per client, paged fetch and acks.
//!
//! A subscription registers with the [`Hub`](crate::hub::Hub) *before* it reads
//! the backlog, then dedupes by sequence number, so nothing falls between the
//! two. Every entry it sends has the next sequence number of its stream; on a
//! gap (a dropped live event) it re-reads from the store. The store enforces
//! the membership window on every read; live entries are checked against the
//! subscriber's copy of the membership, which it re-reads after every commit it
//! delivers, before it looks at the next entry of that group. That matters
//! with several replicas: a commit accepted by another one changes who gets
//! what without this replica's hub knowing, so the subscriber itself follows a
//! group when it delivers the Welcome and unfollows it once removed.

use std::collections::HashMap;

use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId, InboxEntry, InboxItem, StreamRef};
use crate::error::{ApiError, ApiResult};
use crate::hub::{Ending, LiveEvent, SessionHash, SubscriberId, Subscription};
use crate::state::{AppState, Ds};
use crate::store::Membership;

/// Page size for backlog reads.
const PAGE: u32 = 256;
/// Largest page a Fetch may ask for.
pub const MAX_FETCH: u32 = 1000;

/// What a subscription sends: group entries and inbox entries, in order per stream.
#[derive(Clone, Debug)]
pub enum Delivery {
    Group(GroupEntry),
    Inbox(InboxEntry),
}

/// Per-group progress of one subscription.
struct GroupCursor {
    membership: Membership,
    last_sent: u64,
}

struct Subscriber {
    ds: AppState,
    client: ClientId,
    /// The session the stream was opened with; the stream ends with it.
    session: SessionHash,
    session_expires_at: SystemTime,
    /// This subscription in the hub, which follows the groups it delivers.
    id: SubscriberId,
    groups: HashMap<GroupId, GroupCursor>,
    inbox_sent: u64,
    out: mpsc::Sender<ApiResult<Delivery>>,
}

/// The receiving side closed: stop quietly.
struct Closed;

impl Subscriber {
    async fn send(&self, delivery: Delivery) -> Result<(), Closed> {
        self.out.send(Ok(delivery)).await.map_err(|_| Closed)
    }

    /// Sends every stored entry of the group after what was already sent.
    async fn catch_up_group(&mut self, group_id: &GroupId) -> Result<(), Closed> {
        loop {
            let Some(cursor) = self.groups.get(group_id) else {
                return Ok(());
            };
            let entries = match self
                .ds
                .store
                .read_group(&self.client, group_id, cursor.last_sent, PAGE)
                .await
            {
                Ok(entries) => entries,
                Err(error) => return self.fail(error.into()).await,
            };
            let full = entries.len() == PAGE as usize;
            let mut commits = false;
            for entry in entries {
                if let Some(cursor) = self.groups.get_mut(group_id) {
                    cursor.last_sent = cursor.last_sent.max(entry.seq);
                }
                commits |= entry.kind == EntryKind::Commit;
                self.send(Delivery::Group(entry)).await?;
            }
            // The page was read with the membership of its snapshot; a commit
            // in it may have changed that, and so whether live entries are
            // routed here. Read once more after the refresh: what the
            // subscriber stopped following up to its removal is in the store.
            if commits {
                self.refresh_membership(group_id).await?;
            } else if !full {
                return Ok(());
            }
        }
    }

    async fn catch_up_inbox(&mut self) -> Result<(), Closed> {
        loop {
            let entries = match self
                .ds
                .store
                .read_inbox(&self.client, self.inbox_sent, PAGE)
                .await
            {
                Ok(entries) => entries,
                Err(error) => return self.fail(error.into()).await,
            };
            let full = entries.len() == PAGE as usize;
            for entry in entries {
                self.inbox_sent = entry.seq;
                self.deliver_inbox(entry).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Sends an inbox entry; a Welcome also starts delivery of its group.
    async fn deliver_inbox(&mut self, entry: InboxEntry) -> Result<(), Closed> {
        let joined = match &entry.item {
            InboxItem::Welcome { group_id, .. } => Some(group_id.clone()),
            InboxItem::KeyPackagesLow { .. } => None,
        };
        self.send(Delivery::Inbox(entry)).await?;
        if let Some(group_id) = joined {
            // Follows the group (if still a member) before reading its
            // backlog, so nothing falls between the two.
            self.refresh_membership(&group_id).await?;
            self.catch_up_group(&group_id).await?;
        }
        Ok(())
    }

    /// Re-reads the client's membership of the group, and follows the group
    /// in the hub exactly while it is current: the commit that changed it may
    /// have been accepted by another replica, past this replica's hub.
    async fn refresh_membership(&mut self, group_id: &GroupId) -> Result<(), Closed> {
        let membership = match self.ds.store.membership(&self.client, group_id).await {
            Ok(membership) => membership,
            Err(error) => return self.fail(error.into()).await,
        };
        if membership.as_ref().is_some_and(Membership::is_current) {
            self.ds.hub.follow(self.id, group_id);
        } else {
            self.ds.hub.unfollow(self.id, group_id);
        }
        match membership {
            Some(membership) => {
                let last_sent = self
                    .groups
                    .get(group_id)
                    .map_or(membership.acked_seq.max(membership.joined_seq), |c| {
                        c.last_sent.max(membership.joined_seq)
                    });
                self.groups.insert(
                    group_id.clone(),
                    GroupCursor {
                        membership,
                        last_sent,
                    },
                );
            }
            None => {
                self.groups.remove(group_id);
            }
        }
        Ok(())
    }

    async fn on_group_entry(&mut self, entry: GroupEntry) -> Result<(), Closed> {
        if !self.groups.contains_key(&entry.group_id) {
            self.refresh_membership(&entry.group_id).await?;
        }
        let Some(cursor) = self.groups.get(&entry.group_id) else {
            return Ok(());
        };
        if entry.seq <= cursor.last_sent {
            return Ok(());
        }
        if cursor
            .membership
            .left_seq
            .is_some_and(|left| entry.seq > left)
        {
            // Queued before the removal was known here; never sent.
            return Ok(());
        }
        if entry.seq == cursor.last_sent + 1 && cursor.membership.sees(entry.seq) {
            let group_id = entry.group_id.clone();
            let commit = entry.kind == EntryKind::Commit;
            self.send(Delivery::Group(entry)).await?;
            if let Some(cursor) = self.groups.get_mut(&group_id) {
                cursor.last_sent += 1;
            }
            if commit {
                // Before the next entry of the group: the commit may have
                // removed this client, through whichever replica.
                self.refresh_membership(&group_id).await?;
                if self
                    .groups
                    .get(&group_id)
                    .is_some_and(|c| !c.membership.is_current())
                {
                    // Entries up to the removal that were not yet routed
                    // here are in the store.
                    self.catch_up_group(&group_id).await?;
                }
            }
            return Ok(());
        }
        // A gap, or an entry outside the known window: the store decides.
        let group_id = entry.group_id.clone();
        self.refresh_membership(&group_id).await?;
        self.catch_up_group(&group_id).await
    }

    async fn on_inbox_entry(&mut self, entry: InboxEntry) -> Result<(), Closed> {
        if entry.seq <= self.inbox_sent {
            return Ok(());
        }
        if entry.seq == self.inbox_sent + 1 {
            self.inbox_sent = entry.seq;
            return self.deliver_inbox(entry).await;
        }
        self.catch_up_inbox().await
    }

    async fn catch_up_all(&mut self) -> Result<(), Closed> {
        self.catch_up_inbox().await?;
        let groups: Vec<GroupId> = self.groups.keys().cloned().collect();
        for group_id in groups {
            self.catch_up_group(&group_id).await?;
        }
        Ok(())
    }

    async fn fail(&self, error: ApiError) -> Result<(), Closed> {
        let _ = self.out.send(Err(error)).await;
        Err(Closed)
    }

    /// After announcements may have been missed: ends the stream if its
    /// session was revoked meanwhile (through a replica whose announcement
    /// never arrived), else re-reads every stream from the store.
    async fn recheck_and_catch_up(&mut self) -> Result<(), Closed> {
        match self
            .ds
            .store
            .session(&self.session, SystemTime::now())
            .await
        {
            Ok(Some(_)) => self.catch_up_all().await,
            Ok(None) => self.fail(ApiError::Unauthenticated(SESSION_ENDED)).await,
            Err(error) => self.fail(error.into()).await,
        }
    }

    async fn run(mut self, mut subscription: Subscription) {
        let shutdown = self.ds.shutdown.clone();
        let remaining = self
            .session_expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let expiry = tokio::time::sleep(remaining);
        tokio::pin!(expiry);
        if self.catch_up_all().await.is_err() {
            return;
        }
        let signal = subscription.signal.clone();
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.out.closed() => return,
                () = &mut expiry => self.fail(ApiError::Unauthenticated("session expired")).await,
                event = subscription.next_event() => match event {
                    Some(LiveEvent::Group(entry)) => self.on_group_entry(entry).await,
                    Some(LiveEvent::Inbox(entry)) => self.on_inbox_entry(entry).await,
                    None => match subscription.ending() {
                        Some(Ending::SessionRevoked { .. }) => {
                            self.fail(ApiError::Unauthenticated("session revoked")).await
                        }
                        Some(Ending::ClientRemoved { .. }) => {
                            self.fail(ApiError::Unauthenticated("this client was removed")).await
                        }
                        Some(Ending::ClientRekeyed { .. }) => {
                            self.fail(ApiError::Unauthenticated(
                                "this client registered a new signature key",
                            ))
                            .await
                        }
                        None => return,
                    },
                },
                _ = signal.lagged() => self.recheck_and_catch_up().await,
            };
            if step.is_err() {
                return;
            }
        }
    }
}

/// Why a stream ended whose session disappeared from the store.
const SESSION_ENDED: &str = "session revoked or expired";

impl Ds {
    /// Starts a subscription for the caller: the backlog after its cursors,
    /// then live entries. It ends when the receiver is dropped or on
    /// shutdown, and with UNAUTHENTICATED when the caller's session expires
    /// or is revoked, or the client is removed.
    pub async fn subscribe(
        self: &AppState,
        caller: Caller,
        buffer: usize,
    ) -> ApiResult<mpsc::Receiver<ApiResult<Delivery>>> {
        let client = caller.client;
        let memberships = self.store.memberships(&client).await?;
        let subscription = self.hub.subscribe(
            &client,
            caller.session,
            memberships
                .iter()
                .filter(|m| m.is_current())
                .map(|m| m.group_id.clone()),
        );
        let inbox_sent = self.store.inbox_cursor(&client).await?;
        let groups = memberships
            .into_iter()
            .map(|m| {
                let last_sent = m.acked_seq.max(m.joined_seq);
                (
                    m.group_id.clone(),
                    GroupCursor {
                        membership: m,
                        last_sent,
                    },
                )
            })
            .collect();
        let (out, rx) = mpsc::channel(buffer);
        let subscriber = Subscriber {
            ds: self.clone(),
            client,
            session: caller.session,
            session_expires_at: caller.expires_at,
            id: subscription.id(),
            groups,
            inbox_sent,
            out,
        };
        tokio::spawn(subscriber.run(subscription));
        Ok(rx)
    }

    pub async fn fetch(
        &self,
        client: &ClientId,
        stream: &StreamRef,
        after_seq: u64,
        limit: u32,
    ) -> ApiResult<Vec<Delivery>> {
        let limit = if limit == 0 {
            PAGE
        } else {
            limit.min(MAX_FETCH)
        };
        Ok(match stream {
            StreamRef::Group(group_id) => self
                .read_group(client, group_id, after_seq, limit)
                .await?
                .into_iter()
                .map(Delivery::Group)
                .collect(),
            StreamRef::Inbox => self
                .store
                .read_inbox(client, after_seq, limit)
                .await?
                .into_iter()
                .map(Delivery::Inbox)
                .collect(),
        })
    }

    pub async fn ack(&self, client: &ClientId, stream: &StreamRef, seq: u64) -> ApiResult<()> {
        Ok(self.store.ack(client, stream, seq).await?)
    }
}
