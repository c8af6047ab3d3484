//! The full members while messages flow. A full member is a real
//! [`Client`]: it sends and commits what it is told to, and decrypts and
//! checks everything it receives (the members that only count are in
//! `counter.rs`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confide_client::{Client, ClientError, Event, StateLocation};
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::body::{self, Header};
use super::counter::RESUBSCRIBE_AFTER;
use super::directory::{Churn, Directory, Order, Progress};
use super::report::{Acked, FinalView, Observed, Sent};
use crate::latency::micros;

/// How long a call without a verdict (the DS restarting) is retried, and the
/// pause between tries.
const IN_DOUBT_RETRY_FOR: Duration = Duration::from_secs(60);
const IN_DOUBT_PAUSE: Duration = Duration::from_millis(100);
/// How long a restarted member stays down.
const DOWNTIME: std::ops::Range<u64> = 100..1000;

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
                    Some(Order::Commit { group, churn: Churn::Resync, due }) => {
                        let seen = (directory, progress, &mut *observed, &mut *last);
                        resync(client, seen, sent, group, due).await;
                        progress.pending_changes.fetch_sub(1, Ordering::Relaxed);
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

/// Rejoins a group by external commit, as a member stuck in it would, after
/// reading the log as far as it goes (what arrives between that and the
/// external commit is skipped by the rejoin, and recorded as not owed).
async fn resync(client: &mut Client, seen: Seen<'_>, sent: &mut Sent, group: u32, due: Instant) {
    let (directory, progress, observed, last) = seen;
    catch_up(
        client,
        (directory, progress, &mut *observed, &mut *last),
        sent,
        "sync before a resync",
    )
    .await;
    // What it read, or sent itself (its own entries are not events).
    let sent_last = sent
        .acked
        .iter()
        .filter(|a| a.group == group)
        .map(|a| a.seq);
    let read = sent_last
        .chain(last.get(&group).copied())
        .max()
        .unwrap_or(0);
    let group_id = &directory.group_ids[group as usize];
    match until_answered!(sent.send_retries, client.rejoin(group_id).await) {
        Ok(summary) => {
            sent.resyncs += 1;
            sent.conflicts += u64::from(summary.retries);
            let _ = sent.commit_latency.record(micros(due.elapsed()));
            directory
                .membership(group)
                .resynced(sent.client, read, summary.seq, summary.epoch);
            last.insert(group, summary.seq);
        }
        Err(error) => {
            tracing::warn!(client = %client.id(), %error, "a resync failed");
            *sent
                .commit_errors
                .entry(format!("resync: {}", error_label(&error)))
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
        Churn::Resync => {
            until_answered!(sent.send_retries, client.rejoin(group_id).await).map(|c| (c, None))
        }
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
                Churn::Resync => "resync",
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
            ..
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
