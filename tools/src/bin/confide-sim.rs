//! `confide-sim`: load-tests a Confide delivery service with virtual MLS
//! clients and reports what it measured. See `confide_tools::sim`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use confide_client::TlsOptions;
use confide_tools::binary;
use confide_tools::sim::{self, GroupSpec, Scenario, Target};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Store {
    Memory,
    Postgres,
}

/// Flags override the scenario file, which overrides the defaults.
#[derive(Parser)]
#[command(
    name = "confide-sim",
    version,
    about = "Thousands of virtual Confide clients against a delivery service, counting every promise kept or broken"
)]
struct Cli {
    /// A YAML scenario (fields as in `confide_tools::sim::Scenario`).
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// A running DS to load-test; without it a DS is started in-process.
    #[arg(long)]
    target: Option<String>,
    /// The store of the in-process DS.
    #[arg(long, value_enum, default_value = "memory")]
    store: Store,
    /// PostgreSQL for `--store postgres` (migrated at start).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// A CA certificate (PEM) for an `https://` target.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// Registration token, if the target requires one.
    #[arg(long, env = "CONFIDE_REGISTRATION_TOKEN", default_value = "")]
    registration_token: String,
    #[arg(long)]
    users: Option<usize>,
    #[arg(long)]
    devices_per_user: Option<usize>,
    /// Groups as COUNTxSIZE (users per group), repeatable: `--groups 100x10
    /// --groups 1x1000`.
    #[arg(long)]
    groups: Vec<GroupSpec>,
    /// Messages per second over all groups (Poisson arrivals).
    #[arg(long)]
    rate: Option<f64>,
    /// Plaintext bytes per message.
    #[arg(long)]
    message_size: Option<usize>,
    /// Seconds of messaging.
    #[arg(long)]
    duration: Option<f64>,
    #[arg(long)]
    ramp_up: Option<f64>,
    #[arg(long)]
    senders_per_group: Option<usize>,
    #[arg(long)]
    verifiers_per_group: Option<usize>,
    /// HTTP/2 connections the virtual clients share.
    #[arg(long)]
    connections: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Churn, per minute over all groups: full members refreshing their keys.
    #[arg(long)]
    self_updates_per_minute: Option<f64>,
    /// Users added to a group they are not in, per minute.
    #[arg(long)]
    adds_per_minute: Option<f64>,
    /// Counting-only users removed from a group, per minute.
    #[arg(long)]
    removes_per_minute: Option<f64>,
    /// Fault: every full member of a group commits at once, per minute.
    #[arg(long)]
    commit_storms_per_minute: Option<f64>,
    /// Fault: the fraction of sends whose answer is thrown away, so the
    /// client sends again with the same idempotency key.
    #[arg(long)]
    dropped_responses: Option<f64>,
    /// Fault: full members stopped and restarted from their state, per minute.
    #[arg(long)]
    client_restarts_per_minute: Option<f64>,
    /// Fault: restarts of the in-process DS (needs `--store postgres`).
    #[arg(long)]
    ds_restarts: Option<u32>,
    /// Run the scenario once per rate (messages/s), e.g. `--sweep
    /// 100,200,400`, and report each; with `--plot-sweep`, chart latency
    /// against offered load.
    #[arg(long, value_delimiter = ',')]
    sweep: Vec<f64>,
    /// Where to write the report as JSON (a list of reports for a sweep).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to draw end-to-end latency second by second, as SVG (the last
    /// run of a sweep).
    #[arg(long)]
    plot_latency: Option<PathBuf>,
    /// Where to draw a sweep's latency against offered load, as SVG.
    #[arg(long, requires = "sweep")]
    plot_sweep: Option<PathBuf>,
    /// No progress display.
    #[arg(long)]
    quiet: bool,
}

impl Cli {
    fn scenario(&self) -> anyhow::Result<Scenario> {
        let mut scenario = match &self.scenario {
            Some(path) => Scenario::from_yaml_file(path)?,
            None => Scenario::default(),
        };
        macro_rules! flag {
            ($($flag:ident => $field:ident),*) => {
                $(if let Some(value) = self.$flag { scenario.$field = value; })*
            };
        }
        flag!(users => users, devices_per_user => devices_per_user, rate => message_rate,
              message_size => message_size, duration => duration_secs, ramp_up => ramp_up_secs,
              senders_per_group => senders_per_group, verifiers_per_group => verifiers_per_group,
              connections => connections, seed => seed,
              self_updates_per_minute => self_updates_per_minute,
              adds_per_minute => adds_per_minute, removes_per_minute => removes_per_minute,
              commit_storms_per_minute => commit_storms_per_minute,
              dropped_responses => dropped_responses,
              client_restarts_per_minute => client_restarts_per_minute,
              ds_restarts => ds_restarts);
        if !self.groups.is_empty() {
            scenario.groups = self.groups.clone();
        }
        Ok(scenario)
    }

    fn target(&self) -> anyhow::Result<Target> {
        Ok(match (&self.target, self.store) {
            (Some(endpoint), _) => Target::Remote {
                endpoint: endpoint.clone(),
                tls: TlsOptions {
                    ca_certificate: match &self.ca_cert {
                        Some(path) => Some(
                            std::fs::read(path)
                                .with_context(|| format!("reading {}", path.display()))?,
                        ),
                        None => None,
                    },
                    ..TlsOptions::default()
                },
                registration_token: self.registration_token.clone(),
            },
            (None, Store::Memory) => Target::InMemory,
            (None, Store::Postgres) => Target::Postgres {
                database_url: self.database_url.clone(),
            },
        })
    }
}

/// Exit codes: 0 a clean run, 1 a run that found problems (lost, forked,
/// duplicated or altered messages), 2 a run that could not be made.
#[tokio::main]
async fn main() -> ExitCode {
    binary::main("confide-sim", run(Cli::parse())).await
}

/// Runs the simulation (once, or once per rate of a sweep) and prints each
/// report; returns whether every run was clean.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let scenario = cli.scenario()?;
    let runs: Vec<Scenario> = match cli.sweep.is_empty() {
        true => vec![scenario],
        false => cli
            .sweep
            .iter()
            .map(|&rate| Scenario {
                message_rate: rate,
                ..scenario.clone()
            })
            .collect(),
    };
    // Every run is checked before the first starts.
    for run in &runs {
        run.validate()?;
    }
    let mut reports = Vec::with_capacity(runs.len());
    for run in runs {
        if !cli.sweep.is_empty() {
            eprintln!("confide-sim: {} messages/s", run.message_rate);
        }
        let report = sim::run(run, cli.target()?, !cli.quiet).await?;
        println!("{report}");
        reports.push(report);
    }
    match (&cli.json, reports.as_slice()) {
        (Some(path), [one]) => binary::write_json(path, one)?,
        (Some(path), all) => binary::write_json(path, &all)?,
        (None, _) => {}
    }
    if let (Some(path), Some(last)) = (&cli.plot_latency, reports.last()) {
        sim::plot::latency_over_time(last, path).map_err(anyhow::Error::msg)?;
    }
    if let Some(path) = &cli.plot_sweep {
        sim::plot::load_sweep(&reports, path).map_err(anyhow::Error::msg)?;
    }
    Ok(reports.iter().all(|r| r.is_clean()))
}
