//! The virtual clients while messages flow. A full member is a real
//! [`Client`]: it sends and commits what it is told to, and decrypts and
//! checks everything it receives. A counter holds only a session and a live
//! stream: it checks the order of what arrives and counts it without
//! decrypting, so the simulator's own crypto does not cap what it can measure.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confide_proto::v1;
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{self, Header};
use super::report::{Acked, FinalView, Observed, Sent, micros};
use confide_client::{Api, Client, ClientError, ClientId, Event, GroupId, StateLocation};

/// A counter acks a group's stream after this many new entries of it.
const COUNTER_ACK_EVERY: u64 = 64;
/// Pause after a failed live stream before subscribing again.
const RESUBSCRIBE_AFTER: Duration = Duration::from_millis(50);
/// How long a call without a verdict (the DS restarting) is retried, and the
/// pause between tries.
const IN_DOUBT_RETRY_FOR: Duration = Duration::from_secs(60);
const IN_DOUBT_PAUSE: Duration = Duration::from_millis(100);
/// How long a restarted member stays down.
const DOWNTIME: std::ops::Range<u64> = 100..1000;

/// Counters shared with the coordinator, for progress and for knowing when
/// everything arrived.
#[derive(Debug, Default)]
pub struct Progress {
    pub joined: AtomicU64,
    pub acknowledged: AtomicU64,
    pub deliveries: AtomicU64,
    /// Deliveries owed so far: an acknowledged message in a group of n
    /// members is owed to n - 1 (the report recounts this exactly from the
    /// membership log).
    pub owed: AtomicU64,
    /// Sends given up on.
    pub failed: AtomicU64,
    /// Commits and restarts ordered and not yet done.
    pub pending_changes: AtomicU64,
    /// Live streams that broke and were opened again.
    pub resubscribes: AtomicU64,
}

/// A membership change a full member commits.
#[derive(Clone, Copy, Debug)]
pub enum Churn {
    SelfUpdate,
    /// Add every device of this user.
    Add(usize),
    /// Remove every device of this user.
    Remove(usize),
}

/// What the coordinator tells a full member to do.
#[derive(Debug)]
pub enum Order {
    Send {
        group: u32,
        number: u64,
        /// When the open-loop arrival process wanted it sent.
        due: Instant,
    },
    Commit {
        group: u32,
        churn: Churn,
        due: Instant,
    },
    /// Stop abruptly and start again from the state file.
    Restart,
}

/// Who is in a group, and every change to that since it was built.
#[derive(Clone, Debug)]
pub struct Membership {
    /// Which clients decrypt (full members); the others only count.
    pub decrypts: Arc<[bool]>,
    pub initial: Vec<usize>,
    pub clients: BTreeSet<usize>,
    pub changes: Vec<MembershipChange>,
}

/// Clients added or removed by the commit at `seq` of a group's log, which
/// began `epoch`.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub seq: u64,
    pub epoch: u64,
    pub clients: Vec<usize>,
    pub added: bool,
}

impl Membership {
    pub fn new(clients: &[usize], decrypts: Arc<[bool]>) -> Self {
        Self {
            decrypts,
            initial: clients.to_vec(),
            clients: clients.iter().copied().collect(),
            changes: Vec::new(),
        }
    }

    /// How many members are owed a message of `epoch` appended at `seq`:
    /// the members then, but full members added in a later epoch (it was
    /// not encrypted for them, so they skip it; a counter counts what the DS
    /// sends it).
    pub fn size_at(&self, seq: u64, epoch: u64) -> usize {
        match self.changes.is_empty() {
            true => self.initial.len(),
            false => self.members_at(seq, epoch).len(),
        }
    }

    /// The members owed a message of `epoch` appended at `seq`.
    pub fn members_at(&self, seq: u64, epoch: u64) -> BTreeSet<usize> {
        let mut members: BTreeSet<usize> = self.initial.iter().copied().collect();
        for change in self.changes.iter().filter(|c| c.seq < seq) {
            for client in &change.clients {
                if !change.added {
                    members.remove(client);
                } else if change.epoch <= epoch || !self.decrypts[*client] {
                    members.insert(*client);
                }
            }
        }
        members
    }

    /// Whether `client` was removed by a commit in `from..to` of the log, so
    /// entries up to its return are not its to receive.
    pub fn removed_between(&self, client: usize, from: u64, to: u64) -> bool {
        self.changes
            .iter()
            .any(|c| !c.added && (from..to).contains(&c.seq) && c.clients.contains(&client))
    }

