//! `confide-ingress`: how fast the delivery service durably accepts
//! application messages, against how fast tonic answers a call that does
//! nothing, and how many bytes PostgreSQL stores per message.
//!
//! A run, in one process on one machine: create a fresh PostgreSQL database
//! and serve a DS on it (synchronous commit as the server has it, `on` by
//! default) and a trivial echo server, both on 127.0.0.1; drive the echo
//! server with K closed-loop callers over a few shared HTTP/2 connections;
//! register real MLS clients, build groups of two and have each sender
//! encrypt its messages *before* the clock starts, so client crypto is not
//! measured; drive the DS with the same callers sending those messages as
//! raw `SendMessageRequest`s; check that the log holds every acknowledged
//! message exactly once. Then, for a group of each size asked for (10 and
//! 1,000 by default), send a batch of messages and measure how much
//! `group_log` (heap, indexes, TOAST) grew per message, against the
//! messages' MLS wire size. The database is dropped at the end.

mod callers;
mod database;
pub mod echo;
pub mod load;
pub mod report;
mod setup;
mod storage;

use std::time::{Duration, Instant};

use confide_client::{Api, GroupId};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::error::ClientFailed;
use callers::{ds_callers, echo_callers};
use database::RunDatabase;
pub use database::{DATABASE_PREFIX, ServerSettings};
use load::{LoadFigures, Window};
pub use report::{Check, Report, StorageFigures};
use storage::measure_storage;

/// Pre-encrypted messages per caller are sized from the echo server's rate
/// with this much to spare: the DS does more per call than an echo, so it
/// cannot need more messages than the echo server answered calls.
const HEADROOM: f64 = 1.25;
/// Bytes per row of PostgreSQL's own insert rate: about the MLS wire size of
/// a 246-byte message (392 B).
const WIRE_SIZE_GUESS: usize = 392;

