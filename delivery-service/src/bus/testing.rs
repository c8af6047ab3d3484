//! NATS for tests: the server `NATS_URL` names (default
//! [`DEFAULT_NATS_URL`]), checked once, and subject prefixes of their own,
//! so tests sharing one NATS never hear each other. Behind the `testing`
//! feature, so a production build does not carry it.

use std::time::Duration;

use crate::config::{BusKind, Settings};

/// Where the test NATS listens unless `NATS_URL` says otherwise.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `NATS_URL`, or [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// A subject prefix no other test uses.
pub fn unique_subject_prefix() -> String {
    format!("confide_test.{}", uuid::Uuid::new_v4().simple())
}

/// Connects to `url` once, to tell a missing NATS from a failing test.
///
/// # Panics
///
/// If NATS cannot be reached there, with a message saying how to start it.
pub async fn require_nats(url: &str) {
    let reached = tokio::time::timeout(
        Duration::from_secs(5),
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(url),
    )
    .await;
    match reached {
        Ok(Ok(client)) => drop(client),
        Ok(Err(error)) => panic!(
            "NATS cannot be reached at {url} ({error}); start NATS: nats-server -js -p 4222 \
             (or set NATS_URL)"
        ),
        Err(_) => panic!(
            "NATS at {url} did not answer in 5 s; start NATS: nats-server -js -p 4222 \
             (or set NATS_URL)"
        ),
    }
}

/// `settings` on the bus of the test NATS, with a subject prefix of their
/// own (replicas of one test copy the settings, so they share it).
///
/// # Panics
///
/// If NATS cannot be reached, with a message saying how to start it.
pub async fn on_test_nats(settings: &mut Settings) {
    let url = nats_url();
    require_nats(&url).await;
    settings.bus.kind = BusKind::Nats;
    settings.bus.url = url;
    settings.bus.subject_prefix = unique_subject_prefix();
}
