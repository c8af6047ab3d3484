//! Live delivery across replicas. Several DS replicas may share one database;
//! each pushes what it commits to its own live subscribers through its
//! [`Hub`], and learns about what the others commit from a bus (`bus: nats`,
//! [`nats`]). One replica alone needs none (`bus: none`).
//!
//! Only ids travel on the bus (a group id and seq, an inbox's client and
//! seq, an ended session or client; [`wire`]); the entries themselves are
//! always read from PostgreSQL ([`relay`]). Nothing is announced inside a
//! write transaction: [`Ds::publish_group`] and [`Ds::publish_inbox`], the
//! one place every append reaches live delivery, run after the commit, under
//! the group's lock, so a replica announces a group's entries in sequence
//! order, as it pushes them to its own hub.
//!
//! The bus is a wake-up, not durability: announcing never fails a call or
//! waits (a bounded queue; what does not fit is dropped and counted, and the
//! other replicas are told to re-read), and a replica marks every subscriber
//! lagged, so each re-reads its streams from the store, whenever it may have
//! missed an announcement: until its first subscription is up, after its
//! connection to NATS came back, when it fell behind, and every
//! [`OUTAGE_REREAD`] while NATS cannot be reached. A NATS outage delays live
//! delivery across replicas; it never loses an entry.

pub(crate) mod nats;
mod relay;
/// NATS for tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod wire;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::domain::{ClientId, GroupEntry, GroupId, InboxEntry};
use crate::hub::{Ending, Hub};
use crate::state::Ds;

/// Notices waiting to be published. When full, further ones are dropped
/// (counted in `confide_bus_dropped_total`) and the other replicas are told to
/// re-read instead: a slow or unreachable NATS never holds up a send.
const PUBLISH_QUEUE: usize = 4096;
/// Notices sent in one bus message, or read from the store together.
const BATCH: usize = 256;
/// While NATS cannot be reached, how often every subscriber re-reads the
/// store: the longest an outage delays what other replicas commit.
pub const OUTAGE_REREAD: Duration = Duration::from_secs(5);

/// A row appended by some replica.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Appended {
    Group { group_id: GroupId, seq: u64 },
    Inbox { client: ClientId, seq: u64 },
}

/// What one replica tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Notice {
    Appended(Appended),
    /// Live streams to end.
    Ended(Ending),
    /// The sender may have lost notices (its queue overflowed, its connection
    /// dropped): every subscriber re-reads.
    Lagged,
}

/// This replica's side of the bus: its id, which its messages carry so it
/// skips them when they come back, and the queue of what it announces.
pub struct Bus {
    replica: String,
    queue: mpsc::Sender<Notice>,
    /// The queue's receiving end, until the publisher takes it.
    pending: Mutex<Option<mpsc::Receiver<Notice>>>,
    /// Set when a notice was dropped: the publisher then sends [`Notice::Lagged`].
    lost: AtomicBool,
    dropped: AtomicU64,
}

impl Bus {
    pub fn new() -> Self {
        let (queue, pending) = mpsc::channel(PUBLISH_QUEUE);
        Self {
            replica: uuid::Uuid::new_v4().to_string(),
            queue,
            pending: Mutex::new(Some(pending)),
            lost: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queues `notice` for the other replicas, never waiting.
    fn announce(&self, notice: Notice) {
        match self.queue.try_send(notice) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("confide_bus_dropped_total").increment(1);
                self.lost.store(true, Ordering::Release);
            }
        }
    }

    /// Notices dropped because the publish queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn take_queue(&self) -> Option<mpsc::Receiver<Notice>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

/// [`Ds::publish_group`], for what publishes without the whole state (the
/// group commit of `crate::appender`).
pub(crate) fn publish_group(hub: &Hub, bus: Option<&Bus>, entry: &GroupEntry) {
    hub.publish_group(entry);
    if let Some(bus) = bus {
        bus.announce(Notice::Appended(Appended::Group {
            group_id: entry.group_id.clone(),
            seq: entry.seq,
        }));
    }
}

impl Ds {
    /// Pushes a group entry this replica committed to its own live
    /// subscribers and announces it to the other replicas. Called after the
    /// commit, under the group's lock: in sequence order per group.
    pub(crate) fn publish_group(&self, entry: &GroupEntry) {
        publish_group(&self.hub, self.bus.as_deref(), entry);
    }

    /// Pushes an inbox entry this replica committed to the client's live
    /// subscribers here and announces it to the other replicas.
    pub(crate) fn publish_inbox(&self, client: &ClientId, entry: &InboxEntry) {
        self.hub.publish_inbox(client, entry);
        if let Some(bus) = &self.bus {
            bus.announce(Notice::Appended(Appended::Inbox {
                client: client.clone(),
                seq: entry.seq,
            }));
        }
    }

    /// Ends the live streams `ending` names here at once, and announces it
    /// to the other replicas, which end theirs. One that misses it ends them
    /// when its subscribers next re-read (they re-check their session), or
    /// when the session expires.
    pub fn end_streams(&self, ending: Ending) {
        self.hub.end(&ending);
        if let Some(bus) = &self.bus {
            bus.announce(Notice::Ended(ending));
        }
    }
}

/// What a received message asks of this replica's hub, `appended` aside.
fn apply(hub: &Hub, notice: Notice, appended: &mut impl FnMut(Appended)) {
    match notice {
        Notice::Appended(entry) => appended(entry),
        Notice::Ended(ending) => hub.end(&ending),
        Notice::Lagged => hub.mark_all_lagged(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcing_never_waits_and_counts_what_did_not_fit() {
        let bus = Bus::new();
        // Nobody publishes: the queue fills, and one more is dropped.
        for _ in 0..=PUBLISH_QUEUE {
            bus.announce(Notice::Lagged);
        }
        assert_eq!(bus.dropped(), 1);
        // The publisher then tells the others to re-read.
        assert!(bus.lost.load(Ordering::Acquire));
    }
}
