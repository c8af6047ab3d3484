//! `confide-sim`: drives real MLS clients (this library, real openmls
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
pub mod report;
pub mod scenario;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Api, Client, ClientError, ClientId, StateLocation, TlsOptions};
use actors::{Counter, Directory, FullMember, Order, Progress};
pub use report::Report;
use report::{FinalView, Inputs, Observed, Sent, Setup};
pub use scenario::{GroupSpec, Scenario, ScenarioError};

/// Users added to a group per commit while it is built.
const ADD_BATCH: usize = 100;
/// Registrations in flight at once.
const REGISTER_PARALLELISM: usize = 32;
/// Longest wait for every full member to join its groups.
const JOIN_WAIT: Duration = Duration::from_secs(120);

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
    #[error("{what}: {source}")]
    Client {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("{0}")]
    Stalled(String),
}

fn client_error(what: impl Into<String>) -> impl FnOnce(ClientError) -> SimError {
    let what = what.into();
    move |source| SimError::Client { what, source }
}

/// A DS started for the run, stopped when dropped.
struct LocalDs {
    endpoint: String,
    stop: CancellationToken,
}

impl Drop for LocalDs {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start_local(target: &Target) -> Result<LocalDs, SimError> {
    let ds = |e: &dyn std::fmt::Display| SimError::Ds(e.to_string());
    let mut settings = confide_ds::Settings::for_tests();
    settings.lift_limits();
    if let Target::Postgres { database_url } = target {
        settings.store = confide_ds::config::StoreKind::Postgres;
        settings.database.url = database_url.clone();
    }
    let storage = confide_ds::open_store(&settings)
        .await
        .map_err(|e| ds(&e))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ds(&e))?;
    let endpoint = format!("http://{}", listener.local_addr().map_err(|e| ds(&e))?);
    let stop = CancellationToken::new();
    let state = confide_ds::state(storage, settings, stop.clone()).map_err(|e| ds(&e))?;
    tokio::spawn(confide_ds::run(listener, state, stop.clone()));
    Ok(LocalDs { endpoint, stop })
}

/// Users are `u0`, `u1`, …; their devices `d0`, `d1`, …; client `i` is
/// device `i % devices` of user `i / devices`.
fn client_ids(scenario: &Scenario) -> Vec<ClientId> {
    (0..scenario.clients())
        .map(|i| {
            let (user, device) = (i / scenario.devices_per_user, i % scenario.devices_per_user);
            ClientId::new(format!("u{user}"), format!("d{device}")).expect("valid names")
        })
        .collect()
}

/// Which users each group has: consecutive users from a moving offset, so
/// the groups spread over everyone.
fn group_users(scenario: &Scenario) -> Vec<Vec<usize>> {
    let mut offset = 0;
    let mut groups = Vec::new();
    for spec in &scenario.groups {
        for _ in 0..spec.count {
            groups.push(
                (0..spec.size)
                    .map(|i| (offset + i) % scenario.users)
                    .collect(),
            );
            offset = (offset + spec.size) % scenario.users;
        }
    }
    groups
}

