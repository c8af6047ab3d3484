//! Live fan-out: pushes entries, as they are committed, to the subscribers of
//! a group or a client's inbox.
//!
//! The hub is only an accelerator; the store is the truth. Each subscriber has
//! a queue bounded in entries and in bytes. When it is full the event is dropped and the subscriber is
//! marked lagged, so a slow subscriber never holds up a publisher or another
//! subscriber: it re-reads what it missed from the store.
//!
//! Publishers call in sequence order per group (they hold the group's lock in
//! `crate::groups::GroupLocks`), and membership changes are applied under the
//! same lock right after the commit that makes them is published, so a removed
//! member is never pushed an entry after its removal.
//!
//! Entries appended through another replica are announced on the bus and
//! read from PostgreSQL (`crate::bus`), still in sequence order per group, but
//! the membership changes they make never pass through this hub. So each
//! subscriber keeps its own routing up to date: it [`Hub::follow`]s a group
//! when it delivers the Welcome to it, and re-reads its membership after each
//! commit it delivers, [`Hub::unfollow`]ing a group it was removed from (and
//! filtering what is already queued by that membership).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tokio::sync::{Notify, mpsc};

use crate::domain::{ClientId, GroupEntry, GroupId, InboxEntry};
use crate::sessions::SessionCache;

/// Events queued per subscriber before it counts as lagged, unless configured.
pub const DEFAULT_QUEUE_DEPTH: usize = 1024;
/// Bytes of entries queued per subscriber before it counts as lagged, unless
/// configured: with a 1 MiB message limit, 1,024 queued entries could
/// otherwise hold a gigabyte for one slow subscriber.
pub const DEFAULT_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// What an event costs a subscriber's budget besides its payload bytes.
const EVENT_OVERHEAD: usize = 128;

#[derive(Clone, Debug)]
pub enum LiveEvent {
    Group(GroupEntry),
    Inbox(InboxEntry),
}

impl LiveEvent {
    /// What the event holds of a subscriber's byte budget while queued.
    fn cost(&self) -> usize {
        EVENT_OVERHEAD
            + match self {
                LiveEvent::Group(entry) => entry.message.len(),
                LiveEvent::Inbox(entry) => match &entry.item {
                    crate::domain::InboxItem::Welcome {
                        welcome,
                        ratchet_tree,
                        ..
                    } => welcome.len() + ratchet_tree.len(),
                    crate::domain::InboxItem::KeyPackagesLow { .. } => 0,
                },
            }
    }
}

/// One live subscription, as the hub knows it.
pub type SubscriberId = u64;

/// The SHA-256 of the session token a subscription was opened with.
pub type SessionHash = [u8; 32];

/// Why live subscriptions must end now, on whichever replica they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The session was revoked: the subscriptions opened with it end.
    SessionRevoked {
        client: ClientId,
        session: SessionHash,
    },
    /// The client was deprovisioned: all its subscriptions end.
    ClientRemoved { client: ClientId },
    /// The client registered a new signature key (a device restored after
    /// losing its state): the old key's subscriptions end.
    ClientRekeyed { client: ClientId },
}

struct SubscriberHandle {
    client: ClientId,
    session: SessionHash,
    tx: mpsc::Sender<LiveEvent>,
    /// Bytes of the events queued for it (see [`LiveEvent::cost`]).
    queued_bytes: Arc<AtomicUsize>,
    signal: Arc<LagSignal>,
    ending: Arc<OnceLock<Ending>>,
}

/// Set when an event could not be queued; the subscriber then catches up.
#[derive(Default)]
pub struct LagSignal {
    lagged: AtomicBool,
    notify: Notify,
}

impl LagSignal {
    /// Waits until events were dropped, then clears the flag.
    pub async fn lagged(&self) {
        loop {
            let notified = self.notify.notified();
            if self.lagged.swap(false, Ordering::AcqRel) {
                return;
            }
            notified.await;
        }
    }

    fn raise(&self) {
        self.lagged.store(true, Ordering::Release);
        self.notify.notify_one();
    }
}

#[derive(Default)]
struct Registry {
    subscribers: HashMap<SubscriberId, SubscriberHandle>,
    by_client: HashMap<ClientId, HashSet<SubscriberId>>,
    by_group: HashMap<GroupId, HashSet<SubscriberId>>,
}

#[derive(Default)]
pub struct Hub {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    queue_depth: usize,
    queue_bytes: usize,
    /// Sessions cached for authentication: forgotten with the endings and
    /// missed announcements applied here.
    sessions: SessionCache,
}

/// A live subscription; unregisters itself when dropped.
pub struct Subscription {
    id: SubscriberId,
    hub: Arc<Hub>,
    events: mpsc::Receiver<LiveEvent>,
    queued_bytes: Arc<AtomicUsize>,
    pub signal: Arc<LagSignal>,
    ending: Arc<OnceLock<Ending>>,
}

