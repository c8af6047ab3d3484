//! What a run measured, as a table and as JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::Options;
use super::database::{LogSize, RowSizes, ServerSettings};
use super::load::LoadFigures;

/// Issue #4: durable ingress at least half the echo server's calls/s.
pub const INGRESS_RATIO_TARGET: f64 = 0.5;
/// Issue #4: at most 1.1 bytes stored per byte of MLS message.
pub const STORAGE_RATIO_TARGET: f64 = 1.1;

/// What the DS acknowledged against what its log holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Check {
    pub acknowledged: u64,
    /// Application messages in the log.
    pub stored: u64,
    /// Sequence numbers acknowledged twice.
    pub duplicate_acks: u64,
    /// Acknowledged but not in the log (must be 0: nothing acknowledged is lost).
    pub missing: u64,
    /// In the log but never acknowledged (must be 0 in this benchmark,
    /// where every call gets an answer).
    pub unacknowledged: u64,
}

impl Check {
    /// Adds one group: the seqs its senders were acknowledged with (any
    /// order) and the seqs its log holds (ascending).
    pub fn add(&mut self, mut acknowledged: Vec<u64>, stored: &[u64]) {
        self.acknowledged += acknowledged.len() as u64;
        self.stored += stored.len() as u64;
        acknowledged.sort_unstable();
        let before = acknowledged.len();
        acknowledged.dedup();
        self.duplicate_acks += (before - acknowledged.len()) as u64;
        let (mut a, mut s) = (0, 0);
        while a < acknowledged.len() || s < stored.len() {
            match (acknowledged.get(a), stored.get(s)) {
                (Some(x), Some(y)) if x == y => (a, s) = (a + 1, s + 1),
                (Some(x), Some(y)) if x < y => (self.missing, a) = (self.missing + 1, a + 1),
                (Some(_), None) => (self.missing, a) = (self.missing + 1, a + 1),
                _ => (self.unacknowledged, s) = (self.unacknowledged + 1, s + 1),
            }
        }
    }

    /// Every acknowledged message stored exactly once, nothing else.
    pub fn is_exact(&self) -> bool {
        self.duplicate_acks == 0
            && self.missing == 0
            && self.unacknowledged == 0
            && self.acknowledged == self.stored
    }
}

/// PostgreSQL alone: one-row INSERT transactions, as many connections as the
/// DS's pool, the same callers.
#[derive(Clone, Debug, Serialize)]
pub struct PostgresInsert {
    #[serde(flatten)]
    pub load: LoadFigures,
    pub connections: usize,
    pub row_payload_bytes: usize,
}

/// The DS's timed run.
#[derive(Clone, Debug, Serialize)]
pub struct Ingress {
    #[serde(flatten)]
    pub load: LoadFigures,
    /// Registering, building the groups and encrypting, before the clock.
    pub setup_secs: f64,
    /// Mean MLS PrivateMessage size sent.
    pub wire_bytes_per_message: f64,
    /// Growth of `group_log` (heap, indexes, TOAST) over the timed run per
    /// message stored.
    pub stored_bytes_per_message: f64,
    pub check: Check,
}

/// Bytes stored per message in one group.
#[derive(Clone, Debug, Serialize)]
pub struct StorageFigures {
    pub group_size: usize,
    pub messages: u64,
    /// Mean MLS PrivateMessage size (what `SendMessageRequest.message` carries).
    pub wire_bytes_per_message: f64,
    /// Growth of `group_log` per message: heap + indexes + TOAST (+ free
    /// space map and visibility map forks).
    pub stored_bytes_per_message: f64,
    pub stored_to_wire_ratio: f64,
    pub heap_bytes_per_message: f64,
    pub index_bytes_per_message: f64,
    pub toast_bytes_per_message: f64,
    /// Mean row as PostgreSQL sizes it (`pg_column_size(row)`: tuple header
    /// and every column), before its 4-byte line pointer and page overhead.
    pub row_bytes: f64,
    /// Mean size of the `message` column (the MLS bytes and their header).
    pub message_column_bytes: f64,
    pub check: Check,
    pub errors: BTreeMap<String, u64>,
}

