//! The virtual clients while messages flow. A full member is a real
//! [`Client`]: it sends what it is told to and decrypts and checks
//! everything it receives. A counter holds only a session and a live stream:
//! it checks the order of what arrives and counts it without decrypting, so
//! the simulator's own crypto does not cap what it can measure.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use confide_proto::v1;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{self, Header};
use super::report::{FinalView, Observed, Sent, micros};
use crate::{Api, Client, ClientError, ClientId, Event, GroupId};

/// A counter acks a group's stream after this many new entries of it.
const COUNTER_ACK_EVERY: u64 = 64;
/// Pause after a failed live stream before subscribing again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(50);

/// Counters shared with the coordinator, for progress and for knowing when
/// everything arrived.
#[derive(Debug, Default)]
pub struct Progress {
    pub joined: AtomicU64,
    pub acknowledged: AtomicU64,
    pub deliveries: AtomicU64,
    /// Deliveries every member is owed so far: an acknowledged message in a
    /// group of n members is owed to n - 1.
    pub owed: AtomicU64,
    pub errors: AtomicU64,
}

/// One message to send.
#[derive(Debug)]
pub struct Order {
    pub group: u32,
    pub number: u64,
    /// When the open-loop arrival process wanted it sent.
    pub due: Instant,
}

/// What the actors know about the groups: ids, sizes, and names of clients.
pub struct Directory {
    pub group_ids: Vec<GroupId>,
    pub members: Vec<usize>,
    pub index_of: HashMap<GroupId, u32>,
    pub client_ids: Vec<ClientId>,
    pub message_size: usize,
}

/// The label a failed send is counted under.
fn error_label(error: &ClientError) -> String {
    match error {
        ClientError::Rpc(status) => format!("{:?}", status.code()),
        ClientError::Transport(_) => "transport".into(),
        ClientError::TooManyRetries(_) => "too many retries".into(),
        other => other.to_string(),
    }
}

pub struct FullMember {
    pub client: Client,
    pub index: u32,
    pub orders: Option<mpsc::UnboundedReceiver<Order>>,
}

async fn next_order(orders: &mut Option<mpsc::UnboundedReceiver<Order>>) -> Option<Order> {
    match orders {
        Some(orders) => orders.recv().await,
        None => std::future::pending().await,
    }
}

impl FullMember {
    /// Sends and receives until `stop`; returns what it did and saw and its
    /// final view of each of its groups.
    pub async fn run(
        mut self,
        directory: Arc<Directory>,
        progress: Arc<Progress>,
        stop: CancellationToken,
    ) -> (Sent, Observed, Vec<FinalView>) {
        let mut sent = Sent::default();
        let mut observed = Observed::default();
        let mut last: HashMap<u32, u64> = HashMap::new();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                order = next_order(&mut self.orders) => match order {
                    Some(order) => {
                        let group_id = &directory.group_ids[order.group as usize];
                        let header = Header { group: order.group, sender: self.index, number: order.number };
                        let body = body::encode(&header, directory.message_size);
                        match self.client.send(group_id, &body).await {
                            Ok(seq) => {
                                sent.acked.push((order.group, seq, order.due));
                                let _ = sent.ack_latency.record(micros(order.due.elapsed()));
                                progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                                let owed = directory.members[order.group as usize].saturating_sub(1);
                                progress.owed.fetch_add(owed as u64, Ordering::Relaxed);
                            }
                            Err(error) => {
                                *sent.errors.entry(error_label(&error)).or_default() += 1;
                                progress.errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    None => self.orders = None,
                },
                event = self.client.next_event() => match event {
                    Ok(event) => observe(&event, &directory, &progress, &mut observed, &mut last),
                    Err(error) => {
                        tracing::debug!(client = %self.client.id(), %error, "live stream failed; subscribing again");
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                    }
                },
            }
        }
        let views = directory
            .group_ids
            .iter()
            .enumerate()
            .filter_map(|(group, id)| {
                Some(FinalView {
                    group: group as u32,
                    epoch: self.client.epoch(id).ok()?,
                    authenticator: self.client.epoch_authenticator(id).ok()?,
                })
            })
            .collect();
        (sent, observed, views)
    }
}

/// Records one event of a full member, checking each message's plaintext.
fn observe(
    event: &Event,
    directory: &Directory,
    progress: &Progress,
    observed: &mut Observed,
    last: &mut HashMap<u32, u64>,
) {
    match event {
        Event::Message {
            group,
            seq,
            sender,
            body,
        } => {
            let Some(&index) = directory.index_of.get(group) else {
                observed.plaintext_mismatches += 1;
                return;
            };
            observed.arrivals.push((index, *seq, Instant::now()));
            progress.deliveries.fetch_add(1, Ordering::Relaxed);
            let previous = last.insert(index, *seq).unwrap_or(0);
            if *seq <= previous {
                observed.out_of_order += 1;
            }
            let genuine = body::decode(body, directory.message_size).is_some_and(|header| {
                header.group == index
                    && directory.client_ids.get(header.sender as usize) == Some(sender)
            });
            if !genuine {
                observed.plaintext_mismatches += 1;
            }
        }
        Event::Joined { .. } => {
            progress.joined.fetch_add(1, Ordering::Relaxed);
        }
        Event::Gap { after, next, .. } => observed.gaps += next - after - 1,
        Event::Undecryptable { .. } => observed.undecryptable += 1,
        _ => {}
    }
}

/// A member that only counts: a session and a live stream, no MLS.
pub struct Counter {
    pub api: Api,
}

impl Counter {
    pub async fn run(
        self,
        directory: Arc<Directory>,
        progress: Arc<Progress>,
        stop: CancellationToken,
    ) -> Observed {
        let mut observed = Observed::default();
        let mut last: HashMap<u32, u64> = HashMap::new();
        let mut seen: HashSet<(u32, u64)> = HashSet::new();
        let mut unacked: HashMap<u32, u64> = HashMap::new();
        while !stop.is_cancelled() {
            let request = self.api.request(v1::SubscribeRequest {});
            let mut stream = match self.api.delivery().subscribe(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::debug!(%status, "subscribing failed");
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                    continue;
                }
            };
            loop {
                let envelope = tokio::select! {
                    _ = stop.cancelled() => return observed,
                    message = stream.message() => message,
                };
                let entry = match envelope {
                    Ok(Some(v1::Envelope {
                        entry: Some(v1::envelope::Entry::Group(entry)),
                    })) => entry,
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let Some(&group) = directory.index_of.get(entry.group_id.as_ref()) else {
                    continue;
                };
                let previous = last.get(&group).copied().unwrap_or(0);
                if !seen.insert((group, entry.seq)) {
                    observed.duplicates += 1;
                    continue;
                }
                if entry.seq < previous {
                    observed.out_of_order += 1;
                } else {
                    if previous != 0 && entry.seq > previous + 1 {
                        observed.gaps += entry.seq - previous - 1;
                    }
                    last.insert(group, entry.seq);
                }
                if entry.kind == v1::EntryKind::Application as i32 {
                    observed.arrivals.push((group, entry.seq, Instant::now()));
                    progress.deliveries.fetch_add(1, Ordering::Relaxed);
                }
                let pending = unacked.entry(group).or_default();
                *pending += 1;
                if *pending >= COUNTER_ACK_EVERY {
                    *pending = 0;
                    let selector = v1::StreamSelector {
                        stream: Some(v1::stream_selector::Stream::GroupId(entry.group_id.clone())),
                    };
                    if self.api.ack(selector, entry.seq).await.is_err() {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
        observed
    }
}
