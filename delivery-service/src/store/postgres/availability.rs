//! Whether PostgreSQL can be reached. A watchdog probes it on a connection of
//! its own, every few seconds while it answers, at once when a call could not
//! reach it, and with exponential back-off while it is down. While it is down
//! every call fails at once with `StoreError::Unavailable`, without trying
//! the database: the DS never reconnects in a hot loop, and health follows
//! [`Availability::subscribe`]. Each change is logged once, with its cause;
//! failed probes while down at most every [`STILL_DOWN_LOG_PERIOD`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};
use tokio_util::sync::CancellationToken;

use crate::log_limit::LogLimit;
use crate::store::{StoreError, StoreResult};

/// How often the database is probed while it answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a probe (connect and `SELECT 1`) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Back-off cap while down: also the longest the DS stays NOT_SERVING after
/// the database is back.
const MAX_BACKOFF: Duration = Duration::from_secs(3);
const STILL_DOWN_LOG_PERIOD: Duration = Duration::from_secs(30);

/// The database's reachability, shared by a store's clones and its watchdog.
pub struct Availability {
    up: watch::Sender<bool>,
    /// A call could not reach the database: probe now.
    suspect: Notify,
    /// How the watchdog connects.
    config: Config,
}

/// What a call gets while the database is known to be down.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL is unreachable (probed with back-off until it is back)")]
struct KnownDown;

impl Availability {
    /// Up: a store is built once the database answered.
    pub(super) fn new(config: Config) -> Arc<Self> {
        Arc::new(Self {
            up: watch::Sender::new(true),
            suspect: Notify::new(),
            config,
        })
    }

    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// `true` while the database can be reached, as it changes.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Runs a store call: at once `Unavailable` while the database is known
    /// to be down; a call that finds it unreachable has the watchdog probe.
    pub(super) async fn guard<T>(
        &self,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if !self.is_up() {
            return Err(StoreError::Unavailable(Box::new(KnownDown)));
        }
        let result = call.await;
        if let Err(StoreError::Unavailable(_)) = &result {
            self.suspect.notify_one();
        }
        result
    }
}

/// Whether an error means PostgreSQL cannot be reached: the connection is
/// closed or failed (I/O), or the server is starting up, shutting down or
/// refusing connections (SQLSTATE class 08, 57P01–57P03).
pub(super) fn unreachable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

/// One probe: a new connection and `SELECT 1`.
async fn probe(config: &Config) -> Result<(), String> {
    let attempt = async {
        let (client, connection) = config.connect(NoTls).await?;
        let connection = tokio::spawn(connection);
        client.simple_query("SELECT 1").await?;
        drop(client);
        let _ = connection.await;
        Ok::<_, tokio_postgres::Error>(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(cause(&error)),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The error with its sources ("error connecting to server: Connection refused").
fn cause(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// The watchdog (see the module docs), until `shutdown`.
pub async fn watch(availability: Arc<Availability>, shutdown: CancellationToken) {
    let still_down = LogLimit::new(STILL_DOWN_LOG_PERIOD);
    let mut backoff = MIN_BACKOFF;
    loop {
        let wait = if availability.is_up() {
            PROBE_INTERVAL
        } else {
            backoff
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = availability.suspect.notified(), if availability.is_up() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        match probe(&availability.config).await {
            Ok(()) => {
                if !availability.is_up() {
                    tracing::info!("PostgreSQL is reachable again: serving");
                    availability.up.send_replace(true);
                }
                backoff = MIN_BACKOFF;
            }
            Err(cause) => {
                if availability.is_up() {
                    tracing::error!(%cause, "PostgreSQL is unreachable: calls get UNAVAILABLE \
                        and health is NOT_SERVING until it is back");
                    availability.up.send_replace(false);
                } else if let Some(suppressed) = still_down.admit() {
                    tracing::warn!(%cause, failed_probes_not_logged = suppressed,
                        retry_in = ?backoff, "PostgreSQL is still unreachable");
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
