//! Before messages flow: who is who (the [`Plan`], worked out from the
//! scenario alone), registering every client, building the groups, and
//! starting one task per virtual client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confide_client::{Client, ClientId, GroupId, StateLocation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::actors::FullMember;
use super::counter::Counter;
use super::directory::{Directory, Membership, Order, Progress};
use super::report::{FinalView, Observed, Sent};
use super::{Scenario, SimError};
use crate::error::ClientContext;

/// Users added to a group per commit while it is built.
const ADD_BATCH: usize = 100;
/// Longest wait for every full member to join its groups.
const JOIN_WAIT: Duration = Duration::from_secs(120);

/// Who is who in a run: clients by index, groups by index.
pub struct Plan {
    /// Users are `sim-<run>-u0`, `sim-<run>-u1`, … (`run` differs from run
    /// to run, so runs against one DS do not collide); their devices `d0`,
    /// `d1`, …
    pub user_names: Vec<String>,
    /// Client `i` is device `i % devices` of user `i / devices`.
    pub ids: Vec<ClientId>,
    pub devices: usize,
    /// The users of each group.
    pub groups: Vec<Vec<usize>>,
    /// The clients of each group: the creator's one device, then every
    /// device of the other users (a client cannot add its own user's other
    /// devices).
    pub members_of: Vec<Vec<usize>>,
    /// In each group the first members send, the next verify; a client that
    /// sends or verifies anywhere is a full member everywhere.
    pub full: Vec<bool>,
    pub senders: Vec<Vec<usize>>,
    /// The full members of each group (the senders and verifiers): they
    /// commit, and are never removed.
    pub committers: Vec<Vec<usize>>,
    /// Where full members keep their state when they are to be restarted
    /// from it (it must be on disk); `None`: every client in memory.
    state_dir: Option<PathBuf>,
}

impl Plan {
    pub fn new(scenario: &Scenario, scratch: &Path) -> Self {
        let devices = scenario.devices_per_user;
        let run: String = {
            let mut rng = rand::rng();
            (0..8)
                .map(|_| char::from_digit(rng.random_range(0..16), 16).expect("a hex digit"))
                .collect()
        };
        let user_names: Vec<String> = (0..scenario.users)
            .map(|user| format!("sim-{run}-u{user}"))
            .collect();
        let ids = (0..scenario.clients())
            .map(|i| {
                let (user, device) = (i / devices, i % devices);
                ClientId::new(user_names[user].clone(), format!("d{device}")).expect("valid names")
            })
            .collect::<Vec<_>>();
        let groups = group_users(scenario);
        let members_of = group_members(&groups, devices);
        let roles = scenario.senders_per_group + scenario.verifiers_per_group;
        let mut full = vec![false; ids.len()];
        for members in &members_of {
            for &client in members.iter().take(roles) {
                full[client] = true;
            }
        }
        let take = |count: usize| -> Vec<Vec<usize>> {
            let first = |members: &Vec<usize>| members.iter().take(count).copied().collect();
            members_of.iter().map(first).collect()
        };
        Self {
            senders: take(scenario.senders_per_group),
            committers: take(roles),
            user_names,
            ids,
            devices,
            groups,
            members_of,
            full,
            state_dir: (scenario.client_restarts_per_minute > 0.0).then(|| scratch.to_owned()),
        }
    }

    /// Where client `index` keeps its state.
    pub fn state_of(&self, index: usize) -> StateLocation {
        match &self.state_dir {
            Some(dir) if self.full[index] => {
                StateLocation::File(dir.join(format!("client-{index}.db")))
            }
            _ => StateLocation::Memory,
        }
    }

    /// Every client to register, in index order.
    pub fn registrations(&self) -> Vec<(ClientId, StateLocation)> {
        let states = (0..self.ids.len()).map(|index| self.state_of(index));
        self.ids.iter().cloned().zip(states).collect()
    }

    /// Joins to wait for once the groups are built: every full member but
    /// each group's creator.
    pub fn expected_joins(&self) -> u64 {
        self.members_of
            .iter()
            .map(|members| members[1..].iter().filter(|c| self.full[**c]).count() as u64)
            .sum()
    }

