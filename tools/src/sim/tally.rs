//! How a report adds up every client's observations: what was acknowledged
//! (from the senders), what arrived where (from the receivers, checked
//! against each group's membership log), what never arrived, and whether
//! the groups ended in one epoch with one authenticator.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use hdrhistogram::Histogram;

use super::directory::Membership;
use super::report::{Churn, FinalView, Inputs, LostMessage, Observed, Second};
use crate::latency::{Latency, histogram, micros};

/// Lost messages listed in a report, at most.
pub const LOST_EXAMPLES: usize = 20;

/// A message by group index and sequence number.
type Key = (u32, u64);

/// Every acknowledged message and what the senders counted.
pub struct Sends {
    /// When the arrival process made each message due, and when it was
    /// handed to the client library.
    pub due: HashMap<Key, Instant>,
    pub handed: HashMap<Key, Instant>,
    /// Who sent each message, in which epoch.
    pub sent_by: HashMap<Key, (usize, u64)>,
    pub latency: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    pub churn: Churn,
}

impl Sends {
    pub fn tally(inputs: &Inputs) -> Self {
        let mut sends = Self {
            due: HashMap::new(),
            handed: HashMap::new(),
            sent_by: HashMap::new(),
            latency: histogram(),
            errors: BTreeMap::new(),
            churn: Churn {
                ds_restarts: inputs.ds_restarts,
                resubscribes: inputs.resubscribes,
                ..Churn::default()
            },
        };
        let mut commit_latency = histogram();
        for sent in &inputs.sent {
            for acked in &sent.acked {
                let key = (acked.group, acked.seq);
                sends.due.insert(key, acked.due);
                sends.handed.insert(key, acked.handed);
                sends.sent_by.insert(key, (sent.client, acked.epoch));
            }
            sends
                .latency
                .add(&sent.ack_latency)
                .expect("histograms with the same bounds");
            commit_latency
                .add(&sent.commit_latency)
                .expect("histograms with the same bounds");
            add_counts(&mut sends.errors, &sent.errors);
            let churn = &mut sends.churn;
            add_counts(&mut churn.commit_errors, &sent.commit_errors);
            churn.commits += sent.commits;
            churn.conflicts += sent.conflicts;
            churn.retries += sent.send_retries;
            churn.dropped_responses += sent.dropped_responses;
            churn.retry_mismatches += sent.retry_mismatches;
            churn.client_restarts += sent.restarts;
            churn.resyncs += sent.resyncs;
        }
        sends.churn.commit_latency = Latency::of(&commit_latency);
        count_membership_changes(&mut sends.churn, &inputs.membership);
        sends
    }

    /// Deliveries owed: every member when a message was appended, but its
    /// sender (and members added in a later epoch), is owed it.
    pub fn expected(&self, membership: &[Membership]) -> u64 {
        self.sent_by
            .iter()
            .map(|((g, seq), (_, epoch))| owed(&membership[*g as usize], *seq, *epoch) as u64)
            .sum()
    }
}

/// Members owed a message of `epoch` appended at `seq`, its sender not
/// counted.
fn owed(membership: &Membership, seq: u64, epoch: u64) -> usize {
    membership.size_at(seq, epoch).saturating_sub(1)
}

fn add_counts(into: &mut BTreeMap<String, u64>, counts: &BTreeMap<String, u64>) {
    for (status, count) in counts {
        *into.entry(status.clone()).or_default() += count;
    }
}

fn count_membership_changes(churn: &mut Churn, membership: &[Membership]) {
    for change in membership.iter().flat_map(|m| &m.changes) {
        let clients = change.clients.len() as u64;
        match change.added {
            true => churn.clients_added += clients,
            false => churn.clients_removed += clients,
        }
    }
}

/// What arrived, over every receiver.
pub struct Deliveries {
    /// End-to-end latency by second of arrival since the first message.
    by_second: BTreeMap<u64, Histogram<u64>>,
    pub latency: Histogram<u64>,
    pub ds_latency: Histogram<u64>,
    /// Deliveries of acknowledged messages to a member they were owed to.
    pub delivered: u64,
    /// How many members received each message.
    pub receivers: HashMap<Key, u32>,
    /// Deliveries to a client the message was not for (must be none):
    /// group, seq, client.
    pub unowed: Vec<(u32, u64, usize)>,
    /// Every arrival, repeats included.
    pub deliveries: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub undecryptable: u64,
    pub mismatches: u64,
}

impl Deliveries {
    pub fn tally(inputs: &Inputs, sends: &Sends) -> Self {
        let mut deliveries = Self {
            by_second: BTreeMap::new(),
            latency: histogram(),
            ds_latency: histogram(),
            delivered: 0,
            receivers: HashMap::new(),
            unowed: Vec::new(),
            deliveries: 0,
            duplicates: 0,
            out_of_order: 0,
            gaps: 0,
            undecryptable: 0,
            mismatches: 0,
        };
        for observed in &inputs.observed {
            deliveries.add_arrivals(observed, inputs, sends);
            deliveries.add_counts(observed, &inputs.membership);
        }
        deliveries
    }

