//! What a run measured: the DS's memory before, along and with every
//! subscription open, and whether every stream was live.

use std::fmt;

use serde::Serialize;

use super::Memory;

/// The DS's memory with this many subscriptions open.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub subscriptions: u64,
    pub memory: Option<Memory>,
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub clients: u64,
    pub connections: u64,
    pub register_secs: f64,
    pub subscribe_secs: f64,
    /// Connected, nobody registered yet.
    pub memory_idle: Option<Memory>,
    /// Every client registered (and the sample group built), no stream open.
    pub memory_before: Option<Memory>,
    /// Every stream open.
    pub memory_with: Option<Memory>,
    /// After the liveness check, streams still open.
    pub memory_end: Option<Memory>,
    /// Memory at each checkpoint, the last one with every stream open.
    pub curve: Vec<Point>,
    /// Streams open at the end.
    pub streams_open: u64,
    /// Streams that ended or failed while they should have stayed open.
    pub streams_ended: u64,
    /// Subscribe calls that were refused.
    pub subscribe_failures: u64,
    pub first_error: Option<String>,
    /// Sample members (but the sender) that should get the message, and did.
    pub sample_expected: u64,
    pub sample_received: u64,
    /// From sending the sample message until the last member got it.
    pub delivery_ms: Option<f64>,
}

impl Outcome {
    /// What each open stream added to the DS's resident memory:
    /// (RSS with every stream open − RSS before any) / streams.
    pub fn bytes_per_subscription(&self) -> Option<f64> {
        let (before, with) = (self.memory_before?, self.memory_with?);
        let streams = self.curve.last()?.subscriptions;
        (streams > 0).then(|| (with.rss_bytes as f64 - before.rss_bytes as f64) / streams as f64)
    }

    /// The largest resident memory the DS reached during the run.
    pub fn peak_bytes(&self) -> Option<u64> {
        [self.memory_end, self.memory_with, self.memory_before]
            .into_iter()
            .flatten()
            .map(|m| m.peak_bytes)
            .max()
    }

    /// Every client held a stream to the end, and every sample member got
    /// the message.
    pub fn is_live(&self) -> bool {
        self.subscribe_failures == 0
            && self.streams_ended == 0
            && self.streams_open == self.clients
            && self.sample_received == self.sample_expected
    }

    /// The JSON report; `limit_bytes` is the memory target the peak is held to.
    pub fn to_json(&self, limit_bytes: u64, ds_settings: &[(String, String)]) -> Json {
        Json {
            clients: self.clients,
            connections: self.connections,
            streams_per_connection: self.clients.div_ceil(self.connections.max(1)),
            ds_settings: ds_settings.iter().cloned().collect(),
            register_secs: self.register_secs,
            subscribe_secs: self.subscribe_secs,
            rss_idle_bytes: self.memory_idle.map(|m| m.rss_bytes),
            rss_before_bytes: self.memory_before.map(|m| m.rss_bytes),
            rss_with_bytes: self.memory_with.map(|m| m.rss_bytes),
            rss_end_bytes: self.memory_end.map(|m| m.rss_bytes),
            rss_peak_bytes: self.peak_bytes(),
            bytes_per_subscription: self.bytes_per_subscription(),
            limit_bytes,
            within_limit: self.peak_bytes().map(|peak| peak <= limit_bytes),
            curve: self.curve.clone(),
            streams_open: self.streams_open,
            streams_ended: self.streams_ended,
            subscribe_failures: self.subscribe_failures,
            first_error: self.first_error.clone(),
            sample_expected: self.sample_expected,
            sample_received: self.sample_received,
            delivery_ms: self.delivery_ms,
            live: self.is_live(),
        }
    }
}

/// `--json`: the same figures as the table, in bytes and seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Json {
    pub clients: u64,
    pub connections: u64,
    pub streams_per_connection: u64,
    /// The DS configuration set for the run (environment variables).
    pub ds_settings: std::collections::BTreeMap<String, String>,
    pub register_secs: f64,
    pub subscribe_secs: f64,
    pub rss_idle_bytes: Option<u64>,
    pub rss_before_bytes: Option<u64>,
    pub rss_with_bytes: Option<u64>,
    pub rss_end_bytes: Option<u64>,
    pub rss_peak_bytes: Option<u64>,
    pub bytes_per_subscription: Option<f64>,
    pub limit_bytes: u64,
    /// The peak resident memory stayed within `limit_bytes`.
    pub within_limit: Option<bool>,
    pub curve: Vec<Point>,
    pub streams_open: u64,
    pub streams_ended: u64,
    pub subscribe_failures: u64,
    pub first_error: Option<String>,
    pub sample_expected: u64,
    pub sample_received: u64,
    pub delivery_ms: Option<f64>,
    pub live: bool,
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "-".to_string(),
        |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    )
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} clients, {} HTTP/2 connections ({} streams per connection); registered in {:.1} s, \
             subscribed in {:.1} s",
            self.clients,
            self.connections,
            self.clients.div_ceil(self.connections.max(1)),
            self.register_secs,
            self.subscribe_secs
        )?;
        writeln!(f, "{:<40} {:>12} {:>12}", "DS memory", "RSS", "peak")?;
        let mut row = |name: String, memory: Option<super::Memory>| {
            writeln!(
                f,
                "{name:<40} {:>12} {:>12}",
                mib(memory.map(|m| m.rss_bytes)),
                mib(memory.map(|m| m.peak_bytes))
            )
        };
        row("idle".into(), self.memory_idle)?;
        row("registered, no stream".into(), self.memory_before)?;
        for point in &self.curve {
            row(
                format!("{} streams open", point.subscriptions),
                point.memory,
            )?;
        }
        row("after the liveness check".into(), self.memory_end)?;
        match self.bytes_per_subscription() {
            Some(bytes) => writeln!(f, "per subscription: {bytes:.0} B")?,
            None => writeln!(f, "per subscription: not measured")?,
        }
        writeln!(
            f,
            "streams open {} of {}, ended {}, refused {}; sample message reached {} of {}{}",
            self.streams_open,
            self.clients,
            self.streams_ended,
            self.subscribe_failures,
            self.sample_received,
            self.sample_expected,
            self.delivery_ms
                .map(|ms| format!(" in {ms:.1} ms"))
                .unwrap_or_default()
        )?;
        if let Some(error) = &self.first_error {
            writeln!(f, "first error: {error}")?;
        }
        write!(
            f,
            "{}",
            if self.is_live() {
                "every stream live"
            } else {
                "NOT every stream live"
            }
        )
    }
}
