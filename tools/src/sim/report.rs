//! What a run measured: every client's observations put together into one
//! report, printed as a table and written as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::actors::Membership;
use super::scenario::Scenario;

/// Latencies are recorded in microseconds, up to an hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds are valid")
}

pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What one receiving client saw.
#[derive(Debug, Default)]
pub struct Observed {
    /// Which client.
    pub client: usize,
    /// Whether it decrypts what it receives (a full member) or only counts.
    pub decrypts: bool,
    /// Every application message it received: group index, seq, when.
    pub arrivals: Vec<(u32, u64, Instant)>,
    /// Entries received again after they had been received.
    pub duplicates: u64,
    /// Entries received with a number lower than one received before.
    pub out_of_order: u64,
    /// Sequence gaps (entries skipped), as the client saw them.
    pub gaps: u64,
    /// Jumps in a group's sequence (group, last seen, next seen), legitimate
    /// only if the client was removed in between.
    pub jumps: Vec<(u32, u64, u64)>,
    /// Entries the client could not process (decryption or validation).
    pub undecryptable: u64,
    /// Messages that decrypted to something other than what was sent.
    pub plaintext_mismatches: u64,
}

/// An acknowledged message.
#[derive(Debug)]
pub struct Acked {
    /// Group index and sequence number.
    pub group: u32,
    pub seq: u64,
    /// The epoch it was encrypted in.
    pub epoch: u64,
    /// When the arrival process made it due, and when it was handed to the
    /// client library to send.
    pub due: Instant,
    pub handed: Instant,
}

/// What one sending client did.
#[derive(Debug)]
pub struct Sent {
    /// Which client.
    pub client: usize,
    /// Every acknowledged message.
    pub acked: Vec<Acked>,
    /// Due → acknowledged by the DS.
    pub ack_latency: Histogram<u64>,
    /// Refused sends by gRPC status (or client error).
    pub errors: BTreeMap<String, u64>,
    /// Sends and calls made again because the DS gave no verdict.
    pub send_retries: u64,
    /// Answers thrown away on purpose, and resends with the same key that
    /// got another sequence number (must be 0).
    pub dropped_responses: u64,
    pub retry_mismatches: u64,
    /// Membership commits accepted, commit races lost on the way, due →
    /// accepted, and refused commits by kind and status.
    pub commits: u64,
    pub conflicts: u64,
    pub commit_latency: Histogram<u64>,
    pub commit_errors: BTreeMap<String, u64>,
    /// Times this member was stopped and restarted from its state.
    pub restarts: u64,
}

impl Default for Sent {
    fn default() -> Self {
        Self {
            client: 0,
            acked: Vec::new(),
            ack_latency: histogram(),
            errors: BTreeMap::new(),
            send_retries: 0,
            dropped_responses: 0,
            retry_mismatches: 0,
            commits: 0,
            conflicts: 0,
            commit_latency: histogram(),
            commit_errors: BTreeMap::new(),
            restarts: 0,
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.5)),
            p90_ms: ms(histogram.value_at_quantile(0.9)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// Setup figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Setup {
    pub clients: usize,
    pub groups: usize,
    /// Group memberships (a client in two groups counts twice).
    pub memberships: usize,
    pub register_secs: f64,
    pub groups_secs: f64,
}

/// Churn and faults: what was done and what it cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Churn {
    /// Membership commits accepted (self-updates, adds, removes).
    pub commits: u64,
    /// Users added and removed (every device counted).
    pub clients_added: u64,
    pub clients_removed: u64,
    /// Commit races lost and retried on the way to those commits.
    pub conflicts: u64,
    /// Due → accepted by the DS, retries included.
    pub commit_latency: Latency,
    pub commit_errors: BTreeMap<String, u64>,
    /// Calls made again because the DS gave no verdict.
    pub retries: u64,
    /// Answers thrown away, so the send was repeated with the same key;
    /// repeats that got a different sequence number (must be 0).
    pub dropped_responses: u64,
    pub retry_mismatches: u64,
    pub client_restarts: u64,
    pub ds_restarts: u32,
    /// Live streams that broke and were opened again.
    pub resubscribes: u64,
}

/// A message some members never received.
#[derive(Clone, Debug, Serialize)]
pub struct LostMessage {
    /// Group index and sequence number.
    pub group: u32,
    pub seq: u64,
    /// How many members it never reached, and the first few (user/device).
    pub missing_count: usize,
    pub missing: Vec<String>,
}

/// Lost messages listed in a report, at most.
const LOST_EXAMPLES: usize = 20;

