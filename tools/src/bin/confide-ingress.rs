//! `confide-ingress`: the delivery service's durable application-message
//! ingress against a trivial tonic echo server on the same machine, and the
//! bytes PostgreSQL stores per message. See `confide_tools::ingress`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use confide_tools::binary;
use confide_tools::ingress::{self, Options};

#[derive(Parser)]
#[command(
    name = "confide-ingress",
    version,
    about = "The delivery service's durable send path against a trivial gRPC echo server, and the bytes it stores per message"
)]
struct Cli {
    /// The PostgreSQL server; a fresh database is created on it for the run
    /// and dropped afterwards.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Callers, each with one call in flight (closed loop).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections the callers share, per server.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Groups (of two) the timed DS run spreads its sends over.
    #[arg(long, default_value_t = 64)]
    groups: usize,
    /// Seconds of calls before counting starts.
    #[arg(long, default_value_t = 2.0)]
    warm_up: f64,
    /// Seconds counted, per server.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Plaintext bytes per application message (and echo payload bytes).
    #[arg(long, default_value_t = 246)]
    message_size: usize,
    /// Group sizes whose bytes stored per message are measured
    /// (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    storage_groups: Vec<usize>,
    /// Messages sent to each of those groups.
    #[arg(long, default_value_t = 2000)]
    storage_messages: usize,
    /// Most messages encrypted ahead of the timed run.
    #[arg(long, default_value_t = 400_000)]
    max_messages: usize,
    /// Keep the run's database (named confide_ingress_*) for a post-mortem.
    #[arg(long)]
    keep_database: bool,
    /// Where to write the figures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Exit codes: 0 a clean run (whether or not the targets were met), 1 a run
/// whose checks failed (failed calls, acknowledged messages not stored
/// exactly once), 2 a run that could not be made (PostgreSQL unreachable).
#[tokio::main]
async fn main() -> ExitCode {
    binary::main("confide-ingress", run(Cli::parse())).await
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let options = Options {
        database_url: cli.database_url,
        concurrency: cli.concurrency,
        connections: cli.connections,
        groups: cli.groups,
        warm_up_secs: cli.warm_up,
        duration_secs: cli.duration,
        message_size: cli.message_size,
        storage_group_sizes: cli.storage_groups,
        storage_messages: cli.storage_messages,
        max_messages: cli.max_messages,
        keep_database: cli.keep_database,
    };
    let quiet = cli.quiet;
    let progress = move |line: &str| {
        if !quiet {
            eprintln!("confide-ingress: {line}");
        }
    };
    let report = ingress::run(options, &progress).await?;
    println!("{report}");
    if let Some(path) = &cli.json {
        binary::write_json(path, &report)?;
    }
    Ok(report.is_clean())
}