impl Subscription {
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The next event queued for this subscription; `None` once the hub
    /// ended it (see [`Subscription::ending`]).
    pub async fn next_event(&mut self) -> Option<LiveEvent> {
        let event = self.events.recv().await?;
        self.queued_bytes.fetch_sub(event.cost(), Ordering::AcqRel);
        Some(event)
    }

    /// Why the hub ended this subscription (its events then end), if it did.
    pub fn ending(&self) -> Option<&Ending> {
        self.ending.get()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

impl Hub {
    pub fn new() -> Arc<Self> {
        Self::with_queue_limits(DEFAULT_QUEUE_DEPTH, DEFAULT_QUEUE_BYTES)
    }

    /// A hub that queues at most `queue_depth` (at least 1) events and
    /// `queue_bytes` of them per subscriber (one event always fits).
    pub fn with_queue_limits(queue_depth: usize, queue_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            queue_depth: queue_depth.max(1),
            queue_bytes,
            ..Self::default()
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscriber for the client's inbox and the given groups,
    /// opened with `session`. Call before reading the backlog, so nothing
    /// falls between the two.
    pub fn subscribe(
        self: &Arc<Self>,
        client: &ClientId,
        session: SessionHash,
        groups: impl IntoIterator<Item = GroupId>,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, events) = mpsc::channel(self.queue_depth);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let signal = Arc::new(LagSignal::default());
        let ending = Arc::new(OnceLock::new());
        let mut registry = self.write();
        registry.subscribers.insert(
            id,
            SubscriberHandle {
                client: client.clone(),
                session,
                tx,
                queued_bytes: queued_bytes.clone(),
                signal: signal.clone(),
                ending: ending.clone(),
            },
        );
        registry
            .by_client
            .entry(client.clone())
            .or_default()
            .insert(id);
        for group in groups {
            registry.by_group.entry(group).or_default().insert(id);
        }
        Subscription {
            id,
            hub: self.clone(),
            events,
            queued_bytes,
            signal,
            ending,
        }
    }

    /// Ends the live subscriptions in this process that `ending` names (a
    /// revoked session's, a deprovisioned device's): their events end and
    /// [`Subscription::ending`] says why.
    pub fn end(&self, ending: &Ending) {
        self.sessions.forget(ending);
        let (client, session) = match ending {
            Ending::SessionRevoked { client, session } => (client, Some(session)),
            Ending::ClientRemoved { client } | Ending::ClientRekeyed { client } => (client, None),
        };
        let ids: Vec<SubscriberId> = {
            let registry = self.read();
            registry
                .by_client
                .get(client)
                .into_iter()
                .flatten()
                .copied()
                .filter(|id| {
                    session.is_none_or(|session| {
                        registry
                            .subscribers
                            .get(id)
                            .is_some_and(|handle| &handle.session == session)
                    })
                })
                .collect()
        };
        for id in ids {
            self.unregister_with(id, Some(ending));
        }
    }

    fn unregister(&self, id: SubscriberId) {
        self.unregister_with(id, None);
    }

    /// Dropping the handle drops its sender: the subscription's receiver
    /// ends, after `ending` was recorded for it.
    fn unregister_with(&self, id: SubscriberId, ending: Option<&Ending>) {
        let mut registry = self.write();
        let Some(handle) = registry.subscribers.remove(&id) else {
            return;
        };
        if let Some(ending) = ending {
            let _ = handle.ending.set(ending.clone());
        }
        if let Some(ids) = registry.by_client.get_mut(&handle.client) {
            ids.remove(&id);
            if ids.is_empty() {
                registry.by_client.remove(&handle.client);
            }
        }
        registry.by_group.retain(|_, ids| {
            ids.remove(&id);
            !ids.is_empty()
        });
    }

    /// Starts pushing the group's entries to the client's live subscribers.
    pub fn join(&self, group: &GroupId, client: &ClientId) {
        let mut registry = self.write();
        let Some(ids) = registry.by_client.get(client).cloned() else {
            return;
        };
        registry
            .by_group
            .entry(group.clone())
            .or_default()
            .extend(ids);
    }

    /// Stops pushing the group's entries to the client's live subscribers.
    pub fn leave(&self, group: &GroupId, client: &ClientId) {
        let mut registry = self.write();
        let Some(ids) = registry.by_client.get(client).cloned() else {
            return;
        };
        if let Some(members) = registry.by_group.get_mut(group) {
            members.retain(|id| !ids.contains(id));
            if members.is_empty() {
                registry.by_group.remove(group);
            }
        }
    }

    /// Starts pushing the group's entries to one subscription (a subscriber
    /// that delivered a Welcome, whichever replica accepted the commit).
    pub fn follow(&self, id: SubscriberId, group: &GroupId) {
        let mut registry = self.write();
        if registry.subscribers.contains_key(&id) {
            registry
                .by_group
                .entry(group.clone())
                .or_default()
                .insert(id);
        }
    }

    /// Stops pushing the group's entries to one subscription.
    pub fn unfollow(&self, id: SubscriberId, group: &GroupId) {
        let mut registry = self.write();
        if let Some(ids) = registry.by_group.get_mut(group) {
            ids.remove(&id);
            if ids.is_empty() {
                registry.by_group.remove(group);
            }
        }
    }

    /// The sessions cached for authentication on this replica.
    pub fn sessions(&self) -> &SessionCache {
        &self.sessions
    }

    /// Whether some subscriber here follows the group; entries of other
    /// groups need not even be read.
    pub fn follows_group(&self, group: &GroupId) -> bool {
        self.read().by_group.contains_key(group)
    }

    /// Whether the client has a live subscription here.
    pub fn follows_inbox(&self, client: &ClientId) -> bool {
        self.read().by_client.contains_key(client)
    }

    /// Marks every subscriber lagged, so each re-reads its streams from the
    /// store: for when entries may have been missed (notifications from other
    /// replicas lost while their connection was down).
    pub fn mark_all_lagged(&self) {
        // Whatever was missed may have ended a session too.
        self.sessions.clear();
        for subscriber in self.read().subscribers.values() {
            subscriber.signal.raise();
        }
    }

    pub fn publish_group(&self, entry: &GroupEntry) {
        let registry = self.read();
        if let Some(ids) = registry.by_group.get(&entry.group_id) {
            for id in ids {
                self.offer(&registry, *id, LiveEvent::Group(entry.clone()));
            }
        }
    }

    pub fn publish_inbox(&self, client: &ClientId, entry: &InboxEntry) {
        let registry = self.read();
        if let Some(ids) = registry.by_client.get(client) {
            for id in ids {
                self.offer(&registry, *id, LiveEvent::Inbox(entry.clone()));
            }
        }
    }

    /// Queues the event for the subscriber if its queue has room in entries
    /// and in bytes; otherwise drops it and marks the subscriber lagged.
    fn offer(&self, registry: &Registry, id: SubscriberId, event: LiveEvent) {
        let Some(subscriber) = registry.subscribers.get(&id) else {
            return;
        };
        let cost = event.cost();
        let before = subscriber.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        let over_budget = before > 0 && before + cost > self.queue_bytes;
        if over_budget || subscriber.tx.try_send(event).is_err() {
            subscriber.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            subscriber.signal.raise();
        }
    }

    /// Events dropped because a subscriber's queue was full (then re-read from the store).
    pub fn dropped_events(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn subscriber_count(&self) -> usize {
        self.read().subscribers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EntryKind;

    const SESSION: SessionHash = [7; 32];

    fn entry(group: &GroupId, seq: u64) -> GroupEntry {
        GroupEntry {
            group_id: group.clone(),
            seq,
            epoch: 0,
            kind: EntryKind::Application,
            message: bytes::Bytes::from_static(b"ciphertext"),
        }
    }

    #[tokio::test]
    async fn subscriber_receives_only_its_groups_entries() {
        let hub = Hub::new();
        let alice = ClientId::new("alice", "phone").unwrap();
        let (g1, g2) = (GroupId::new(*b"g1").unwrap(), GroupId::new(*b"g2").unwrap());
        let mut sub = hub.subscribe(&alice, SESSION, [g1.clone()]);
        hub.publish_group(&entry(&g2, 1));
        hub.publish_group(&entry(&g1, 1));
        match sub.next_event().await {
            Some(LiveEvent::Group(e)) => assert_eq!(e.group_id, g1),
            other => panic!("unexpected {other:?}"),
        }
        assert!(sub.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn left_member_gets_no_further_entries_and_joined_member_does() {
        let hub = Hub::new();
        let bob = ClientId::new("bob", "laptop").unwrap();
        let group = GroupId::new(*b"g").unwrap();
        let mut sub = hub.subscribe(&bob, SESSION, []);
        hub.join(&group, &bob);
        hub.publish_group(&entry(&group, 1));
        hub.leave(&group, &bob);
        hub.publish_group(&entry(&group, 2));
        assert!(matches!(sub.next_event().await, Some(LiveEvent::Group(e)) if e.seq == 1));
        assert!(sub.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_subscriber_holds_at_most_its_byte_budget_and_gets_it_back_as_it_reads() {
        let hub = Hub::with_queue_limits(DEFAULT_QUEUE_DEPTH, 3 * 1024);
        let dave = ClientId::new("dave", "desk").unwrap();
        let group = GroupId::new(*b"g").unwrap();
        let mut sub = hub.subscribe(&dave, SESSION, [group.clone()]);
        let big = |seq| GroupEntry {
            message: bytes::Bytes::from(vec![0; 1000]),
            ..entry(&group, seq)
        };
        // Three entries of 1,000 bytes (and their overhead) exceed 3 KiB.
        for seq in 1..=3 {
            hub.publish_group(&big(seq));
        }
        assert_eq!(hub.dropped_events(), 1);
        sub.signal.lagged().await;
        for seq in 1..=2 {
            assert!(matches!(sub.next_event().await, Some(LiveEvent::Group(e)) if e.seq == seq));
        }
        // Read, they no longer count; one entry always fits, however large.
        hub.publish_group(&GroupEntry {
            message: bytes::Bytes::from(vec![0; 10_000]),
            ..entry(&group, 4)
        });
        hub.publish_group(&big(5));
        assert_eq!(hub.dropped_events(), 2);
        assert!(matches!(sub.next_event().await, Some(LiveEvent::Group(e)) if e.seq == 4));
        hub.publish_group(&big(6));
        assert!(matches!(sub.next_event().await, Some(LiveEvent::Group(e)) if e.seq == 6));
        assert_eq!(hub.dropped_events(), 2);
    }

    #[tokio::test]
    async fn full_queue_marks_subscriber_lagged_without_blocking_publisher() {
        let hub = Hub::new();
        let carol = ClientId::new("carol", "desk").unwrap();
        let group = GroupId::new(*b"g").unwrap();
        let sub = hub.subscribe(&carol, SESSION, [group.clone()]);
        for seq in 1..=(DEFAULT_QUEUE_DEPTH as u64 + 5) {
            hub.publish_group(&entry(&group, seq));
        }
        assert_eq!(hub.dropped_events(), 5);
        sub.signal.lagged().await;
    }

    #[tokio::test]
    async fn a_subscription_follows_and_unfollows_a_group_on_its_own() {
        let hub = Hub::new();
        let erin = ClientId::new("erin", "phone").unwrap();
        let group = GroupId::new(*b"g").unwrap();
        let mut phone = hub.subscribe(&erin, SESSION, []);
        let mut other = hub.subscribe(&erin, SESSION, []);
        assert!(!hub.follows_group(&group));
        hub.follow(phone.id(), &group);
        assert!(hub.follows_group(&group));
        hub.publish_group(&entry(&group, 1));
        hub.unfollow(phone.id(), &group);
        assert!(!hub.follows_group(&group));
        hub.publish_group(&entry(&group, 2));
        assert!(matches!(phone.next_event().await, Some(LiveEvent::Group(e)) if e.seq == 1));
        assert!(phone.events.try_recv().is_err());
        assert!(other.events.try_recv().is_err());
    }

    #[tokio::test]
    async fn mark_all_lagged_signals_every_subscriber() {
        let hub = Hub::new();
        let frank = ClientId::new("frank", "desk").unwrap();
        let grace = ClientId::new("grace", "desk").unwrap();
        let (a, b) = (
            hub.subscribe(&frank, SESSION, []),
            hub.subscribe(&grace, SESSION, []),
        );
        assert!(hub.follows_inbox(&frank) && hub.follows_inbox(&grace));
        hub.mark_all_lagged();
        a.signal.lagged().await;
        b.signal.lagged().await;
    }

    #[tokio::test]
    async fn ending_a_session_ends_only_its_subscriptions_and_says_why() {
        let hub = Hub::new();
        let ivan = ClientId::new("ivan", "phone").unwrap();
        let mut revoked = hub.subscribe(&ivan, SESSION, []);
        let mut kept = hub.subscribe(&ivan, [8; 32], []);
        let ending = Ending::SessionRevoked {
            client: ivan.clone(),
            session: SESSION,
        };
        hub.end(&ending);
        assert!(revoked.next_event().await.is_none());
        assert_eq!(revoked.ending(), Some(&ending));
        assert!(kept.events.try_recv().is_err() && kept.ending().is_none());
        let removed = Ending::ClientRemoved { client: ivan };
        hub.end(&removed);
        assert!(kept.events.recv().await.is_none());
        assert_eq!(kept.ending(), Some(&removed));
        assert_eq!(hub.subscriber_count(), 0);
    }

    #[tokio::test]
    async fn dropped_subscription_unregisters() {
        let hub = Hub::new();
        let dave = ClientId::new("dave", "tab").unwrap();
        let sub = hub.subscribe(&dave, SESSION, [GroupId::new(*b"g").unwrap()]);
        assert_eq!(hub.subscriber_count(), 1);
        drop(sub);
        assert_eq!(hub.subscriber_count(), 0);
        assert!(hub.read().by_group.is_empty());
    }
}