/// Runs the scenario and returns the report. `show_progress` draws a
/// progress bar on stderr.
pub async fn run(
    scenario: Scenario,
    target: Target,
    show_progress: bool,
) -> Result<Report, SimError> {
    scenario.validate()?;
    let local = match &target {
        Target::Remote { .. } => None,
        _ => Some(start_local(&target).await?),
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

    // Register every client over a few shared connections.
    let mut connections = Vec::with_capacity(scenario.connections);
    for _ in 0..scenario.connections {
        connections.push(
            Api::connect_with(&endpoint, &tls)
                .await
                .map_err(client_error(format!("connecting to {endpoint}")))?,
        );
    }
    let ids = client_ids(&scenario);
    bar.set_message(format!("registering {} clients", ids.len()));
    let started = Instant::now();
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(REGISTER_PARALLELISM) {
        let mut batch = JoinSet::new();
        for id in chunk {
            let index = clients.len() + batch.len();
            let api = connections[index % connections.len()].clone();
            let (id, token) = (id.clone(), token.clone());
            batch.spawn(async move {
                let client = Client::register(api, id.clone(), &StateLocation::Memory, &token)
                    .await
                    .map_err(client_error(format!("registering {id}")));
                (index, client)
            });
        }
        let mut registered: Vec<(usize, Client)> = Vec::with_capacity(chunk.len());
        while let Some(joined) = batch.join_next().await {
            let (index, client) = joined.expect("registration task");
            registered.push((index, client?));
        }
        registered.sort_by_key(|(index, _)| *index);
        clients.extend(registered.into_iter().map(|(_, c)| Some(c)));
    }
    let register_secs = started.elapsed().as_secs_f64();

    // Build the groups: the first client of each group creates it and adds
    // the other users (every device) in batches.
    let groups = group_users(&scenario);
    bar.set_message(format!("building {} groups", groups.len()));
    let started = Instant::now();
    let devices = scenario.devices_per_user;
    let mut group_ids = Vec::with_capacity(groups.len());
    let mut members_of: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
    for users in &groups {
        let creator = users[0] * devices;
        let client = clients[creator].as_mut().expect("every client is here");
        let group_id = client
            .create_group()
            .await
            .map_err(client_error("creating a group"))?;
        let names: Vec<String> = users[1..].iter().map(|u| format!("u{u}")).collect();
        for batch in names.chunks(ADD_BATCH) {
            let batch: Vec<&str> = batch.iter().map(String::as_str).collect();
            client
                .add_users(&group_id, &batch)
                .await
                .map_err(client_error("adding members"))?;
        }
        // The creator's other devices are not added (a client cannot add
        // its own user); everyone else's are.
        let mut members = vec![creator];
        members.extend(
            users[1..]
                .iter()
                .flat_map(|u| (0..devices).map(move |d| u * devices + d)),
        );
        members_of.push(members);
        group_ids.push(group_id);
    }
    let groups_secs = started.elapsed().as_secs_f64();

    // Roles: in each group the first members send, the next verify; a
    // client that sends or verifies anywhere is a full member everywhere.
    let roles = scenario.senders_per_group + scenario.verifiers_per_group;
    let mut full = vec![false; clients.len()];
    let mut senders: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
    for members in &members_of {
        for &client in members.iter().take(roles) {
            full[client] = true;
        }
        senders.push(
            members
                .iter()
                .take(scenario.senders_per_group)
                .copied()
                .collect(),
        );
    }
    let expected_joins: u64 = members_of
        .iter()
        .map(|members| members[1..].iter().filter(|c| full[**c]).count() as u64)
        .sum();

    let directory = Arc::new(Directory {
        index_of: group_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect(),
        members: members_of.iter().map(Vec::len).collect(),
        group_ids: group_ids.clone(),
        client_ids: ids.clone(),
        message_size: scenario.message_size,
    });
    let progress = Arc::new(Progress::default());
    let stop = CancellationToken::new();
    let mut orders: HashMap<usize, mpsc::UnboundedSender<Order>> = HashMap::new();
    let mut full_tasks = JoinSet::new();
    let mut counter_tasks = JoinSet::new();
    for (index, client) in clients.iter_mut().enumerate() {
        let client = client.take().expect("every client is here");
        let (directory, progress, stop) = (directory.clone(), progress.clone(), stop.clone());
        if full[index] {
            let (sender, receiver) = mpsc::unbounded_channel();
            orders.insert(index, sender);
            let member = FullMember {
                client,
                index: index as u32,
                orders: Some(receiver),
            };
            full_tasks.spawn(member.run(directory, progress, stop));
        } else {
            let counter = Counter {
                api: client.api().clone(),
            };
            counter_tasks.spawn(counter.run(directory, progress, stop));
        }
    }

    bar.set_message("waiting for every full member to join".to_string());
    let deadline = Instant::now() + JOIN_WAIT;
    while progress.joined.load(Ordering::Relaxed) < expected_joins {
        if Instant::now() > deadline {
            return Err(SimError::Stalled(format!(
                "only {} of {expected_joins} full members joined within {JOIN_WAIT:?}",
                progress.joined.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Offer messages: an open-loop Poisson process over the groups.
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let mut numbers: HashMap<usize, u64> = HashMap::new();
    let duration = scenario.duration();
    let start = Instant::now();
    let mut offered = 0u64;
    let mut at = Duration::ZERO;
    let mut last_draw = Instant::now();
    loop {
        let rate = scenario.rate_at(at).max(scenario.message_rate / 1000.0);
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        at += Duration::from_secs_f64(-uniform.ln() / rate);
        if at >= duration {
            break;
        }
        let due = start + at;
        if due > Instant::now() + Duration::from_millis(1) {
            tokio::time::sleep_until(due.into()).await;
        }
        let group = rng.random_range(0..group_ids.len());
        let sender = senders[group][rng.random_range(0..senders[group].len())];
        let number = numbers.entry(sender).or_default();
        *number += 1;
        let order = Order {
            group: group as u32,
            number: *number,
            due,
        };
        if orders[&sender].send(order).is_ok() {
            offered += 1;
        }
        if last_draw.elapsed() > Duration::from_millis(200) {
            last_draw = Instant::now();
            draw(&bar, &progress, offered, "offering messages");
        }
    }
    let offered_for = start.elapsed().min(duration);
    drop(orders);

    // Drain: wait until every acknowledged message reached every member.
    let drain_deadline = Instant::now() + Duration::from_secs_f64(scenario.drain_secs);
    loop {
        let done = progress.acknowledged.load(Ordering::Relaxed)
            + progress.errors.load(Ordering::Relaxed)
            >= offered
            && progress.deliveries.load(Ordering::Relaxed) >= progress.owed.load(Ordering::Relaxed);
        if done || Instant::now() > drain_deadline {
            break;
        }
        draw(&bar, &progress, offered, "waiting for deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();

    let mut sent: Vec<Sent> = Vec::new();
    let mut observed: Vec<Observed> = Vec::new();
    let mut views: Vec<FinalView> = Vec::new();
    while let Some(result) = full_tasks.join_next().await {
        let (s, o, v) = result.expect("a full member panicked");
        sent.push(s);
        observed.push(o);
        views.extend(v);
    }
    while let Some(result) = counter_tasks.join_next().await {
        observed.push(result.expect("a counter panicked"));
    }
    bar.finish_and_clear();
    let last_arrival = observed
        .iter()
        .flat_map(|o| o.arrivals.iter().map(|(_, _, at)| *at))
        .max()
        .unwrap_or(start);

    drop(local);
    Ok(Report::new(Inputs {
        target: target_name,
        setup: Setup {
            clients: ids.len(),
            groups: group_ids.len(),
            memberships: members_of.iter().map(Vec::len).sum(),
            register_secs,
            groups_secs,
        },
        scenario,
        offered: offered_for,
        messages_offered: offered,
        delivery_window: last_arrival.saturating_duration_since(start),
        group_members: directory.members.clone(),
        sent,
        observed,
        views,
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

fn draw(bar: &ProgressBar, progress: &Progress, offered: u64, phase: &str) {
    bar.set_message(format!(
        "{phase}: {offered} offered, {} acknowledged, {} / {} delivered, {} errors",
        progress.acknowledged.load(Ordering::Relaxed),
        progress.deliveries.load(Ordering::Relaxed),
        progress.owed.load(Ordering::Relaxed),
        progress.errors.load(Ordering::Relaxed),
    ));
}