    /// What the actors know about the groups and clients.
    pub fn directory(&self, scenario: &Scenario, group_ids: &[GroupId]) -> Directory {
        let decrypts: Arc<[bool]> = self.full.clone().into();
        Directory {
            index_of: group_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i as u32))
                .collect(),
            group_ids: group_ids.to_vec(),
            client_index: self
                .ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            client_ids: self.ids.clone(),
            user_names: self.user_names.clone(),
            devices_per_user: self.devices,
            message_size: scenario.message_size,
            dropped_responses: scenario.dropped_responses,
            membership: self
                .members_of
                .iter()
                .map(|members| std::sync::Mutex::new(Membership::new(members, decrypts.clone())))
                .collect(),
        }
    }
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

/// The groups as built.
pub struct Built {
    pub group_ids: Vec<GroupId>,
    /// The last entry of each group's log once built.
    pub built_at: Vec<u64>,
}

/// The first client of each group creates it and adds the other users
/// (every device) in batches.
pub async fn build_groups(plan: &Plan, clients: &mut [Client]) -> Result<Built, SimError> {
    let mut built = Built {
        group_ids: Vec::with_capacity(plan.groups.len()),
        built_at: Vec::with_capacity(plan.groups.len()),
    };
    for (users, members) in plan.groups.iter().zip(&plan.members_of) {
        let client = &mut clients[members[0]];
        let group_id = client.create_group().await.context("creating a group")?;
        let mut last = 0;
        for batch in users[1..].chunks(ADD_BATCH) {
            let batch: Vec<&str> = batch.iter().map(|u| plan.user_names[*u].as_str()).collect();
            last = client
                .add_users(&group_id, &batch)
                .await
                .context("adding members")?
                .commit
                .seq;
        }
        built.group_ids.push(group_id);
        built.built_at.push(last);
    }
    Ok(built)
}

/// One task per virtual client, and how to give the full members orders.
pub struct Actors {
    pub orders: HashMap<usize, mpsc::UnboundedSender<Order>>,
    full: JoinSet<(Sent, Observed, Vec<FinalView>)>,
    counters: JoinSet<Observed>,
}

/// What the actors reported once stopped.
pub struct Reported {
    pub sent: Vec<Sent>,
    pub observed: Vec<Observed>,
    pub views: Vec<FinalView>,
}

impl Actors {
    /// Starts a full member or a counter for each client, until `stop`.
    pub fn spawn(
        (plan, built, seed): (&Plan, &Built, u64),
        clients: Vec<Client>,
        directory: &Arc<Directory>,
        progress: &Arc<Progress>,
        stop: &CancellationToken,
    ) -> Self {
        let mut actors = Self {
            orders: HashMap::new(),
            full: JoinSet::new(),
            counters: JoinSet::new(),
        };
        for (index, client) in clients.into_iter().enumerate() {
            let (directory, progress, stop) = (directory.clone(), progress.clone(), stop.clone());
            if plan.full[index] {
                let (sender, receiver) = mpsc::unbounded_channel();
                actors.orders.insert(index, sender);
                let member = FullMember {
                    index: index as u32,
                    orders: Some(receiver),
                    state: plan.state_of(index),
                    rng: StdRng::seed_from_u64(seed ^ (index as u64).rotate_left(32)),
                };
                actors
                    .full
                    .spawn(member.run(client, directory, progress, stop));
            } else {
                let counter = Counter {
                    index,
                    api: client.api().clone(),
                    built: plan
                        .members_of
                        .iter()
                        .enumerate()
                        .filter(|(_, members)| members.contains(&index))
                        .map(|(group, _)| (group as u32, built.built_at[group]))
                        .collect(),
                };
                actors
                    .counters
                    .spawn(counter.run(directory, progress, stop));
            }
        }
        actors
    }

    /// Waits for every actor (stopped by their token) and puts together what
    /// they report.
    pub async fn join(mut self) -> Reported {
        let mut reported = Reported {
            sent: Vec::new(),
            observed: Vec::new(),
            views: Vec::new(),
        };
        while let Some(result) = self.full.join_next().await {
            let (sent, observed, views) = result.expect("a full member panicked");
            reported.sent.push(sent);
            reported.observed.push(observed);
            reported.views.extend(views);
        }
        while let Some(result) = self.counters.join_next().await {
            reported.observed.push(result.expect("a counter panicked"));
        }
        reported
    }
}

/// Waits until every full member has joined its groups.
pub async fn wait_for_joins(progress: &Progress, expected: u64) -> Result<(), SimError> {
    let deadline = Instant::now() + JOIN_WAIT;
    while progress.joined.load(Ordering::Relaxed) < expected {
        if Instant::now() > deadline {
            return Err(SimError::Stalled(format!(
                "only {} of {expected} full members joined within {JOIN_WAIT:?}",
                progress.joined.load(Ordering::Relaxed)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
