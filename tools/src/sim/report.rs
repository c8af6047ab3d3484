//! What a run measured: every client's observations put together into one
//! report, printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::directory::Membership;
use super::scenario::Scenario;
use super::tally::{self, Deliveries, Sends};
use crate::latency::{Latency, histogram};

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
    /// Times this member rejoined a group by external commit.
    pub resyncs: u64,
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
            resyncs: 0,
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
    /// Full members that rejoined a group by external commit.
    pub resyncs: u64,
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
        let sends = Sends::tally(&inputs);
        let expected = sends.expected(&inputs.membership);
        let arrived = Deliveries::tally(&inputs, &sends);
        let lost = tally::lost_messages(&inputs, &sends, &arrived.receivers);
        let misdelivered_examples = tally::misdelivered_examples(&inputs, &arrived.unowed);
        let (forks, desyncs) = tally::forks_and_desyncs(&inputs.views);
        let acknowledged = sends.due.len() as u64;
        let offered = inputs.offered.as_secs_f64();
        let window = inputs.delivery_window.as_secs_f64().max(f64::EPSILON);
        Self {
            target: inputs.target,
            scenario: inputs.scenario,
            setup: inputs.setup,
            offered_secs: offered,
            messages_offered: inputs.messages_offered,
            messages_acknowledged: acknowledged,
            send_errors: sends.errors,
            deliveries: arrived.deliveries,
            expected_deliveries: expected,
            lost_acknowledged: expected.saturating_sub(arrived.delivered),
            drain: inputs.drain,
            misdelivered: arrived.unowed.len() as u64,
            misdelivered_examples,
            lost,
            duplicates: arrived.duplicates,
            out_of_order: arrived.out_of_order,
            gaps: arrived.gaps,
            undecryptable: arrived.undecryptable,
            plaintext_mismatches: arrived.mismatches,
            forks,
            desyncs,
            ingress_per_sec: acknowledged as f64 / offered.max(f64::EPSILON),
            egress_per_sec: arrived.delivered as f64 / window,
            end_to_end_latency: Latency::of(&arrived.latency),
            send_latency: Latency::of(&sends.latency),
            ds_latency: Latency::of(&arrived.ds_latency),
            churn: sends.churn,
            timeline: arrived.timeline(),
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

/// A row of the table: its name and its value.
type Row = (&'static str, String);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "confide-sim against {}", self.target)?;
        let verdict = match self.is_clean() {
            true => "clean: nothing lost, forked, duplicated or altered",
            false => "PROBLEMS: see the counts above",
        };
        let rows = [
            self.load_rows(),
            self.promise_rows(),
            self.churn_rows(),
            vec![("verdict", verdict.to_string())],
        ];
        for (name, value) in rows.concat() {
            writeln!(f, "  {name:<34} {value}")?;
        }
        Ok(())
    }
}

impl Report {
    /// What was set up, offered and delivered, and how fast.
    fn load_rows(&self) -> Vec<Row> {
        let setup = &self.setup;
        vec![
            (
                "clients / groups / memberships",
                format!(
                    "{} / {} / {}",
                    setup.clients, setup.groups, setup.memberships
                ),
            ),
            (
                "setup (register, groups)",
                format!("{:.1} s, {:.1} s", setup.register_secs, setup.groups_secs),
            ),
            (
                "messages offered / acknowledged",
                format!(
                    "{} / {} in {:.1} s",
                    self.messages_offered, self.messages_acknowledged, self.offered_secs
                ),
            ),
            ("ingress", format!("{:.0} messages/s", self.ingress_per_sec)),
            (
                "deliveries / expected",
                pair(self.deliveries, self.expected_deliveries),
            ),
            ("egress", format!("{:.0} deliveries/s", self.egress_per_sec)),
            (
                "end-to-end latency (ms)",
                self.end_to_end_latency.to_string(),
            ),
            ("send latency (ms)", self.send_latency.to_string()),
            (
                "DS latency, sent → counted (ms)",
                self.ds_latency.to_string(),
            ),
        ]
    }

    /// The promises checked, with the first few counterexamples.
    fn promise_rows(&self) -> Vec<Row> {
        let mut rows = vec![
            ("drain", self.drain.clone()),
            (
                "lost acknowledged messages",
                self.lost_acknowledged.to_string(),
            ),
        ];
        rows.extend(
            self.lost
                .iter()
                .take(5)
                .map(|lost| ("  lost", lost.to_string())),
        );
        rows.push(("delivered to non-members", self.misdelivered.to_string()));
        rows.extend(
            self.misdelivered_examples
                .iter()
                .map(|example| ("  delivered", example.clone())),
        );
        rows.extend([
            ("forks / desyncs", pair(self.forks, self.desyncs)),
            (
                "duplicates / out of order / gaps",
                format!(
                    "{} / {} / {}",
                    self.duplicates, self.out_of_order, self.gaps
                ),
            ),
            (
                "undecryptable / wrong plaintext",
                pair(self.undecryptable, self.plaintext_mismatches),
            ),
            ("send errors", counts(&self.send_errors)),
        ]);
        rows
    }

    /// Churn and faults, for a run that had any.
    fn churn_rows(&self) -> Vec<Row> {
        if !self.scenario.has_churn_or_faults() {
            return Vec::new();
        }
        let churn = &self.churn;
        vec![
            (
                "commits (added / removed clients)",
                format!(
                    "{} ({} / {})",
                    churn.commits, churn.clients_added, churn.clients_removed
                ),
            ),
            ("commit latency (ms)", churn.commit_latency.to_string()),
            (
                "commit conflicts / errors",
                pair(churn.conflicts, counts(&churn.commit_errors)),
            ),
            (
                "dropped answers / resent, mismatched",
                pair(churn.dropped_responses, churn.retry_mismatches),
            ),
            (
                "retries / resubscribes",
                pair(churn.retries, churn.resubscribes),
            ),
            (
                "client / DS restarts",
                pair(churn.client_restarts, churn.ds_restarts),
            ),
            ("resyncs (external commits)", churn.resyncs.to_string()),
        ]
    }
}

impl fmt::Display for LostMessage {
    /// `group 1 seq 7: never reached u1/d0, u2/d0, u3/d0 and 2 more`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "group {} seq {}: never reached {}",
            self.group,
            self.seq,
            self.missing[..self.missing.len().min(3)].join(", ")
        )?;
        match self.missing_count.saturating_sub(3) {
            0 => Ok(()),
            more => write!(f, " and {more} more"),
        }
    }
}

/// `a / b`.
fn pair(a: impl fmt::Display, b: impl fmt::Display) -> String {
    format!("{a} / {b}")
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