    /// One receiver's arrivals, each message counted once.
    fn add_arrivals(&mut self, observed: &Observed, inputs: &Inputs, sends: &Sends) {
        let mut seen = HashSet::new();
        for &(group, seq, at) in &observed.arrivals {
            self.deliveries += 1;
            if !seen.insert((group, seq)) {
                continue;
            }
            let Some(due) = sends.due.get(&(group, seq)) else {
                continue;
            };
            let membership = &inputs.membership[group as usize];
            if !membership.changes.is_empty()
                && let Some((sender, epoch)) = sends.sent_by.get(&(group, seq))
                && (observed.client == *sender
                    || !membership
                        .members_at(seq, *epoch)
                        .contains(&observed.client))
            {
                self.unowed.push((group, seq, observed.client));
                continue;
            }
            self.delivered += 1;
            *self.receivers.entry((group, seq)).or_default() += 1;
            let took = micros(at.saturating_duration_since(*due));
            self.latency.record(took).expect("within bounds");
            if !observed.decrypts
                && let Some(handed) = sends.handed.get(&(group, seq))
            {
                self.ds_latency
                    .record(micros(at.saturating_duration_since(*handed)))
                    .expect("within bounds");
            }
            let second = at.saturating_duration_since(inputs.start).as_secs();
            self.by_second
                .entry(second)
                .or_insert_with(histogram)
                .record(took)
                .expect("within bounds");
        }
    }

    /// What one receiver counted itself; a jump in a group's sequence is a
    /// gap unless the receiver was removed in between.
    fn add_counts(&mut self, observed: &Observed, membership: &[Membership]) {
        self.duplicates += observed.duplicates;
        self.out_of_order += observed.out_of_order;
        self.gaps += observed.gaps;
        self.gaps += observed
            .jumps
            .iter()
            .filter(|(group, from, to)| {
                !membership[*group as usize].removed_between(observed.client, *from, *to)
            })
            .map(|(_, from, to)| to - from - 1)
            .sum::<u64>();
        self.undecryptable += observed.undecryptable;
        self.mismatches += observed.plaintext_mismatches;
    }

    /// End-to-end latency second by second.
    pub fn timeline(&self) -> Vec<Second> {
        self.by_second
            .iter()
            .map(|(&second, histogram)| {
                let latency = Latency::of(histogram);
                Second {
                    second,
                    deliveries: latency.count,
                    p50_ms: latency.p50_ms,
                    p99_ms: latency.p99_ms,
                    max_ms: latency.max_ms,
                }
            })
            .collect()
    }
}

/// Which members missed which messages, for the first few.
pub fn lost_messages(
    inputs: &Inputs,
    sends: &Sends,
    receivers: &HashMap<Key, u32>,
) -> Vec<LostMessage> {
    let mut lost = Vec::new();
    for (&(group, seq), (sender, epoch)) in &sends.sent_by {
        let membership = &inputs.membership[group as usize];
        if receivers.get(&(group, seq)).copied().unwrap_or(0)
            >= owed(membership, seq, *epoch) as u32
        {
            continue;
        }
        let mut missing = membership.members_at(seq, *epoch);
        missing.remove(sender);
        for observed in &inputs.observed {
            if observed
                .arrivals
                .iter()
                .any(|(g, s, _)| (*g, *s) == (group, seq))
            {
                missing.remove(&observed.client);
            }
        }
        lost.push(LostMessage {
            group,
            seq,
            missing_count: missing.len(),
            missing: missing
                .into_iter()
                .take(LOST_EXAMPLES)
                .filter_map(|c| inputs.client_ids.get(c).map(ToString::to_string))
                .collect(),
        });
        if lost.len() >= LOST_EXAMPLES {
            break;
        }
    }
    lost.sort_by_key(|l| (l.group, l.seq));
    lost
}

/// The first few deliveries to non-members, in words.
pub fn misdelivered_examples(inputs: &Inputs, unowed: &[(u32, u64, usize)]) -> Vec<String> {
    unowed
        .iter()
        .take(LOST_EXAMPLES)
        .map(|(group, seq, client)| {
            let client = inputs.client_ids.get(*client).map(ToString::to_string);
            format!("group {group} seq {seq} to {}", client.unwrap_or_default())
        })
        .collect()
}

/// Groups whose full members ended in the latest epoch with different
/// authenticators (forks), and full members left in an older epoch
/// (desyncs).
pub fn forks_and_desyncs(views: &[FinalView]) -> (u64, u64) {
    let mut by_group: BTreeMap<u32, Vec<&FinalView>> = BTreeMap::new();
    for view in views {
        by_group.entry(view.group).or_default().push(view);
    }
    let (mut forks, mut desyncs) = (0, 0);
    for views in by_group.values() {
        let latest = views.iter().map(|v| v.epoch).max().unwrap_or_default();
        desyncs += views.iter().filter(|v| v.epoch < latest).count() as u64;
        let current: HashSet<&[u8]> = views
            .iter()
            .filter(|v| v.epoch == latest)
            .map(|v| v.authenticator.as_slice())
            .collect();
        forks += u64::from(current.len() > 1);
    }
    (forks, desyncs)
}
