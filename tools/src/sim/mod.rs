//! `confide-sim`: drives real MLS clients (the client library, real openmls
//! crypto) against a real delivery service and reports what it measured.
//!
//! A run: check the [`Scenario`]; start a DS in-process or connect to one;
//! register every virtual client (sharing a few HTTP/2 connections); build
//! the groups; offer messages as an open-loop Poisson process; wait until
//! every acknowledged message reached every member; then put together the
//! [`Report`]: throughput, latency percentiles, and the promises checked
//! (nothing lost, duplicated, reordered, altered or forked).

mod actors;
pub mod body;
mod churn;
mod counter;
mod directory;
mod local_ds;
mod offer;
pub mod plot;
pub mod report;
pub mod scenario;
mod setup;
mod tally;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confide_client::{Api, TlsOptions};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::error::{ClientContext, ClientFailed};
use crate::register::register_all;
use directory::Progress;
use local_ds::{LocalDs, Scratch};
pub use report::Report;
use report::{Inputs, Setup};
pub use scenario::{GroupSpec, Scenario, ScenarioError};
use setup::{Actors, Plan};

/// The DS to run against.
#[derive(Clone)]
pub enum Target {
    /// A running DS.
    Remote {
        endpoint: String,
        tls: TlsOptions,
        registration_token: String,
    },
    /// A DS started in this process on the in-memory store.
    InMemory,
    /// A DS started in this process on PostgreSQL (migrated at start).
    Postgres { database_url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("starting the in-process delivery service: {0}")]
    Ds(String),
    #[error(transparent)]
    Client(#[from] ClientFailed),
    #[error("{0}")]
    Stalled(String),
}

/// Runs the scenario and returns the report. `show_progress` draws a
/// progress bar on stderr.
pub async fn run(
    scenario: Scenario,
    target: Target,
    show_progress: bool,
) -> Result<Report, SimError> {
    scenario.validate()?;
    if scenario.ds_restarts > 0 && !matches!(target, Target::Postgres { .. }) {
        return Err(ScenarioError::Invalid(
            "ds_restarts needs the simulator's own DS on PostgreSQL (--store postgres): \
             restarting the in-memory store loses everything by design, and a remote DS is \
             not the simulator's to restart"
                .into(),
        )
        .into());
    }
    let scratch = Scratch::new()?;
    let local = match &target {
        Target::Remote { .. } => None,
        _ => Some(LocalDs::start(&target, &scratch.0).await?),
    };
    let (endpoint, tls, token) = match (&target, &local) {
        (
            Target::Remote {
                endpoint,
                tls,
                registration_token,
            },
            _,
        ) => (endpoint.clone(), tls.clone(), registration_token.clone()),
        (_, Some(local)) => (local.endpoint.clone(), TlsOptions::default(), String::new()),
        _ => unreachable!("a local DS was started for every other target"),
    };
    let target_name = match &target {
        Target::Remote { endpoint, .. } => endpoint.clone(),
        Target::InMemory => format!("an in-process DS on the in-memory store ({endpoint})"),
        Target::Postgres { .. } => format!("an in-process DS on PostgreSQL ({endpoint})"),
    };
    let bar = progress_bar(show_progress);
    let connections = connect(&endpoint, &tls, scenario.connections).await?;
    let local = local.map(|ds| Arc::new(tokio::sync::Mutex::new(ds)));
    let report = simulate(
        scenario,
        connections,
        (&token, target_name),
        local.clone(),
        &scratch.0,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    if let Some(local) = local
        && let Ok(local) = Arc::try_unwrap(local)
    {
        local.into_inner().finish().await;
    }
    report
}

/// Opens the HTTP/2 connections the virtual clients share.
async fn connect(endpoint: &str, tls: &TlsOptions, count: usize) -> Result<Vec<Api>, SimError> {
    let mut connections = Vec::with_capacity(count);
    for _ in 0..count {
        connections.push(
            Api::connect_with(endpoint, tls)
                .await
                .context(format!("connecting to {endpoint}"))?,
        );
    }
    Ok(connections)
}

/// Registers every client, builds the groups, offers the load, drains and
/// reports.
async fn simulate(
    scenario: Scenario,
    connections: Vec<Api>,
    (token, target_name): (&str, String),
    local: Option<Arc<tokio::sync::Mutex<LocalDs>>>,
    scratch: &std::path::Path,
    bar: &ProgressBar,
) -> Result<Report, SimError> {
    let plan = Plan::new(&scenario, scratch);
    bar.set_message(format!("registering {} clients", plan.ids.len()));
    let started = Instant::now();
    let mut clients = register_all(&connections, plan.registrations(), token).await?;
    let register_secs = started.elapsed().as_secs_f64();

    bar.set_message(format!("building {} groups", plan.groups.len()));
    let started = Instant::now();
    let built = setup::build_groups(&plan, &mut clients).await?;
    let groups_secs = started.elapsed().as_secs_f64();

    let directory = Arc::new(plan.directory(&scenario, &built.group_ids));
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let mut actors = Actors::spawn(
        (&plan, &built, scenario.seed),
        clients,
        &directory,
        &progress,
        &stop,
    );
    bar.set_message("waiting for every full member to join".to_string());
    setup::wait_for_joins(&progress, plan.expected_joins()).await?;

    let orders = std::mem::take(&mut actors.orders);
    let offered = offer::offer(
        (&scenario, &plan),
        &directory,
        &progress,
        local,
        orders,
        bar,
    )
    .await?;
    let drain = offer::drain(&scenario, &progress, offered.messages, bar).await;
    stop.cancel();
    let reported = actors.join().await;

    let last_arrival = reported
        .observed
        .iter()
        .flat_map(|o| o.arrivals.iter().map(|(_, _, at)| *at))
        .max()
        .unwrap_or(offered.start);
    Ok(Report::new(Inputs {
        target: target_name,
        setup: Setup {
            clients: plan.ids.len(),
            groups: built.group_ids.len(),
            memberships: plan.members_of.iter().map(Vec::len).sum(),
            register_secs,
            groups_secs,
        },
        scenario,
        offered: offered.offered_for,
        messages_offered: offered.messages,
        start: offered.start,
        delivery_window: last_arrival.saturating_duration_since(offered.start),
        membership: directory.membership_log(),
        client_ids: plan.ids.clone(),
        ds_restarts: offered.ds_restarts,
        resubscribes: progress.resubscribes.load(Ordering::Relaxed),
        drain,
        sent: reported.sent,
        observed: reported.observed,
        views: reported.views,
    }))
}

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub(crate) fn draw(bar: &ProgressBar, progress: &Progress, offered: u64, phase: &str) {
    bar.set_message(format!(
        "{phase}: {offered} offered, {} acknowledged, {} / {} delivered, {} failed",
        progress.acknowledged.load(Ordering::Relaxed),
        progress.deliveries.load(Ordering::Relaxed),
        progress.owed.load(Ordering::Relaxed),
        progress.failed.load(Ordering::Relaxed),
    ));
}
