//! Group commit of application messages: concurrent sends, to any groups,
//! share one store transaction ([`Store::append_batch`]), and each caller is
//! answered after that transaction commits.
//!
//! There is no timer. A send that finds fewer than its limit of batches
//! running (half the database connections, see [`Appender::new`]) starts one
//! at once, so an idle sender waits for nothing but its
//! own commit; while batches are running, the sends that arrive queue up and
//! go together in the next one, so under load a transaction carries many
//! messages and the database's per-commit cost (a WAL flush) is shared. A
//! batch is cut at [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`].
//!
//! Each batch publishes its new entries to the live subscribers after its
//! commit (and announces them to the other replicas), in the order of their
//! sequence numbers, before it answers its callers. Two batches holding messages of one group commit one after the
//! other (the group's row lock), and may rarely publish out of that order; a
//! subscriber that sees a gap re-reads from the store (`crate::delivery`), so
//! that costs a read, never an entry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::bus::{self, Bus};
use crate::hub::Hub;
use crate::store::{AppendOutcome, NewMessage, Store, StoreError, StoreResult};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 256;
/// Most message bytes in one batch (a batch always takes at least one).
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<StoreResult<AppendOutcome>>,
}

/// Appends members' application messages in batches.
pub struct Appender {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    /// Where the other replicas hear of the entries (none for one replica).
    bus: Option<Arc<Bus>>,
    queue: Mutex<VecDeque<Pending>>,
    running: Arc<Semaphore>,
}

impl Appender {
    /// At most `max_in_flight` (at least 1) batches run at once, each on its
    /// own database connection: while one waits for its commit, the next is
    /// already being filled and sent.
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Option<Arc<Bus>>,
        max_in_flight: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            hub,
            bus,
            queue: Mutex::new(VecDeque::new()),
            running: Arc::new(Semaphore::new(max_in_flight.max(1))),
        })
    }

    /// Appends `message` as [`Store::append`] does, once the batch it went
    /// into has committed and its entries were published live. A caller
    /// that stops waiting does not stop the batch.
    pub async fn append(self: &Arc<Self>, message: NewMessage) -> StoreResult<AppendOutcome> {
        let (reply, answer) = oneshot::channel();
        self.lock().push_back(Pending { message, reply });
        self.start_batches();
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("the append batch was abandoned".into())))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Pending>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a task that runs batches until the queue is empty, unless
    /// as many as allowed are running already (one of them takes the queue).
    fn start_batches(self: &Arc<Self>) {
        if let Ok(permit) = self.running.clone().try_acquire_owned() {
            let appender = self.clone();
            tokio::spawn(appender.run(permit));
        }
    }

    async fn run(self: Arc<Self>, permit: OwnedSemaphorePermit) {
        loop {
            let batch = self.take_batch();
            if batch.is_empty() {
                break;
            }
            self.commit(batch).await;
        }
        drop(permit);
        // A send queued after the last take, while every permit was held,
        // started no batch of its own.
        if !self.lock().is_empty() {
            self.start_batches();
        }
    }

    fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.lock();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = queue.front() {
            let size = next.message.message.len();
            if batch.len() == MAX_BATCH || (!batch.is_empty() && bytes + size > MAX_BATCH_BYTES) {
                break;
            }
            bytes += size;
            batch.extend(queue.pop_front());
        }
        batch
    }

    async fn commit(&self, batch: Vec<Pending>) {
        metrics::histogram!("confide_append_batch_messages").record(batch.len() as f64);
        let (messages, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|pending| (pending.message, pending.reply))
            .unzip();
        let outcomes = self.store.append_batch(messages).await;
        // In the batch's order, which within a group is seq order.
        for outcome in &outcomes {
            if let Ok(AppendOutcome::Appended(entry)) = outcome {
                bus::publish_group(&self.hub, self.bus.as_deref(), entry);
            }
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }
}
