//! `confide-subscriptions`: starts a `confide-ds` process, opens one live
//! stream per client and reports the DS's resident memory. See
//! `confide_tools::subscriptions`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use confide_tools::binary;
use confide_tools::subscriptions::{self, DsProcess, Options, ds_process::DsCommand};

#[derive(Parser)]
#[command(
    name = "confide-subscriptions",
    version,
    about = "Live subscriptions held by one confide-ds process, and the memory they take"
)]
struct Cli {
    /// Clients, each with one live Subscribe stream.
    #[arg(long, default_value_t = 50_000)]
    clients: usize,
    /// HTTP/2 connections the streams share; default one per 200 streams
    /// (the DS allows 256 per connection unless raised).
    #[arg(long)]
    connections: Option<usize>,
    /// Clients in the MLS group whose message checks the streams are live.
    #[arg(long, default_value_t = 100)]
    sample: usize,
    /// Open streams at which the DS's memory is also read.
    #[arg(long, value_delimiter = ',', default_value = "10000,25000")]
    checkpoints: Vec<usize>,
    /// Registrations and Subscribe calls in flight at once.
    #[arg(long, default_value_t = 128)]
    parallelism: usize,
    /// The `confide-ds` binary to measure.
    #[arg(long, default_value = "target/release/confide-ds")]
    ds_bin: PathBuf,
    /// The DS's store: `memory`, or `postgres` (CONFIDE__DATABASE__URL).
    #[arg(long, default_value = "memory")]
    store: String,
    /// Where the DS's warnings and errors go.
    #[arg(long)]
    ds_log: Option<PathBuf>,
    /// The DS's peak resident memory must stay within this (bytes).
    #[arg(long, default_value_t = 2 * 1024 * 1024 * 1024)]
    max_rss: u64,
    /// Where to write the report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Exit codes: 0 every stream live and the peak memory within `--max-rss`,
/// 1 not, 2 a run that could not be made (the DS did not start, a call
/// failed).
#[tokio::main]
async fn main() -> ExitCode {
    binary::main("confide-subscriptions", run(Cli::parse())).await
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let connections = cli
        .connections
        .unwrap_or_else(|| cli.clients.div_ceil(200))
        .max(1);
    let command = DsCommand {
        binary: cli.ds_bin.clone(),
        store: cli.store.clone(),
        connections,
        streams_per_connection: cli.clients.div_ceil(connections),
        log: cli.ds_log.clone(),
    };
    let ds = DsProcess::spawn(&command, Duration::from_secs(30))
        .with_context(|| format!("starting {}", cli.ds_bin.display()))?;
    eprintln!(
        "confide-ds (pid {}) at {}, with {:?}",
        ds.pid(),
        ds.endpoint,
        command.environment()
    );
    let options = Options {
        clients: cli.clients,
        connections,
        sample: cli.sample.min(cli.clients),
        checkpoints: cli.checkpoints.clone(),
        parallelism: cli.parallelism,
        ..Options::default()
    };
    let outcome = subscriptions::run(&ds.endpoint, &options, &ds)
        .await
        .context("the run failed")?;
    println!("{outcome}");
    let json = outcome.to_json(cli.max_rss, &command.environment());
    if let Some(path) = &cli.json {
        binary::write_json(path, &json)?;
    }
    let within = json.within_limit.unwrap_or(false);
    println!(
        "DS peak RSS {} the {:.2} GiB target",
        if within { "within" } else { "NOT within" },
        cli.max_rss as f64 / (1024.0 * 1024.0 * 1024.0)
    );
    drop(ds);
    Ok(outcome.is_live() && within)
}