impl StorageFigures {
    pub(super) fn new(
        group_size: usize,
        wire: f64,
        grown: LogSize,
        rows: RowSizes,
        check: Check,
        errors: BTreeMap<String, u64>,
    ) -> Self {
        let messages = check.stored;
        let per = |bytes: i64| per_message(bytes, messages);
        let stored = per(grown.total);
        Self {
            group_size,
            messages,
            wire_bytes_per_message: wire,
            stored_bytes_per_message: stored,
            stored_to_wire_ratio: if wire > 0.0 { stored / wire } else { 0.0 },
            heap_bytes_per_message: per(grown.total - grown.indexes - grown.toast),
            index_bytes_per_message: per(grown.indexes),
            toast_bytes_per_message: per(grown.toast),
            row_bytes: rows.row_bytes,
            message_column_bytes: rows.message_column_bytes,
            check,
            errors,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

/// Whether the targets were met.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub ingress_ratio_min: f64,
    pub ingress_ratio_met: bool,
    pub storage_ratio_max: f64,
    /// Every measured group size at or under the bound.
    pub storage_ratio_met: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub options: Options,
    pub postgres: ServerSettings,
    /// The trivial tonic echo server.
    pub echo: LoadFigures,
    /// Durable single-row inserts straight into PostgreSQL: the floor under
    /// the DS (the DS makes one such commit per message, and more).
    pub postgres_insert: PostgresInsert,
    /// The DS, durable application-message ingress.
    pub ingress: Ingress,
    /// `ingress.calls_per_sec / echo.calls_per_sec`.
    pub ingress_to_echo_ratio: f64,
    pub storage: Vec<StorageFigures>,
    pub targets: Targets,
}

impl Report {
    pub(super) fn new(
        options: Options,
        postgres: ServerSettings,
        echo: LoadFigures,
        postgres_insert: PostgresInsert,
        ingress: Ingress,
        storage: Vec<StorageFigures>,
    ) -> Self {
        let ratio = if echo.calls_per_sec > 0.0 {
            ingress.load.calls_per_sec / echo.calls_per_sec
        } else {
            0.0
        };
        let targets = Targets {
            ingress_ratio_min: INGRESS_RATIO_TARGET,
            ingress_ratio_met: ratio >= INGRESS_RATIO_TARGET,
            storage_ratio_max: STORAGE_RATIO_TARGET,
            storage_ratio_met: !storage.is_empty()
                && storage
                    .iter()
                    .all(|s| s.stored_to_wire_ratio <= STORAGE_RATIO_TARGET),
        };
        Self {
            machine: Machine {
                cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
            },
            options,
            postgres,
            echo,
            postgres_insert,
            ingress,
            ingress_to_echo_ratio: ratio,
            storage,
            targets,
        }
    }

    /// Every call answered, every acknowledged message stored exactly once,
    /// no caller ran dry, and every figure measured something.
    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    /// What makes the run unclean, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.echo.errors.is_empty() {
            problems.push(format!("echo calls failed: {:?}", self.echo.errors));
        }
        if !self.postgres_insert.load.errors.is_empty() {
            problems.push(format!(
                "inserts failed: {:?}",
                self.postgres_insert.load.errors
            ));
        }
        if !self.ingress.load.errors.is_empty() {
            problems.push(format!("sends failed: {:?}", self.ingress.load.errors));
        }
        if self.ingress.load.exhausted_callers > 0 {
            problems.push(format!(
                "{} callers ran out of pre-encrypted messages (raise --max-messages)",
                self.ingress.load.exhausted_callers
            ));
        }
        if !self.ingress.check.is_exact() {
            problems.push(format!(
                "the log does not hold exactly what was acknowledged: {:?}",
                self.ingress.check
            ));
        }
        if self.echo.calls == 0 || self.ingress.load.calls == 0 {
            problems.push("a server completed no calls in the window".into());
        }
        for storage in &self.storage {
            if !storage.errors.is_empty() || !storage.check.is_exact() || storage.messages == 0 {
                problems.push(format!(
                    "group of {}: errors {:?}, {:?}",
                    storage.group_size, storage.errors, storage.check
                ));
            }
        }
        problems
    }
}