/// One second of the run: deliveries that arrived in it and their latency.
#[derive(Clone, Debug, Serialize)]
pub struct Second {
    pub second: u64,
    pub deliveries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub scenario: Scenario,
    pub setup: Setup,
    /// Seconds messages were offered.
    pub offered_secs: f64,
    pub messages_offered: u64,
    pub messages_acknowledged: u64,
    pub send_errors: BTreeMap<String, u64>,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    /// Deliveries of acknowledged messages that never happened (must be 0).
    pub lost_acknowledged: u64,
    /// The first few messages some member never received, and who.
    pub lost: Vec<LostMessage>,
    /// How the wait for deliveries after the last message ended: a run cut
    /// off while deliveries still arrive counts what had not arrived as
    /// lost.
    pub drain: String,
    /// Deliveries to a client that was not a member for that message (its
    /// sender, removed, or added in a later epoch): must be 0.
    pub misdelivered: u64,
    pub misdelivered_examples: Vec<String>,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub undecryptable: u64,
    pub plaintext_mismatches: u64,
    /// Groups whose verifiers ended with different epoch authenticators
    /// (must be 0).
    pub forks: u64,
    /// Full members that ended in an older epoch than their group (must be 0).
    pub desyncs: u64,
    pub ingress_per_sec: f64,
    pub egress_per_sec: f64,
    /// Due → delivered to a member, over every delivery.
    pub end_to_end_latency: Latency,
    /// Due → acknowledged by the DS.
    pub send_latency: Latency,
    /// Handed to the client library to send → received by a member that
    /// only counts: what the DS adds, without queueing at the sender or
    /// decryption (the sender's encryption, some tens of µs, is included).
    pub ds_latency: Latency,
    pub churn: Churn,
    /// End-to-end latency second by second, from the first message offered.
    pub timeline: Vec<Second>,
}

/// The final MLS view of one full member of one group.
pub struct FinalView {
    pub group: u32,
    pub epoch: u64,
    pub authenticator: Vec<u8>,
}

pub struct Inputs {
    pub target: String,
    pub scenario: Scenario,
    pub setup: Setup,
    pub offered: Duration,
    pub messages_offered: u64,
    /// When the first message was offered.
    pub start: Instant,
    /// Time from the first message offered to the last delivery.
    pub delivery_window: Duration,
    /// Each group's membership, with every change made during the run.
    pub membership: Vec<Membership>,
    pub client_ids: Vec<confide_client::ClientId>,
    pub ds_restarts: u32,
    pub resubscribes: u64,
    /// How the wait for deliveries ended.
    pub drain: String,
    pub sent: Vec<Sent>,
    pub observed: Vec<Observed>,
    pub views: Vec<FinalView>,
}

