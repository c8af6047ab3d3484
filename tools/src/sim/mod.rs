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
pub mod plot;
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

use confide_client::{Api, Client, ClientError, ClientId, StateLocation, TlsOptions};
use actors::{Churn, Counter, Directory, FullMember, Membership, Order, Progress};
use confide_ds::store::postgres::testing;
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

/// A DS started for the run, stopped when dropped; it can be restarted on
/// the same address (its store is kept).
struct LocalDs {
    endpoint: String,
    address: std::net::SocketAddr,
    settings: confide_ds::Settings,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    /// The database made for the run (admin URL, its URL), dropped at the end.
    database: Option<(String, String)>,
}

impl Drop for LocalDs {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl LocalDs {
    async fn start(target: &Target, scratch: &std::path::Path) -> Result<Self, SimError> {
        let mut settings = confide_ds::Settings::for_tests();
        settings.lift_limits();
        // Kept across restarts, like a deployment's.
        settings.external_sender_key_file = Some(scratch.join("external-sender.key"));
        let mut database = None;
        if let Target::Postgres { database_url } = target {
            let url = testing::create_database(database_url, SIM_DATABASE_PREFIX)
                .await
                .map_err(SimError::Ds)?;
            settings.store = confide_ds::config::StoreKind::Postgres;
            settings.database.url = url.clone();
            database = Some((database_url.clone(), url));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ds_error(&e))?;
        let address = listener.local_addr().map_err(|e| ds_error(&e))?;
        let (stop, server) = serve(listener, &settings).await?;
        Ok(Self {
            endpoint: format!("http://{address}"),
            address,
            settings,
            stop,
            server,
            database,
        })
    }

    /// Stops the DS (live streams end, calls fail) and starts it again on
    /// the same address and store.
    async fn restart(&mut self) -> Result<(), SimError> {
        self.stop.cancel();
        (&mut self.server)
            .await
            .map_err(|e| SimError::Ds(format!("the stopped DS panicked: {e}")))?;
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .map_err(|e| ds_error(&e))?;
        let (stop, server) = serve(listener, &self.settings).await?;
        self.stop = stop;
        self.server = server;
        Ok(())
    }