/// `bytes` per message; 0 for no messages.
pub fn per_message(bytes: i64, messages: u64) -> f64 {
    if messages == 0 {
        0.0
    } else {
        bytes as f64 / messages as f64
    }
}

fn met(yes: bool) -> &'static str {
    if yes { "met" } else { "NOT met" }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "confide-ingress: {} cores ({}/{}), PostgreSQL {} (synchronous_commit={}, fsync={})",
            self.machine.cores,
            self.machine.os,
            self.machine.arch,
            self.postgres.server_version,
            self.postgres.synchronous_commit,
            self.postgres.fsync
        )?;
        writeln!(
            f,
            "{} closed-loop callers over {} HTTP/2 connections, {} s warm-up, {} s counted; \
             {}-byte payloads",
            o.concurrency, o.connections, o.warm_up_secs, o.duration_secs, o.message_size
        )?;
        writeln!(f)?;
        self.fmt_servers(f)?;
        writeln!(f)?;
        self.fmt_storage(f)?;
        for problem in self.problems() {
            writeln!(f, "PROBLEM: {problem}")?;
        }
        Ok(())
    }
}

impl Report {
    /// The three servers side by side, the ratio to its target, and the
    /// timed run's check.
    fn fmt_servers(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<34} {:>10} {:>9} {:>9} {:>9} {:>8}",
            "server", "calls/s", "p50 ms", "p99 ms", "max ms", "errors"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, l: &LoadFigures| {
            writeln!(
                f,
                "{:<34} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>8}",
                name,
                l.calls_per_sec,
                l.latency.p50_ms,
                l.latency.p99_ms,
                l.latency.max_ms,
                l.errors.values().sum::<u64>()
            )
        };
        let inserts = &self.postgres_insert;
        let connections = inserts.connections;
        row(f, "tonic echo (reference)", &self.echo)?;
        let name = format!("PostgreSQL INSERT, {connections} connections");
        row(f, &name, &inserts.load)?;
        let name = format!("DS SendMessage, {} groups", self.options.groups);
        row(f, &name, &self.ingress.load)?;
        writeln!(
            f,
            "ingress / echo = {:.3} (target >= {}: {})",
            self.ingress_to_echo_ratio,
            self.targets.ingress_ratio_min,
            met(self.targets.ingress_ratio_met)
        )?;
        let check = &self.ingress.check;
        writeln!(
            f,
            "acknowledged {}, in the log {} (duplicates {}, missing {}, unacknowledged {}); \
             {:.0}-byte MLS messages, {:.0} B stored each; setup {:.1} s",
            check.acknowledged,
            check.stored,
            check.duplicate_acks,
            check.missing,
            check.unacknowledged,
            self.ingress.wire_bytes_per_message,
            self.ingress.stored_bytes_per_message,
            self.ingress.setup_secs
        )
    }

    /// Bytes stored per message by group size, and the ratio's target.
    fn fmt_storage(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>10} {:>8} {:>8} {:>10} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "group size",
            "messages",
            "wire B",
            "stored B",
            "ratio",
            "heap B",
            "index B",
            "toast B",
            "row B"
        )?;
        for s in &self.storage {
            writeln!(
                f,
                "{:>10} {:>8} {:>8.1} {:>10.1} {:>7.3} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                s.group_size,
                s.messages,
                s.wire_bytes_per_message,
                s.stored_bytes_per_message,
                s.stored_to_wire_ratio,
                s.heap_bytes_per_message,
                s.index_bytes_per_message,
                s.toast_bytes_per_message,
                s.row_bytes
            )?;
        }
        writeln!(
            f,
            "stored / wire (target <= {}: {})",
            self.targets.storage_ratio_max,
            met(self.targets.storage_ratio_met)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Check;

    #[test]
    fn a_check_counts_lost_duplicated_and_unacknowledged_entries() {
        let mut check = Check::default();
        check.add(vec![3, 1, 2], &[1, 2, 3]);
        assert!(check.is_exact());
        check.add(vec![5, 5, 7, 9], &[5, 6, 7]);
        assert_eq!(check.duplicate_acks, 1);
        assert_eq!(check.missing, 1);
        assert_eq!(check.unacknowledged, 1);
        assert!(!check.is_exact());
    }
}