impl Report {
    pub fn new(inputs: Inputs) -> Self {
        let mut due: HashMap<(u32, u64), Instant> = HashMap::new();
        let mut handed: HashMap<(u32, u64), Instant> = HashMap::new();
        // Who sent each message, in which epoch.
        let mut sent_by: HashMap<(u32, u64), (usize, u64)> = HashMap::new();
        let mut send_latency = histogram();
        let mut send_errors = BTreeMap::new();
        let mut commit_latency = histogram();
        let mut churn = Churn {
            ds_restarts: inputs.ds_restarts,
            resubscribes: inputs.resubscribes,
            ..Churn::default()
        };
        for sent in &inputs.sent {
            for acked in &sent.acked {
                let key = (acked.group, acked.seq);
                due.insert(key, acked.due);
                handed.insert(key, acked.handed);
                sent_by.insert(key, (sent.client, acked.epoch));
            }
            send_latency
                .add(&sent.ack_latency)
                .expect("histograms with the same bounds");
            commit_latency
                .add(&sent.commit_latency)
                .expect("histograms with the same bounds");
            for (status, count) in &sent.errors {
                *send_errors.entry(status.clone()).or_default() += count;
            }
            for (status, count) in &sent.commit_errors {
                *churn.commit_errors.entry(status.clone()).or_default() += count;
            }
            churn.commits += sent.commits;
            churn.conflicts += sent.conflicts;
            churn.retries += sent.send_retries;
            churn.dropped_responses += sent.dropped_responses;
            churn.retry_mismatches += sent.retry_mismatches;
            churn.client_restarts += sent.restarts;
        }
        churn.commit_latency = Latency::of(&commit_latency);
        for membership in &inputs.membership {
            for change in &membership.changes {
                let clients = change.clients.len() as u64;
                match change.added {
                    true => churn.clients_added += clients,
                    false => churn.clients_removed += clients,
                }
            }
        }
        let acknowledged = due.len() as u64;
        // Every member when a message was appended, but its sender (and
        // members added in a later epoch), is owed it.
        let expected: u64 = sent_by
            .iter()
            .map(|((g, seq), (_, epoch))| {
                inputs.membership[*g as usize]
                    .size_at(*seq, *epoch)
                    .saturating_sub(1) as u64
            })
            .sum();

        let mut by_second: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();
        let mut latency = histogram();
        let mut ds_latency = histogram();
        let mut delivered = 0u64;
        let mut receivers: HashMap<(u32, u64), u32> = HashMap::new();
        // Deliveries to a client the message was not for (must be none).
        let mut unowed: Vec<(u32, u64, usize)> = Vec::new();
        let mut deliveries = 0u64;
        let (mut duplicates, mut out_of_order, mut gaps) = (0, 0, 0);
        let (mut undecryptable, mut mismatches) = (0, 0);
        for observed in &inputs.observed {
            let mut seen = HashSet::new();
            for (group, seq, at) in &observed.arrivals {
                deliveries += 1;
                if !seen.insert((*group, *seq)) {
                    continue;
                }
                if let Some(due) = due.get(&(*group, *seq)) {
                    let membership = &inputs.membership[*group as usize];
                    if !membership.changes.is_empty()
                        && let Some((sender, epoch)) = sent_by.get(&(*group, *seq))
                        && (observed.client == *sender
                            || !membership
                                .members_at(*seq, *epoch)
                                .contains(&observed.client))
                    {
                        unowed.push((*group, *seq, observed.client));
                        continue;
                    }
                    delivered += 1;
                    *receivers.entry((*group, *seq)).or_default() += 1;
                    let took = micros(at.saturating_duration_since(*due));
                    latency.record(took).expect("within bounds");
                    if !observed.decrypts
                        && let Some(handed) = handed.get(&(*group, *seq))
                    {
                        ds_latency
                            .record(micros(at.saturating_duration_since(*handed)))
                            .expect("within bounds");
                    }
                    let second = at.saturating_duration_since(inputs.start).as_secs();
                    by_second
                        .entry(second)
                        .or_insert_with(histogram)
                        .record(took)
                        .expect("within bounds");
                }
            }
            duplicates += observed.duplicates;
            out_of_order += observed.out_of_order;
            gaps += observed.gaps;
            gaps += observed
                .jumps
                .iter()
                .filter(|(group, from, to)| {
                    !inputs.membership[*group as usize].removed_between(observed.client, *from, *to)
                })
                .map(|(_, from, to)| to - from - 1)
                .sum::<u64>();
            undecryptable += observed.undecryptable;
            mismatches += observed.plaintext_mismatches;
        }

        // Which members missed which messages, for the first few.
        let mut lost = Vec::new();
        for (&(group, seq), (sender, epoch)) in &sent_by {
            let membership = &inputs.membership[group as usize];
            let owed = membership.size_at(seq, *epoch).saturating_sub(1) as u32;
            if receivers.get(&(group, seq)).copied().unwrap_or(0) >= owed {
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

        let mut by_group: BTreeMap<u32, Vec<&FinalView>> = BTreeMap::new();
        for view in &inputs.views {
            by_group.entry(view.group).or_default().push(view);
        }
        let mut forks = 0;
        let mut desyncs = 0;
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

        let offered = inputs.offered.as_secs_f64();
        let window = inputs.delivery_window.as_secs_f64().max(f64::EPSILON);
        Self {
            target: inputs.target,
            scenario: inputs.scenario,
            setup: inputs.setup,
            offered_secs: offered,
            messages_offered: inputs.messages_offered,
            messages_acknowledged: acknowledged,
            send_errors,
            deliveries,
            expected_deliveries: expected,
            lost_acknowledged: expected.saturating_sub(delivered),
            drain: inputs.drain,
            misdelivered: unowed.len() as u64,
            misdelivered_examples: unowed
                .iter()
                .take(LOST_EXAMPLES)
                .map(|(group, seq, client)| {
                    let client = inputs.client_ids.get(*client).map(ToString::to_string);
                    format!("group {group} seq {seq} to {}", client.unwrap_or_default())
                })
                .collect(),
            lost,
            duplicates,
            out_of_order,
            gaps,
            undecryptable,
            plaintext_mismatches: mismatches,
            forks,
            desyncs,
            ingress_per_sec: acknowledged as f64 / offered.max(f64::EPSILON),
            egress_per_sec: delivered as f64 / window,
            end_to_end_latency: Latency::of(&latency),
            send_latency: Latency::of(&send_latency),
            ds_latency: Latency::of(&ds_latency),
            churn,
            timeline: by_second
                .into_iter()
                .map(|(second, histogram)| {
                    let latency = Latency::of(&histogram);
                    Second {
                        second,
                        deliveries: latency.count,
                        p50_ms: latency.p50_ms,
                        p99_ms: latency.p99_ms,
                        max_ms: latency.max_ms,
                    }
                })
                .collect(),
        }
    }

    /// Whether the run kept every promise: nothing lost, forked, desynced,
    /// duplicated, reordered or altered.
    pub fn is_clean(&self) -> bool {
        self.lost_acknowledged == 0
            && self.misdelivered == 0
            && self.forks == 0
            && self.desyncs == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.gaps == 0
            && self.undecryptable == 0
            && self.plaintext_mismatches == 0
            && self.churn.retry_mismatches == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, name: &str, value: String| {
            writeln!(f, "  {name:<34} {value}")
        };
        let setup = &self.setup;
        writeln!(f, "confide-sim against {}", self.target)?;
        row(
            f,
            "clients / groups / memberships",
            format!(
                "{} / {} / {}",
                setup.clients, setup.groups, setup.memberships
            ),
        )?;
        row(
            f,
            "setup (register, groups)",
            format!("{:.1} s, {:.1} s", setup.register_secs, setup.groups_secs),
        )?;
        row(
            f,
            "messages offered / acknowledged",
            format!(
                "{} / {} in {:.1} s",
                self.messages_offered, self.messages_acknowledged, self.offered_secs
            ),
        )?;
        row(
            f,
            "ingress",
            format!("{:.0} messages/s", self.ingress_per_sec),
        )?;
        row(
            f,
            "deliveries / expected",
            format!("{} / {}", self.deliveries, self.expected_deliveries),
        )?;
        row(
            f,
            "egress",
            format!("{:.0} deliveries/s", self.egress_per_sec),
        )?;
        for (name, latency) in [
            ("end-to-end latency (ms)", &self.end_to_end_latency),
            ("send latency (ms)", &self.send_latency),
            ("DS latency, sent → counted (ms)", &self.ds_latency),
        ] {
            row(
                f,
                name,
                format!(
                    "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.p999_ms, latency.max_ms
                ),
            )?;
        }
        row(f, "drain", self.drain.clone())?;
        row(
            f,
            "lost acknowledged messages",
            self.lost_acknowledged.to_string(),
        )?;
        for lost in self.lost.iter().take(5) {
            row(
                f,
                "  lost",
                format!(
                    "group {} seq {}: never reached {}{}",
                    lost.group,
                    lost.seq,
                    lost.missing[..lost.missing.len().min(3)].join(", "),
                    match lost.missing_count.saturating_sub(3) {
                        0 => String::new(),
                        more => format!(" and {more} more"),
                    }
                ),
            )?;
        }
        row(f, "delivered to non-members", self.misdelivered.to_string())?;
        for example in &self.misdelivered_examples {
            row(f, "  delivered", example.clone())?;
        }
        row(
            f,
            "forks / desyncs",
            format!("{} / {}", self.forks, self.desyncs),
        )?;
        row(
            f,
            "duplicates / out of order / gaps",
            format!(
                "{} / {} / {}",
                self.duplicates, self.out_of_order, self.gaps
            ),
        )?;
        row(
            f,
            "undecryptable / wrong plaintext",
            format!("{} / {}", self.undecryptable, self.plaintext_mismatches),
        )?;
        row(f, "send errors", counts(&self.send_errors))?;
        let churn = &self.churn;
        if self.scenario.has_churn_or_faults() {
            row(
                f,
                "commits (added / removed clients)",
                format!(
                    "{} ({} / {})",
                    churn.commits, churn.clients_added, churn.clients_removed
                ),
            )?;
            let latency = &churn.commit_latency;
            row(
                f,
                "commit latency (ms)",
                format!(
                    "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
                    latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.p999_ms, latency.max_ms
                ),
            )?;
            row(
                f,
                "commit conflicts / errors",
                format!("{} / {}", churn.conflicts, counts(&churn.commit_errors)),
            )?;
            row(
                f,
                "dropped answers / resent, mismatched",
                format!("{} / {}", churn.dropped_responses, churn.retry_mismatches),
            )?;
            row(
                f,
                "retries / resubscribes",
                format!("{} / {}", churn.retries, churn.resubscribes),
            )?;
            row(
                f,
                "client / DS restarts",
                format!("{} / {}", churn.client_restarts, churn.ds_restarts),
            )?;
        }
        row(
            f,
            "verdict",
            match self.is_clean() {
                true => "clean: nothing lost, forked, duplicated or altered".into(),
                false => "PROBLEMS: see the counts above".into(),
            },
        )
    }
}

/// `status: count, …`, or `none`.
fn counts(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