    fn apply(&mut self, seq: u64, epoch: u64, clients: Vec<usize>, added: bool) {
        for client in &clients {
            if added {
                self.clients.insert(*client);
            } else {
                self.clients.remove(client);
            }
        }
        self.changes.push(MembershipChange {
            seq,
            epoch,
            clients,
            added,
        });
    }
}

/// What the actors know about the groups and clients.
pub struct Directory {
    pub group_ids: Vec<GroupId>,
    pub index_of: HashMap<GroupId, u32>,
    pub client_ids: Vec<ClientId>,
    pub client_index: HashMap<ClientId, usize>,
    /// Each user's name, by user index.
    pub user_names: Vec<String>,
    pub devices_per_user: usize,
    pub message_size: usize,
    pub dropped_responses: f64,
    pub membership: Vec<Mutex<Membership>>,
}

impl Directory {
    fn membership(&self, group: u32) -> std::sync::MutexGuard<'_, Membership> {
        self.membership[group as usize]
            .lock()
            .expect("no actor panics holding the membership")
    }
}

/// The label a failure is counted under.
fn error_label(error: &ClientError) -> String {
    match error {
        ClientError::Rpc(status) => format!("{:?}", status.code()),
        ClientError::Transport(_) => "transport".into(),
        ClientError::TooManyRetries(_) => "too many retries".into(),
        other => other.to_string(),
    }
}

/// Retries `call` while the DS gives no verdict (it is restarting, the
/// connection broke), counting each retry.
macro_rules! until_answered {
    ($retries:expr, $call:expr) => {{
        let deadline = Instant::now() + IN_DOUBT_RETRY_FOR;
        loop {
            match $call {
                Err(error) if error.is_in_doubt() && Instant::now() < deadline => {
                    $retries += 1;
                    tokio::time::sleep(IN_DOUBT_PAUSE).await;
                }
                other => break other,
            }
        }
    }};
}

pub struct FullMember {
    pub index: u32,
    pub orders: Option<mpsc::UnboundedReceiver<Order>>,
    /// Where its state lives; a restart needs a file.
    pub state: StateLocation,
    pub rng: StdRng,
}

async fn next_order(orders: &mut Option<mpsc::UnboundedReceiver<Order>>) -> Option<Order> {
    match orders {
        Some(orders) => orders.recv().await,
        None => std::future::pending().await,
    }
}

/// Why a full member's serving loop returned.
enum Outcome {
    Stopped,
    Restart,
}

impl FullMember {
    /// Sends, commits and receives until `stop`; returns what it did and saw
    /// and its final view of each of its groups.
    pub async fn run(
        mut self,
        mut client: Client,
        directory: Arc<Directory>,
        progress: Arc<Progress>,
        stop: CancellationToken,
    ) -> (Sent, Observed, Vec<FinalView>) {
        let mut sent = Sent {
            client: self.index as usize,
            ..Sent::default()
        };
        let mut observed = Observed {
            client: self.index as usize,
            decrypts: true,
            ..Observed::default()
        };
        let mut last: HashMap<u32, u64> = HashMap::new();
        loop {
            let outcome = self
                .serve(
                    &mut client,
                    &directory,
                    &progress,
                    &stop,
                    &mut sent,
                    &mut observed,
                    &mut last,
                )
                .await;
            if let Outcome::Stopped = outcome {
                // Read the log to its end, so the final view is the group's
                // latest epoch unless this member could not follow it.
                let seen = (&*directory, &*progress, &mut observed, &mut last);
                catch_up(&mut client, seen, &mut sent, "final sync").await;
                break;
            }
            // A kill: the process's memory (MLS groups, the live stream) is
            // gone; only the state file is left.
            let api = client.api().clone();
            drop(client);
            let down = self.rng.random_range(DOWNTIME);
            tokio::time::sleep(Duration::from_millis(down)).await;
            let reopened = until_answered!(
                sent.send_retries,
                Client::open(api.clone(), &self.state).await
            );
            client = match reopened {
                Ok(client) => client,
                Err(error) => {
                    *sent
                        .errors
                        .entry(format!("restart: {}", error_label(&error)))
                        .or_default() += 1;
                    progress.pending_changes.fetch_sub(1, Ordering::Relaxed);
                    return (sent, observed, Vec::new());
                }
            };
            let seen = (&*directory, &*progress, &mut observed, &mut last);
            catch_up(&mut client, seen, &mut sent, "sync after restart").await;
            sent.restarts += 1;
            tracing::debug!(client = self.index, "restarted from its state");
            progress.pending_changes.fetch_sub(1, Ordering::Relaxed);
        }
        let views = directory
            .group_ids
            .iter()
            .enumerate()
            .filter_map(|(group, id)| {
                Some(FinalView {
                    group: group as u32,
                    epoch: client.epoch(id).ok()?,
                    authenticator: client.epoch_authenticator(id).ok()?,
                })
            })
            .collect();
        (sent, observed, views)
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &mut self,
        client: &mut Client,
        directory: &Directory,
        progress: &Progress,
        stop: &CancellationToken,
        sent: &mut Sent,
        observed: &mut Observed,
        last: &mut HashMap<u32, u64>,
    ) -> Outcome {
        loop {
            // Unbiased: a member with a long queue of orders still reads
            // what arrives.
            tokio::select! {
                _ = stop.cancelled() => return Outcome::Stopped,
                order = next_order(&mut self.orders) => match order {
                    Some(Order::Send { group, number, due }) => {
                        self.send(client, directory, progress, sent, group, number, due).await;
                    }
                    Some(Order::Commit { group, churn, due }) => {
                        commit(client, directory, sent, group, churn, due).await;
                        progress.pending_changes.fetch_sub(1, Ordering::Relaxed);
                    }
                    Some(Order::Restart) => return Outcome::Restart,
                    None => self.orders = None,
                },
                event = client.next_event() => match event {
                    Ok(event) => observe(&event, directory, progress, observed, last),
                    Err(error) => {
                        tracing::debug!(client = %client.id(), %error, "live stream failed; catching up and subscribing again");
                        progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                        let seen = (directory, progress, &mut *observed, &mut *last);
                        catch_up(client, seen, sent, "sync after a broken stream").await;
                    }
                },
            }
        }
    }

