//! A member that only counts: a session and a live stream, no MLS. It
//! checks the order of what arrives and counts it without decrypting, so the
//! simulator's own crypto does not cap what it can measure.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confide_client::Api;
use confide_proto::v1;
use tokio_util::sync::CancellationToken;

use super::directory::{Directory, Progress};
use super::report::Observed;

/// A counter acks a group's stream after this many new entries of it.
const COUNTER_ACK_EVERY: u64 = 64;
/// Pause after a failed live stream before subscribing again.
pub const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(50);

pub struct Counter {
    pub index: usize,
    pub api: Api,
    /// Its groups and the last entry of each as built: a counter stands
    /// for a device that was online while its groups were built, so it
    /// acknowledges the building commits (one Add per member added after
    /// it: a 10,000-member group's would be gigabytes) and its Welcomes
    /// before subscribing.
    pub built: Vec<(u32, u64)>,
}

/// What a counter has received, over every stream.
struct Received {
    /// The highest entry received of each group.
    last: HashMap<u32, u64>,
    /// Entries of each group received since it was last acknowledged.
    unacked: HashMap<u32, u64>,
}

/// What one stream delivered: a new stream starts again after the last
/// acknowledged entry, so entries up to `last` may come again once:
/// redeliveries, not duplicates. On one stream, an entry twice is a
/// duplicate.
#[derive(Default)]
struct OnStream {
    entries: HashSet<(u32, u64)>,
    last: HashMap<u32, u64>,
}

impl OnStream {
    /// Whether the entry is new and in order on this stream; counts it on
    /// `observed` if not.
    fn in_order(&mut self, group: u32, seq: u64, observed: &mut Observed) -> bool {
        if !self.entries.insert((group, seq)) {
            observed.duplicates += 1;
            return false;
        }
        let on_stream = self.last.insert(group, seq).unwrap_or(0);
        if seq < on_stream {
            observed.out_of_order += 1;
            self.last.insert(group, on_stream);
            return false;
        }
        true
    }
}

/// Why a counter stopped reading a stream.
enum Followed {
    Stopped,
    Ended,
}

impl Counter {
    pub async fn run(
        self,
        directory: Arc<Directory>,
        progress: Arc<Progress>,
        stop: CancellationToken,
    ) -> Observed {
        let mut observed = Observed {
            client: self.index,
            ..Observed::default()
        };
        let mut received = Received {
            last: self.acknowledge_built(&directory, &progress).await,
            unacked: HashMap::new(),
        };
        while !stop.is_cancelled() {
            let request = self.api.request(v1::SubscribeRequest {});
            let stream = match self.api.delivery().subscribe(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::debug!(%status, "subscribing failed");
                    progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                    continue;
                }
            };
            let seen = (&*directory, &*progress, &mut observed, &mut received);
            if let Followed::Stopped = self.follow(stream, seen, &stop).await {
                return observed;
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
        observed
    }

    /// Acknowledges each group as built, and the Welcomes, one per group it
    /// was added to: each comes with the group's ratchet tree (megabytes at
    /// 10,000 members), which a counter does not use. Returns the last entry
    /// of each group.
    async fn acknowledge_built(
        &self,
        directory: &Directory,
        progress: &Progress,
    ) -> HashMap<u32, u64> {
        let mut last = HashMap::new();
        for &(group, seq) in &self.built {
            let group_id = directory.group_ids[group as usize].clone();
            let selector = v1::StreamSelector {
                stream: Some(v1::stream_selector::Stream::GroupId(group_id.into())),
            };
            if seq > 0 && self.api.ack(selector, seq).await.is_err() {
                progress.resubscribes.fetch_add(1, Ordering::Relaxed);
            }
            last.insert(group, seq);
        }
        let welcomes = self.built.len() as u64;
        let inbox = v1::StreamSelector {
            stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
        };
        if welcomes > 0 && self.api.ack(inbox, welcomes).await.is_err() {
            progress.resubscribes.fetch_add(1, Ordering::Relaxed);
        }
        last
    }

    /// Reads one live stream until it ends or `stop`, counting what arrives.
    async fn follow(
        &self,
        mut stream: tonic::Streaming<v1::Envelope>,
        (directory, progress, observed, received): (
            &Directory,
            &Progress,
            &mut Observed,
            &mut Received,
        ),
        stop: &CancellationToken,
    ) -> Followed {
        let mut on_stream = OnStream::default();
        loop {
            let envelope = tokio::select! {
                _ = stop.cancelled() => return Followed::Stopped,
                message = stream.message() => message,
            };
            let entry = match envelope {
                Ok(Some(v1::Envelope {
                    entry: Some(v1::envelope::Entry::Group(entry)),
                })) => entry,
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => {
                    progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                    return Followed::Ended;
                }
            };
            let Some(&group) = directory.index_of.get(entry.group_id.as_ref()) else {
                continue;
            };
            if !on_stream.in_order(group, entry.seq, observed) {
                continue;
            }
            let previous = received.last.get(&group).copied().unwrap_or(0);
            if entry.seq <= previous {
                // Redelivered by a new stream: seen already.
                continue;
            }
            if previous != 0 && entry.seq > previous + 1 {
                observed.jumps.push((group, previous, entry.seq));
            }
            received.last.insert(group, entry.seq);
            if entry.kind == v1::EntryKind::Application as i32 {
                observed.arrivals.push((group, entry.seq, Instant::now()));
                progress.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            self.acknowledge_now_and_then(group, &entry, received, progress)
                .await;
        }
    }

    /// Acknowledges a group's stream every [`COUNTER_ACK_EVERY`] new entries.
    async fn acknowledge_now_and_then(
        &self,
        group: u32,
        entry: &v1::GroupEntry,
        received: &mut Received,
        progress: &Progress,
    ) {
        let pending = received.unacked.entry(group).or_default();
        *pending += 1;
        if *pending < COUNTER_ACK_EVERY {
            return;
        }
        *pending = 0;
        let selector = v1::StreamSelector {
            stream: Some(v1::stream_selector::Stream::GroupId(entry.group_id.clone())),
        };
        if self.api.ack(selector, entry.seq).await.is_err() {
            progress.resubscribes.fetch_add(1, Ordering::Relaxed);
        }
    }
}
