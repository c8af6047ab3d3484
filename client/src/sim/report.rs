//! What a run measured: every client's observations put together into one
//! report, printed as a table and written as JSON.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

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
    /// Every application message it received: group index, seq, when.
    pub arrivals: Vec<(u32, u64, Instant)>,
    /// Entries received again after they had been received.
    pub duplicates: u64,
    /// Entries received with a number lower than one received before.
    pub out_of_order: u64,
    /// Sequence gaps (entries skipped), as the client saw them.
    pub gaps: u64,
    /// Entries the client could not process (decryption or validation).
    pub undecryptable: u64,
    /// Messages that decrypted to something other than what was sent.
    pub plaintext_mismatches: u64,
}

/// What one sending client did.
#[derive(Debug)]
pub struct Sent {
    /// Every acknowledged message: group index, seq, when it was due.
    pub acked: Vec<(u32, u64, Instant)>,
    /// Due → acknowledged by the DS.
    pub ack_latency: Histogram<u64>,
    /// Refused sends by gRPC status (or client error).
    pub errors: BTreeMap<String, u64>,
}

impl Default for Sent {
    fn default() -> Self {
        Self {
            acked: Vec::new(),
            ack_latency: histogram(),
            errors: BTreeMap::new(),
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
    fn of(histogram: &Histogram<u64>) -> Self {
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
    /// Acknowledged messages some member never received (must be 0).
    pub lost_acknowledged: u64,
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
    /// Time from the first message offered to the last delivery.
    pub delivery_window: Duration,
    /// Members of each group, by group index.
    pub group_members: Vec<usize>,
    pub sent: Vec<Sent>,
    pub observed: Vec<Observed>,
    pub views: Vec<FinalView>,
}

impl Report {
    pub fn new(inputs: Inputs) -> Self {
        let mut due: HashMap<(u32, u64), Instant> = HashMap::new();
        let mut send_latency = histogram();
        let mut send_errors = BTreeMap::new();
        for sent in &inputs.sent {
            due.extend(sent.acked.iter().map(|(g, seq, at)| ((*g, *seq), *at)));
            send_latency
                .add(&sent.ack_latency)
                .expect("histograms with the same bounds");
            for (status, count) in &sent.errors {
                *send_errors.entry(status.clone()).or_default() += count;
            }
        }
        let acknowledged = due.len() as u64;
        let expected: u64 = due
            .keys()
            .map(|(g, _)| inputs.group_members[*g as usize].saturating_sub(1) as u64)
            .sum();

        let mut latency = histogram();
        let mut delivered = 0u64;
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
                    delivered += 1;
                    latency
                        .record(micros(at.saturating_duration_since(*due)))
                        .expect("within bounds");
                }
            }
            duplicates += observed.duplicates;
            out_of_order += observed.out_of_order;
            gaps += observed.gaps;
            undecryptable += observed.undecryptable;
            mismatches += observed.plaintext_mismatches;
        }

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
        }
    }

    /// Whether the run kept every promise: nothing lost, forked, desynced,
    /// duplicated, reordered or altered.
    pub fn is_clean(&self) -> bool {
        self.lost_acknowledged == 0
            && self.forks == 0
            && self.desyncs == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.gaps == 0
            && self.undecryptable == 0
            && self.plaintext_mismatches == 0
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
        row(
            f,
            "lost acknowledged messages",
            self.lost_acknowledged.to_string(),
        )?;
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
        let errors = match self.send_errors.is_empty() {
            true => "none".to_string(),
            false => self
                .send_errors
                .iter()
                .map(|(status, count)| format!("{status}: {count}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        row(f, "send errors", errors)?;
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