    /// Sends one message, retrying with the same idempotency key while the DS
    /// gives no verdict; then, for a share of sends, throws the answer away
    /// and sends again with that key, which must return the same number.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &mut self,
        client: &mut Client,
        directory: &Directory,
        progress: &Progress,
        sent: &mut Sent,
        group: u32,
        number: u64,
        due: Instant,
    ) {
        let group_id = &directory.group_ids[group as usize];
        let header = Header {
            group,
            sender: self.index,
            number,
        };
        let body = body::encode(&header, directory.message_size);
        let mut message_id = [0u8; 16];
        self.rng.fill_bytes(&mut message_id);
        let started = Instant::now();
        let answered = until_answered!(
            sent.send_retries,
            client.send_with_id(group_id, &message_id, &body).await
        );
        match answered {
            Ok(seq) => {
                if self.rng.random_bool(directory.dropped_responses) {
                    sent.dropped_responses += 1;
                    let again = until_answered!(
                        sent.send_retries,
                        client.send_with_id(group_id, &message_id, &body).await
                    );
                    match again {
                        Ok(again) if again == seq => {}
                        Ok(_) => sent.retry_mismatches += 1,
                        Err(error) => {
                            // The retry of an answered message must get its
                            // seq again; a refusal breaks that promise too.
                            sent.retry_mismatches += 1;
                            *sent
                                .errors
                                .entry(format!("resend: {}", error_label(&error)))
                                .or_default() += 1;
                        }
                    }
                }
                // The epoch it was encrypted in: a send that lost the race
                // to a commit catches up and encrypts again.
                let epoch = client.epoch(group_id).unwrap_or_default();
                sent.acked.push(Acked {
                    group,
                    seq,
                    epoch,
                    due,
                    handed: started,
                });
                let _ = sent.ack_latency.record(micros(due.elapsed()));
                progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                let owed = directory
                    .membership(group)
                    .size_at(seq, epoch)
                    .saturating_sub(1);
                progress.owed.fetch_add(owed as u64, Ordering::Relaxed);
            }
            Err(error) => {
                *sent.errors.entry(error_label(&error)).or_default() += 1;
                progress.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Where a full member's observations go.
type Seen<'a> = (
    &'a Directory,
    &'a Progress,
    &'a mut Observed,
    &'a mut HashMap<u32, u64>,
);

/// Reads everything pending (retrying while the DS gives no verdict) and
/// observes it; a failure is counted under `what`.
async fn catch_up(client: &mut Client, seen: Seen<'_>, sent: &mut Sent, what: &str) {
    let (directory, progress, observed, last) = seen;
    match until_answered!(sent.send_retries, client.sync().await) {
        Ok(events) => {
            for event in &events {
                observe(event, directory, progress, observed, last);
            }
        }
        Err(error) => {
            *sent
                .errors
                .entry(format!("{what}: {}", error_label(&error)))
                .or_default() += 1;
        }
    }
}

/// Commits one membership change and records it in the directory.
async fn commit(
    client: &mut Client,
    directory: &Directory,
    sent: &mut Sent,
    group: u32,
    churn: Churn,
    due: Instant,
) {
    let group_id = &directory.group_ids[group as usize];
    let user_name = |user: usize| directory.user_names[user].as_str();
    let result = match churn {
        Churn::SelfUpdate => until_answered!(sent.send_retries, client.self_update(group_id).await)
            .map(|c| (c, None)),
        Churn::Add(user) => until_answered!(
            sent.send_retries,
            client.add_users(group_id, &[user_name(user)]).await
        )
        .map(|added| {
            let clients = added
                .clients
                .iter()
                .filter_map(|id| directory.client_index.get(id).copied())
                .collect();
            (added.commit, Some((clients, true)))
        }),
        Churn::Remove(user) => {
            let devices = directory.devices_per_user;
            let clients: Vec<usize> = {
                let membership = directory.membership(group);
                (user * devices..(user + 1) * devices)
                    .filter(|c| membership.clients.contains(c))
                    .collect()
            };
            until_answered!(
                sent.send_retries,
                client.remove_users(group_id, &[user_name(user)]).await
            )
            .map(|c| (c, Some((clients, false))))
        }
    };
    match result {
        Ok((summary, change)) => {
            sent.commits += 1;
            sent.conflicts += u64::from(summary.retries);
            let _ = sent.commit_latency.record(micros(due.elapsed()));
            if let Some((clients, added)) = change {
                tracing::debug!(
                    group,
                    seq = summary.seq,
                    ?clients,
                    added,
                    "membership changed"
                );
                directory
                    .membership(group)
                    .apply(summary.seq, summary.epoch, clients, added);
            }
        }
        Err(error) => {
            tracing::warn!(client = %client.id(), ?churn, %error, "a membership commit failed");
            let kind = match churn {
                Churn::SelfUpdate => "self-update",
                Churn::Add(_) => "add",
                Churn::Remove(_) => "remove",
            };
            *sent
                .commit_errors
                .entry(format!("{kind}: {}", error_label(&error)))
                .or_default() += 1;
        }
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
    pub index: usize,
    pub api: Api,
    /// Its groups and the last entry of each as built: a counter stands
    /// for a device that was online while its groups were built, so it
    /// acknowledges the building commits (one Add per member added after
    /// it: a 10,000-member group's would be gigabytes) and its Welcomes
    /// before subscribing.
    pub built: Vec<(u32, u64)>,
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
        // The highest entry received of each group, over every stream.
        let mut last: HashMap<u32, u64> = HashMap::new();
        let mut unacked: HashMap<u32, u64> = HashMap::new();
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
        // And its Welcomes, one per group it was added to: each comes with
        // the group's ratchet tree (megabytes at 10,000 members), which a
        // counter does not use.
        let welcomes = self.built.len() as u64;
        let inbox = v1::StreamSelector {
            stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
        };
        if welcomes > 0 && self.api.ack(inbox, welcomes).await.is_err() {
            progress.resubscribes.fetch_add(1, Ordering::Relaxed);
        }
        while !stop.is_cancelled() {
            let request = self.api.request(v1::SubscribeRequest {});
            let mut stream = match self.api.delivery().subscribe(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => {
                    tracing::debug!(%status, "subscribing failed");
                    progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RESUBSCRIBE_AFTER).await;
                    continue;
                }
            };
            // A new stream starts again after the last acknowledged entry,
            // so entries up to `last` may come again once: redeliveries, not
            // duplicates. On one stream, an entry twice is a duplicate.
            let mut this_stream: HashSet<(u32, u64)> = HashSet::new();
            let mut stream_last: HashMap<u32, u64> = HashMap::new();
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
                        progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                };
                let Some(&group) = directory.index_of.get(entry.group_id.as_ref()) else {
                    continue;
                };
                if !this_stream.insert((group, entry.seq)) {
                    observed.duplicates += 1;
                    continue;
                }
                let on_stream = stream_last.insert(group, entry.seq).unwrap_or(0);
                if entry.seq < on_stream {
                    observed.out_of_order += 1;
                    stream_last.insert(group, on_stream);
                    continue;
                }
                let previous = last.get(&group).copied().unwrap_or(0);
                if entry.seq <= previous {
                    // Redelivered by a new stream: seen already.
                    continue;
                }
                if previous != 0 && entry.seq > previous + 1 {
                    observed.jumps.push((group, previous, entry.seq));
                }
                last.insert(group, entry.seq);
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
                        progress.resubscribes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
        }
        observed
    }
}