    /// Stops the DS and drops the database made for the run.
    async fn finish(mut self) {
        self.stop.cancel();
        let _ = (&mut self.server).await;
        if let Some((admin, url)) = self.database.take()
            && let Err(error) = testing::drop_database(&admin, &url).await
        {
            tracing::warn!(%error, "the simulator's database was left behind");
        }
    }
}

/// Databases the simulator makes are named `confide_sim_<time>_<uuid>`.
const SIM_DATABASE_PREFIX: &str = "confide_sim_";

fn ds_error(error: &dyn std::fmt::Display) -> SimError {
    SimError::Ds(error.to_string())
}

async fn serve(
    listener: tokio::net::TcpListener,
    settings: &confide_ds::Settings,
) -> Result<(CancellationToken, tokio::task::JoinHandle<()>), SimError> {
    let storage = confide_ds::open_store(settings)
        .await
        .map_err(|e| ds_error(&e))?;
    let stop = CancellationToken::new();
    let state =
        confide_ds::state(storage, settings.clone(), stop.clone()).map_err(|e| ds_error(&e))?;
    let server = tokio::spawn({
        let stop = stop.clone();
        async move {
            if let Err(error) = confide_ds::run(listener, state, stop).await {
                tracing::error!(%error, "the in-process DS failed");
            }
        }
    });
    Ok((stop, server))
}

/// A directory for the run's files (state files of restartable members,
/// the DS's key), removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Result<Self, SimError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("confide-sim-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| SimError::Ds(format!("creating {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Users are `sim-<run>-u0`, `sim-<run>-u1`, … (`run` differs from run to
/// run, so runs against one DS do not collide); their devices `d0`, `d1`, …
fn user_names(scenario: &Scenario, run: &str) -> Vec<String> {
    (0..scenario.users)
        .map(|user| format!("sim-{run}-u{user}"))
        .collect()
}

/// Client `i` is device `i % devices` of user `i / devices`.
fn client_ids(scenario: &Scenario, users: &[String]) -> Vec<ClientId> {
    (0..scenario.clients())
        .map(|i| {
            let (user, device) = (i / scenario.devices_per_user, i % scenario.devices_per_user);
            ClientId::new(users[user].clone(), format!("d{device}")).expect("valid names")
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

/// The clients of each group: the creator's one device, then every device
/// of the other users (a client cannot add its own user's other devices).
fn group_members(groups: &[Vec<usize>], devices: usize) -> Vec<Vec<usize>> {
    groups
        .iter()
        .map(|users| {
            let mut members = vec![users[0] * devices];
            members.extend(
                users[1..]
                    .iter()
                    .flat_map(|u| (0..devices).map(move |d| u * devices + d)),
            );
            members
        })
        .collect()
}

/// Arrivals of a Poisson process at `per_minute`.
struct Arrivals {
    per_sec: f64,
    next: Duration,
}

impl Arrivals {
    fn new(per_minute: f64, rng: &mut StdRng) -> Self {
        let mut arrivals = Self {
            per_sec: per_minute / 60.0,
            next: Duration::ZERO,
        };
        arrivals.advance(rng);
        arrivals
    }

    fn advance(&mut self, rng: &mut StdRng) {
        if self.per_sec <= 0.0 {
            self.next = Duration::MAX;
            return;
        }
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        self.next += Duration::from_secs_f64(-uniform.ln() / self.per_sec);
    }
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
        &token,
        target_name,
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
                .map_err(client_error(format!("connecting to {endpoint}")))?,
        );
    }
    Ok(connections)
}

/// Registers every client, builds the groups, offers the load, drains and
/// reports.
async fn simulate(
    scenario: Scenario,
    connections: Vec<Api>,
    token: &str,
    target_name: String,
    local: Option<Arc<tokio::sync::Mutex<LocalDs>>>,
    scratch: &std::path::Path,
    bar: &ProgressBar,
) -> Result<Report, SimError> {
    let devices = scenario.devices_per_user;
    let groups = group_users(&scenario);
    let members_of = group_members(&groups, devices);
    let run: String = {
        let mut rng = rand::rng();
        (0..8)
            .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
            .collect()
    };
    let user_names = user_names(&scenario, &run);
    let ids = client_ids(&scenario, &user_names);

    // Roles: in each group the first members send, the next verify; a
    // client that sends or verifies anywhere is a full member everywhere.
    let roles = scenario.senders_per_group + scenario.verifiers_per_group;
    let mut full = vec![false; ids.len()];
    let mut senders: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
    let mut committers: Vec<Vec<usize>> = Vec::with_capacity(groups.len());
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
        committers.push(members.iter().take(roles).copied().collect());
    }
    // A member restarted from its state needs that state on disk.
    let restartable = scenario.client_restarts_per_minute > 0.0;
    let state_of = |index: usize| match restartable && full[index] {
        true => StateLocation::File(scratch.join(format!("client-{index}.db"))),
        false => StateLocation::Memory,
    };

    // Register every client over the shared connections.
    bar.set_message(format!("registering {} clients", ids.len()));
    let started = Instant::now();
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(REGISTER_PARALLELISM) {
        let mut batch = JoinSet::new();
        for id in chunk {
            let index = clients.len() + batch.len();
            let api = connections[index % connections.len()].clone();
            let (id, token, state) = (id.clone(), token.to_string(), state_of(index));
            batch.spawn(async move {
                let client = Client::register(api, id.clone(), &state, &token)
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
    bar.set_message(format!("building {} groups", groups.len()));
    let started = Instant::now();
    let mut group_ids = Vec::with_capacity(groups.len());
    // The last entry of each group's log once built.
    let mut built_at = Vec::with_capacity(groups.len());
    for (users, members) in groups.iter().zip(&members_of) {
        let client = clients[members[0]].as_mut().expect("every client is here");
        let group_id = client
            .create_group()
            .await
            .map_err(client_error("creating a group"))?;
        let mut last = 0;
        for batch in users[1..].chunks(ADD_BATCH) {
            let batch: Vec<&str> = batch.iter().map(|u| user_names[*u].as_str()).collect();
            last = client
                .add_users(&group_id, &batch)
                .await
                .map_err(client_error("adding members"))?
                .commit
                .seq;
        }
        group_ids.push(group_id);
        built_at.push(last);
    }
    let groups_secs = started.elapsed().as_secs_f64();
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
        group_ids: group_ids.clone(),
        client_index: ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect(),
        client_ids: ids.clone(),
        user_names,
        devices_per_user: devices,
        message_size: scenario.message_size,
        dropped_responses: scenario.dropped_responses,
        membership: {
            let decrypts: Arc<[bool]> = full.clone().into();
            members_of
                .iter()
                .map(|members| std::sync::Mutex::new(Membership::new(members, decrypts.clone())))
                .collect()
        },
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
                index: index as u32,
                orders: Some(receiver),
                state: state_of(index),
                rng: StdRng::seed_from_u64(scenario.seed ^ (index as u64).rotate_left(32)),
            };
            full_tasks.spawn(member.run(client, directory, progress, stop));
        } else {
            let counter = Counter {
                index,
                api: client.api().clone(),
                built: members_of
                    .iter()
                    .enumerate()
                    .filter(|(_, members)| members.contains(&index))
                    .map(|(group, _)| (group as u32, built_at[group]))
                    .collect(),
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

    // Offer messages (an open-loop Poisson process over the groups) and,
    // alongside, churn and faults (Poisson processes of their own).
    let mut rng = StdRng::seed_from_u64(scenario.seed);
    let mut numbers: HashMap<usize, u64> = HashMap::new();
    let duration = scenario.duration();
    let start = Instant::now();
    let ds_restarts = schedule_ds_restarts(local.clone(), scenario.ds_restarts, duration, start);
    let mut churn = Churner {
        updates: Arrivals::new(scenario.self_updates_per_minute, &mut rng),
        adds: Arrivals::new(scenario.adds_per_minute, &mut rng),
        removes: Arrivals::new(scenario.removes_per_minute, &mut rng),
        storms: Arrivals::new(scenario.commit_storms_per_minute, &mut rng),
        restarts: Arrivals::new(scenario.client_restarts_per_minute, &mut rng),
        in_flight: HashMap::new(),
        full: full.clone(),
        committers,
        users: scenario.users,
        devices,
    };
    let send = |orders: &HashMap<usize, mpsc::UnboundedSender<Order>>, client: usize, order| {
        orders[&client].send(order).is_ok()
    };
    let mut offered = 0u64;
    let mut at = Duration::ZERO;
    let mut last_draw = Instant::now();
    loop {
        let rate = scenario.rate_at(at).max(scenario.message_rate / 1000.0);
        let uniform: f64 = rng.random_range(f64::EPSILON..1.0);
        at += Duration::from_secs_f64(-uniform.ln() / rate);
        // Churn and faults due before this message go first.
        while let Some((when, orders_due)) =
            churn.next_before(at.min(duration), &directory, &mut rng)
        {
            let due = start + when;
            if due > Instant::now() + Duration::from_millis(1) {
                tokio::time::sleep_until(due.into()).await;
            }
            for (client, order) in orders_due {
                let order = order.at(due);
                if send(&orders, client, order) {
                    progress.pending_changes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
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
        let order = Order::Send {
            group: group as u32,
            number: *number,
            due,
        };
        if send(&orders, sender, order) {
            offered += 1;
        }
        if last_draw.elapsed() > Duration::from_millis(200) {
            last_draw = Instant::now();
            draw(bar, &progress, offered, "offering messages");
        }
    }
    let offered_for = start.elapsed().min(duration);
    drop(orders);
    let ds_restarts = ds_restarts
        .await
        .map_err(|e| SimError::Ds(e.to_string()))??;

    // Drain: wait until every send and change is done and every
    // acknowledged message reached every member, or nothing has arrived
    // for a while.
    let drain_deadline = Instant::now() + Duration::from_secs_f64(scenario.drain_secs);
    let mut last_seen = (progress.deliveries.load(Ordering::Relaxed), Instant::now());
    let drain = loop {
        let deliveries = progress.deliveries.load(Ordering::Relaxed);
        let answered = progress.acknowledged.load(Ordering::Relaxed)
            + progress.failed.load(Ordering::Relaxed)
            >= offered
            && progress.pending_changes.load(Ordering::Relaxed) == 0;
        if deliveries != last_seen.0 {
            last_seen = (deliveries, Instant::now());
        }
        let arrived = deliveries >= progress.owed.load(Ordering::Relaxed);
        let quiet = last_seen.1.elapsed() > QUIET_FOR;
        if answered && arrived {
            break "every acknowledged message arrived".to_string();
        }
        if answered && quiet {
            break format!("nothing arrived for {QUIET_FOR:?}");
        }
        if Instant::now() > drain_deadline {
            break format!(
                "the drain time ({:.0} s) ran out with {} still arriving",
                scenario.drain_secs,
                match answered {
                    true => "deliveries",
                    false => "sends and deliveries",
                }
            );
        }
        draw(bar, &progress, offered, "waiting for deliveries");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
    let last_arrival = observed
        .iter()
        .flat_map(|o| o.arrivals.iter().map(|(_, _, at)| *at))
        .max()
        .unwrap_or(start);
    let membership = directory
        .membership
        .iter()
        .map(|m| m.lock().expect("no actor panicked").clone())
        .collect();
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
        start,
        delivery_window: last_arrival.saturating_duration_since(start),
        membership,
        client_ids: ids.clone(),
        ds_restarts,
        resubscribes: progress.resubscribes.load(Ordering::Relaxed),
        drain,
        sent,
        observed,
        views,
    }))
}

/// The drain ends early once nothing has arrived for this long.
const QUIET_FOR: Duration = Duration::from_secs(5);
/// A user changed in a group is not picked again for that group this soon.
const CHANGE_SETTLES: Duration = Duration::from_secs(10);

/// Restarts the local DS `count` times, evenly spread over `duration` from
/// `start`; resolves to the number of restarts made.
fn schedule_ds_restarts(
    local: Option<Arc<tokio::sync::Mutex<LocalDs>>>,
    count: u32,
    duration: Duration,
    start: Instant,
) -> tokio::task::JoinHandle<Result<u32, SimError>> {
    tokio::spawn(async move {
        let Some(local) = local else { return Ok(0) };
        for k in 1..=count {
            let at = start + duration.mul_f64(f64::from(k) / f64::from(count + 1));
            tokio::time::sleep_until(at.into()).await;
            tracing::info!(restart = k, "restarting the DS");
            local.lock().await.restart().await?;
        }
        Ok(count)
    })
}

/// What a churn order becomes once its due time is known.
enum Due {
    Commit { group: u32, churn: Churn },
    Restart,
}

impl Due {
    fn at(self, due: Instant) -> Order {
        match self {
            Self::Commit { group, churn } => Order::Commit { group, churn, due },
            Self::Restart => Order::Restart,
        }
    }
}

/// Picks the membership changes and faults, each a Poisson process.
struct Churner {
    updates: Arrivals,
    adds: Arrivals,
    removes: Arrivals,
    storms: Arrivals,
    restarts: Arrivals,
    /// (group, user) changed recently, and when.
    in_flight: HashMap<(u32, usize), Instant>,
    full: Vec<bool>,
    /// The full members of each group (the senders and verifiers): they
    /// commit, and are never removed.
    committers: Vec<Vec<usize>>,
    users: usize,
    devices: usize,
}

impl Churner {
    /// The next changes due before `limit`, as (when, orders to clients).
    fn next_before(
        &mut self,
        limit: Duration,
        directory: &Directory,
        rng: &mut StdRng,
    ) -> Option<(Duration, Vec<(usize, Due)>)> {
        loop {
            let processes = [
                &self.updates,
                &self.adds,
                &self.removes,
                &self.storms,
                &self.restarts,
            ];
            let (which, when) = processes
                .iter()
                .enumerate()
                .map(|(i, p)| (i, p.next))
                .min_by_key(|(_, next)| *next)?;
            if when >= limit {
                return None;
            }
            let groups = self.committers.len();
            let group = rng.random_range(0..groups) as u32;
            let committer = {
                let committers = &self.committers[group as usize];
                committers[rng.random_range(0..committers.len())]
            };
            let orders = match which {
                0 => {
                    self.updates.advance(rng);
                    vec![(
                        committer,
                        Due::Commit {
                            group,
                            churn: Churn::SelfUpdate,
                        },
                    )]
                }
                1 => {
                    self.adds.advance(rng);
                    self.pick_user(group, directory, rng, false)
                        .map(|user| {
                            vec![(
                                committer,
                                Due::Commit {
                                    group,
                                    churn: Churn::Add(user),
                                },
                            )]
                        })
                        .unwrap_or_default()
                }
                2 => {
                    self.removes.advance(rng);
                    self.pick_user(group, directory, rng, true)
                        .map(|user| {
                            vec![(
                                committer,
                                Due::Commit {
                                    group,
                                    churn: Churn::Remove(user),
                                },
                            )]
                        })
                        .unwrap_or_default()
                }
                3 => {
                    self.storms.advance(rng);
                    self.committers[group as usize]
                        .iter()
                        .map(|&c| {
                            (
                                c,
                                Due::Commit {
                                    group,
                                    churn: Churn::SelfUpdate,
                                },
                            )
                        })
                        .collect()
                }
                _ => {
                    self.restarts.advance(rng);
                    let full: Vec<usize> = (0..self.full.len()).filter(|&c| self.full[c]).collect();
                    vec![(full[rng.random_range(0..full.len())], Due::Restart)]
                }
            };
            if !orders.is_empty() {
                return Some((when, orders));
            }
        }
    }

    /// A user to remove from the group (a member whose devices only count,
    /// anywhere) or to add to it (a user not in it), not changed there
    /// recently.
    fn pick_user(
        &mut self,
        group: u32,
        directory: &Directory,
        rng: &mut StdRng,
        member: bool,
    ) -> Option<usize> {
        let devices = self.devices;
        let in_group: std::collections::BTreeSet<usize> = directory.membership[group as usize]
            .lock()
            .expect("no actor panicked")
            .clients
            .iter()
            .map(|c| c / devices)
            .collect();
        let now = Instant::now();
        self.in_flight
            .retain(|_, at| now.duration_since(*at) < CHANGE_SETTLES);
        let candidates: Vec<usize> = (0..self.users)
            .filter(|user| in_group.contains(user) == member)
            .filter(|user| !self.in_flight.contains_key(&(group, *user)))
            .filter(|user| !member || (0..devices).all(|d| !self.full[user * devices + d]))
            .collect();
        let user = *candidates.get(rng.random_range(0..candidates.len().max(1)))?;
        self.in_flight.insert((group, user), now);
        Some(user)
    }
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
        "{phase}: {offered} offered, {} acknowledged, {} / {} delivered, {} failed",
        progress.acknowledged.load(Ordering::Relaxed),
        progress.deliveries.load(Ordering::Relaxed),
        progress.owed.load(Ordering::Relaxed),
        progress.failed.load(Ordering::Relaxed),
    ));
}