/// What to run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Options {
    /// The PostgreSQL server to create the run's database on (any database
    /// on it; the URL's own database is not touched).
    #[serde(skip)]
    pub database_url: String,
    /// Callers, each with one call in flight (closed loop).
    pub concurrency: usize,
    /// HTTP/2 connections the callers share, per server.
    pub connections: usize,
    /// Groups the timed DS run sends to (two members each); caller `i`
    /// sends to group `i % groups`.
    pub groups: usize,
    pub warm_up_secs: f64,
    pub duration_secs: f64,
    /// Plaintext bytes per application message, and the echo payload size.
    pub message_size: usize,
    /// Group sizes (members) whose bytes stored per message are measured.
    pub storage_group_sizes: Vec<usize>,
    /// Messages sent to each of those groups.
    pub storage_messages: usize,
    /// Most messages encrypted ahead of the timed run (memory bound).
    pub max_messages: usize,
    /// Leave the database behind for a post-mortem.
    pub keep_database: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            database_url: confide_ds::store::postgres::testing::DEFAULT_DATABASE_URL.to_owned(),
            concurrency: 64,
            connections: 4,
            groups: 64,
            warm_up_secs: 2.0,
            duration_secs: 10.0,
            message_size: 246,
            storage_group_sizes: vec![10, 1000],
            storage_messages: 2000,
            max_messages: 400_000,
            keep_database: false,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), IngressError> {
        let mut problems = Vec::new();
        if self.concurrency == 0 {
            problems.push("concurrency must be at least 1");
        }
        if self.connections == 0 {
            problems.push("connections must be at least 1");
        }
        if self.groups == 0 || self.groups > self.concurrency {
            problems.push("groups must be between 1 and the concurrency");
        }
        let timed = self.duration_secs.is_finite()
            && self.duration_secs > 0.0
            && self.warm_up_secs.is_finite()
            && self.warm_up_secs >= 0.0;
        if !timed {
            problems.push("the duration must be positive and the warm-up not negative");
        }
        if self.storage_group_sizes.iter().any(|&size| size < 2) {
            problems.push("storage groups need at least 2 members");
        }
        if self.storage_messages == 0 {
            problems.push("storage messages must be at least 1");
        }
        if self.max_messages < self.concurrency {
            problems.push("max messages must be at least the concurrency");
        }
        match problems.is_empty() {
            true => Ok(()),
            false => Err(IngressError::Invalid(problems.join("; "))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error(
        "PostgreSQL is not reachable at {url}: start it with \
         `pg_ctlcluster --skip-systemctl-redirect 15 main start`, or point DATABASE_URL \
         (or --database-url) at a running server ({source})"
    )]
    Unreachable {
        url: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL: {0}")]
    Database(String),
    #[error("starting a server: {0}")]
    Server(String),
    #[error(transparent)]
    Client(#[from] ClientFailed),
    #[error("{0}")]
    Invalid(String),
}

/// `url` without its password, for messages.
fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |at| scheme_end + at);
    let authority = &url[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
        _ => url.to_owned(),
    }
}

/// Runs the benchmark. `progress` hears what is happening (for a terminal).
pub async fn run(options: Options, progress: &dyn Fn(&str)) -> Result<Report, IngressError> {
    options.validate()?;
    let database =
        RunDatabase::create(&options.database_url)
            .await
            .map_err(|error| match error {
                IngressError::Unreachable { source, .. } => IngressError::Unreachable {
                    url: redacted(&options.database_url),
                    source,
                },
                other => other,
            })?;
    progress(&format!("database {}", database.name));
    let stop = CancellationToken::new();
    let result = measure(&options, &database, &stop, progress).await;
    stop.cancel();
    if options.keep_database {
        progress(&format!("kept database {}", database.name));
    } else {
        let name = database.name.clone();
        if let Err(error) = database.drop_database().await {
            progress(&format!("could not drop database {name}: {error}"));
        }
    }
    result
}

async fn connections(endpoint: &str, count: usize) -> Result<Vec<Channel>, IngressError> {
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| IngressError::Server(format!("{endpoint}: {e}")))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| IngressError::Server(format!("connecting to {endpoint}: {e}")))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Serves a DS on the run's database on 127.0.0.1, port 0, with the
/// per-client rate limits lifted (the benchmark is the only client), until
/// `stop`. Returns its endpoint and its database pool size.
async fn start_ds(url: &str, stop: &CancellationToken) -> Result<(String, usize), IngressError> {
    let mut settings = confide_ds::Settings::for_tests();
    settings.lift_limits();
    settings.store = confide_ds::config::StoreKind::Postgres;
    settings.database.url = url.to_owned();
    let pool_size = settings.database.max_connections;
    let app = confide_ds::App::build(settings)
        .await
        .map_err(|e| IngressError::Server(format!("the DS: {e}")))?;
    let endpoint = format!("http://{}", app.addr());
    tokio::spawn(app.run_until_stopped(stop.clone()));
    Ok((endpoint, pool_size))
}

/// Compares what each group's callers were acknowledged with what the
/// group's log holds.
async fn check(
    database: &RunDatabase,
    groups: &[(GroupId, Vec<u64>)],
) -> Result<Check, IngressError> {
    let mut check = Check::default();
    for (group_id, acknowledged) in groups {
        let stored = database.application_seqs(group_id).await?;
        check.add(acknowledged.clone(), &stored);
    }
    Ok(check)
}

/// The servers, then each measurement in turn: the echo reference,
/// PostgreSQL alone, the DS's timed ingress, bytes stored by group size.
async fn measure(
    options: &Options,
    database: &RunDatabase,
    stop: &CancellationToken,
    progress: &dyn Fn(&str),
) -> Result<Report, IngressError> {
    let (ds_endpoint, pool_size) = start_ds(&database.url, stop).await?;
    let echo_endpoint = echo::start(stop.clone())
        .await
        .map_err(|e| IngressError::Server(format!("the echo server: {e}")))?;
    let postgres = database.settings().await?;
    let window = Window {
        warm_up: Duration::from_secs_f64(options.warm_up_secs),
        duration: Some(Duration::from_secs_f64(options.duration_secs)),
    };
    let echo = measure_echo(options, &echo_endpoint, window, progress).await?;
    let postgres_insert = measure_inserts(options, database, pool_size, window, progress).await?;
    let ds_channels = connections(&ds_endpoint, options.connections).await?;
    let apis: Vec<Api> = ds_channels.iter().cloned().map(Api::from_channel).collect();
    let ds = (&ds_channels[..], &apis[..]);
    let ingress = measure_ingress(options, database, ds, (&echo, window), progress).await?;
    let mut storage = Vec::with_capacity(options.storage_group_sizes.len());
    for &size in &options.storage_group_sizes {
        progress(&format!(
            "storage: a group of {size}, {} messages",
            options.storage_messages
        ));
        storage.push(measure_storage(options, database, &ds_channels, &apis, size).await?);
    }
    Ok(Report::new(
        options.clone(),
        postgres,
        echo,
        postgres_insert,
        ingress,
        storage,
    ))
}

