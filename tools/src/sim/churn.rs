//! Membership changes and faults while messages flow, each a Poisson
//! process of its own: self-updates, adds, removes, commit storms, member
//! restarts and members rejoining by external commit.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::Scenario;
use super::directory::{Churn, Directory, Order};
use super::setup::Plan;

/// A user changed in a group is not picked again for that group this soon.
const CHANGE_SETTLES: Duration = Duration::from_secs(10);

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

/// What a churn order becomes once its due time is known.
pub enum Due {
    Commit { group: u32, churn: Churn },
    Restart,
}

impl Due {
    pub fn at(self, due: Instant) -> Order {
        match self {
            Self::Commit { group, churn } => Order::Commit { group, churn, due },
            Self::Restart => Order::Restart,
        }
    }
}

/// The processes, in the order a tie between them is broken.
#[derive(Clone, Copy)]
enum Process {
    SelfUpdate,
    Add,
    Remove,
    Storm,
    Restart,
    Resync,
}

const PROCESSES: [Process; 6] = [
    Process::SelfUpdate,
    Process::Add,
    Process::Remove,
    Process::Storm,
    Process::Restart,
    Process::Resync,
];

/// Picks the membership changes and faults.
pub struct Churner {
    updates: Arrivals,
    adds: Arrivals,
    removes: Arrivals,
    storms: Arrivals,
    restarts: Arrivals,
    resyncs: Arrivals,
    /// (group, user) changed recently, and when.
    in_flight: HashMap<(u32, usize), Instant>,
    full: Vec<bool>,
    /// The full members of each group: they commit, and are never removed.
    committers: Vec<Vec<usize>>,
    users: usize,
    devices: usize,
}

impl Churner {
    pub fn new(scenario: &Scenario, plan: &Plan, rng: &mut StdRng) -> Self {
        Self {
            updates: Arrivals::new(scenario.self_updates_per_minute, rng),
            adds: Arrivals::new(scenario.adds_per_minute, rng),
            removes: Arrivals::new(scenario.removes_per_minute, rng),
            storms: Arrivals::new(scenario.commit_storms_per_minute, rng),
            restarts: Arrivals::new(scenario.client_restarts_per_minute, rng),
            resyncs: Arrivals::new(scenario.resyncs_per_minute, rng),
            in_flight: HashMap::new(),
            full: plan.full.clone(),
            committers: plan.committers.clone(),
            users: scenario.users,
            devices: plan.devices,
        }
    }

    fn arrivals(&mut self, process: Process) -> &mut Arrivals {
        match process {
            Process::SelfUpdate => &mut self.updates,
            Process::Add => &mut self.adds,
            Process::Remove => &mut self.removes,
            Process::Storm => &mut self.storms,
            Process::Restart => &mut self.restarts,
            Process::Resync => &mut self.resyncs,
        }
    }

    /// The next changes due before `limit`, as (when, orders to clients).
    pub fn next_before(
        &mut self,
        limit: Duration,
        directory: &Directory,
        rng: &mut StdRng,
    ) -> Option<(Duration, Vec<(usize, Due)>)> {
        loop {
            let (process, when) = PROCESSES
                .into_iter()
                .map(|p| (p, self.arrivals(p).next))
                .min_by_key(|(_, next)| *next)?;
            if when >= limit {
                return None;
            }
            let group = rng.random_range(0..self.committers.len()) as u32;
            let committer = {
                let committers = &self.committers[group as usize];
                committers[rng.random_range(0..committers.len())]
            };
            self.arrivals(process).advance(rng);
            let orders = self.orders(process, group, committer, directory, rng);
            if !orders.is_empty() {
                return Some((when, orders));
            }
        }
    }

    /// What `process` asks of whom in `group`; nothing when no user can be
    /// added or removed there.
    fn orders(
        &mut self,
        process: Process,
        group: u32,
        committer: usize,
        directory: &Directory,
        rng: &mut StdRng,
    ) -> Vec<(usize, Due)> {
        let commit = |churn| Due::Commit { group, churn };
        match process {
            Process::SelfUpdate => vec![(committer, commit(Churn::SelfUpdate))],
            Process::Add => self
                .pick_user(group, directory, rng, false)
                .map(|user| vec![(committer, commit(Churn::Add(user)))])
                .unwrap_or_default(),
            Process::Remove => self
                .pick_user(group, directory, rng, true)
                .map(|user| vec![(committer, commit(Churn::Remove(user)))])
                .unwrap_or_default(),
            Process::Resync => vec![(committer, commit(Churn::Resync))],
            Process::Storm => self.committers[group as usize]
                .iter()
                .map(|&c| (c, commit(Churn::SelfUpdate)))
                .collect(),
            Process::Restart => {
                let full: Vec<usize> = (0..self.full.len()).filter(|&c| self.full[c]).collect();
                vec![(full[rng.random_range(0..full.len())], Due::Restart)]
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
        let in_group: BTreeSet<usize> = directory
            .membership(group)
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