/// The reference: the trivial echo server under the same callers.
async fn measure_echo(
    options: &Options,
    endpoint: &str,
    window: Window,
    progress: &dyn Fn(&str),
) -> Result<LoadFigures, IngressError> {
    progress(&format!("echo: {} callers", options.concurrency));
    let channels = connections(endpoint, options.connections).await?;
    Ok(load::run(echo_callers(&channels, options), window)
        .await
        .figures)
}

/// What PostgreSQL alone commits per second, over as many connections as
/// the DS's pool: the floor under the DS.
async fn measure_inserts(
    options: &Options,
    database: &RunDatabase,
    pool_size: usize,
    window: Window,
    progress: &dyn Fn(&str),
) -> Result<report::PostgresInsert, IngressError> {
    progress(&format!(
        "postgres: {} callers over {pool_size} connections",
        options.concurrency
    ));
    let inserts = database
        .insert_callers(pool_size, options.concurrency, WIRE_SIZE_GUESS)
        .await?;
    Ok(report::PostgresInsert {
        load: load::run(inserts, window).await.figures,
        connections: pool_size,
        row_payload_bytes: WIRE_SIZE_GUESS,
    })
}

/// The subject: the DS's members, groups and pre-encrypted messages (as
/// many as the echo server's rate says the window can use), then the timed
/// run, checked against the log.
async fn measure_ingress(
    options: &Options,
    database: &RunDatabase,
    (channels, apis): (&[Channel], &[Api]),
    (echo, window): (&LoadFigures, Window),
    progress: &dyn Fn(&str),
) -> Result<report::Ingress, IngressError> {
    let setup_started = Instant::now();
    let total_secs = options.warm_up_secs + options.duration_secs;
    let per_caller =
        (echo.calls_per_sec * total_secs * HEADROOM / options.concurrency as f64).ceil() as usize;
    let per_caller = per_caller.clamp(1, options.max_messages / options.concurrency);
    progress(&format!(
        "ingress: {} groups of two, {} messages to encrypt",
        options.groups,
        per_caller * options.concurrency
    ));
    let prepared = setup::prepare_senders(options, apis, per_caller).await?;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    progress(&format!("ingress: {} callers", options.concurrency));
    let before = database.log_size().await?;
    let ingress = load::run(ds_callers(channels, prepared.sendings), window).await;
    let groups: Vec<&[u8]> = prepared.group_ids.iter().map(|g| g.as_slice()).collect();
    let grown = database.log_growth(before, &groups).await?;
    let mut acknowledged: Vec<(GroupId, Vec<u64>)> = prepared
        .group_ids
        .into_iter()
        .map(|g| (g, Vec::new()))
        .collect();
    for (caller, seqs) in ingress.acknowledged.iter().enumerate() {
        acknowledged[caller % options.groups].1.extend(seqs);
    }
    let check = check(database, &acknowledged).await?;
    Ok(report::Ingress {
        load: ingress.figures,
        setup_secs,
        wire_bytes_per_message: prepared.wire_bytes_per_message,
        stored_bytes_per_message: report::per_message(grown.total, check.stored),
        check,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(
            redacted("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("postgres://h:5432/db"), "postgres://h:5432/db");
    }

    #[test]
    fn options_that_cannot_run_are_refused_with_every_reason() {
        let options = Options {
            concurrency: 4,
            groups: 5,
            duration_secs: 0.0,
            ..Options::default()
        };
        let Err(IngressError::Invalid(reasons)) = options.validate() else {
            panic!("refused");
        };
        assert!(reasons.contains("groups"), "{reasons}");
        assert!(reasons.contains("duration"), "{reasons}");
        assert!(Options::default().validate().is_ok());
    }
}
