//! What a simulation runs: how many clients, which groups, what load. Read
//! from a YAML file, then overridden by flags; checked as a whole before
//! anything starts, so a scenario that cannot run says why at once.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::body::MIN_BODY;

/// `count` groups of `size` users each (every device of a user is a member).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSpec {
    pub count: usize,
    pub size: usize,
}

impl std::str::FromStr for GroupSpec {
    type Err = String;

    /// `COUNTxSIZE`, e.g. `100x10`; a bare `SIZE` is one group.
    fn from_str(text: &str) -> Result<Self, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("{text:?} is not COUNTxSIZE (e.g. 100x10) or SIZE"))
        };
        match text.split_once('x') {
            Some((count, size)) => Ok(Self {
                count: number(count)?,
                size: number(size)?,
            }),
            None => Ok(Self {
                count: 1,
                size: number(text)?,
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Users; each has `devices_per_user` clients.
    pub users: usize,
    pub devices_per_user: usize,
    /// The group size distribution.
    pub groups: Vec<GroupSpec>,
    /// Application messages per second over all groups: an open-loop
    /// Poisson arrival process, so a slow DS does not slow the offered load.
    pub message_rate: f64,
    /// Plaintext bytes per message.
    pub message_size: usize,
    /// How long messages are offered, after setup.
    pub duration_secs: f64,
    /// The rate climbs linearly from 0 to `message_rate` over this long.
    pub ramp_up_secs: f64,
    /// Members of each group that send (full clients).
    pub senders_per_group: usize,
    /// Members of each group that decrypt and check every message (full
    /// clients). The other members only count what they receive.
    pub verifiers_per_group: usize,
    /// HTTP/2 connections the virtual clients share.
    pub connections: usize,
    /// How long to wait, after the last message was offered, for every
    /// acknowledged message to reach every member.
    pub drain_secs: f64,
    /// Random seed for arrivals and choices, so runs can be repeated.
    pub seed: u64,
    /// Membership churn over all groups while messages flow (Poisson, per
    /// minute): a full member refreshes its leaf keys (a commit with an
    /// update path).
    pub self_updates_per_minute: f64,
    /// A full member adds a user who is not in its group.
    pub adds_per_minute: f64,
    /// A full member removes a user whose devices only count (senders and
    /// verifiers stay, so every group keeps someone to check it).
    pub removes_per_minute: f64,
    /// Faults: moments at which every full member of one group commits a
    /// self-update at once, so all but one lose the race and retry.
    pub commit_storms_per_minute: f64,
    /// Fraction of acknowledged sends whose response the simulator throws
    /// away, so the client sends again with the same idempotency key and must
    /// get the same sequence number back.
    pub dropped_responses: f64,
    /// Full members stopped and restarted from their state file (on disk),
    /// per minute; messages sent meanwhile must reach them after the restart.
    pub client_restarts_per_minute: f64,
    /// Full members that find themselves stuck in a group (as if a commit
    /// left them behind) and rejoin it by external commit, per minute;
    /// what is sent after the rejoin must reach them.
    pub resyncs_per_minute: f64,
    /// Times the in-process DS is stopped and started again on the same
    /// address while messages flow (PostgreSQL store only). Clients retry.
    pub ds_restarts: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            users: 100,
            devices_per_user: 1,
            groups: vec![GroupSpec {
                count: 10,
                size: 10,
            }],
            message_rate: 100.0,
            message_size: 246,
            duration_secs: 10.0,
            ramp_up_secs: 0.0,
            senders_per_group: 2,
            verifiers_per_group: 1,
            connections: 4,
            drain_secs: 30.0,
            seed: 1,
            self_updates_per_minute: 0.0,
            adds_per_minute: 0.0,
            removes_per_minute: 0.0,
            commit_storms_per_minute: 0.0,
            dropped_responses: 0.0,
            client_restarts_per_minute: 0.0,
            resyncs_per_minute: 0.0,
            ds_restarts: 0,
        }
    }
}

/// Why a scenario cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScenarioError {
    #[error("reading the scenario file: {0}")]
    File(String),
    #[error("{0}")]
    Invalid(String),
}

impl Scenario {
    /// Reads a YAML scenario; fields left out keep their defaults.
    pub fn from_yaml_file(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError::File(format!("{}: {e}", path.display())))?;
        serde_yaml::from_str(&text)
            .map_err(|e| ScenarioError::File(format!("{}: {e}", path.display())))
    }

    /// Every reason the scenario cannot run, in one error.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let problems = [
            self.population_problems(),
            self.timing_problems(),
            self.churn_problems(),
        ]
        .concat();
        match problems.is_empty() {
            true => Ok(()),
            false => Err(ScenarioError::Invalid(format!(
                "this scenario cannot run: {}",
                problems.join("; ")
            ))),
        }
    }

    /// Users, groups and the roles in each group.
    fn population_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.users == 0 {
            problems.push("users must be at least 1".to_string());
        }
        if self.devices_per_user == 0 {
            problems.push("devices_per_user must be at least 1".into());
        }
        if self.groups.iter().all(|g| g.count == 0) {
            problems.push("there must be at least one group".into());
        }
        let members = self.senders_per_group + self.verifiers_per_group;
        for spec in self.groups.iter().filter(|g| g.count > 0) {
            if spec.size > self.users {
                problems.push(format!(
                    "a group of {} users is larger than the {} users there are",
                    spec.size, self.users
                ));
            }
            if spec.size * self.devices_per_user < members.max(2) {
                problems.push(format!(
                    "a group of {} members cannot have {} senders and {} verifiers (and needs \
                     someone to receive)",
                    spec.size * self.devices_per_user,
                    self.senders_per_group,
                    self.verifiers_per_group
                ));
            }
        }
        if self.senders_per_group == 0 {
            problems.push("senders_per_group must be at least 1".into());
        }
        problems
    }

    /// The load and how long it is offered and drained.
    fn timing_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !(self.message_rate.is_finite() && self.message_rate > 0.0) {
            problems.push(format!(
                "message_rate must be above 0 messages/s, not {}",
                self.message_rate
            ));
        }
        if self.message_size < MIN_BODY {
            problems.push(format!(
                "message_size must be at least {MIN_BODY} bytes (the simulator's header)"
            ));
        }
        if !(self.duration_secs.is_finite() && self.duration_secs > 0.0) {
            problems.push("duration_secs must be above 0".into());
        }
        if !(self.ramp_up_secs.is_finite()
            && (0.0..=self.duration_secs).contains(&self.ramp_up_secs))
        {
            problems.push("ramp_up_secs must be between 0 and duration_secs".into());
        }
        if !(self.drain_secs.is_finite() && self.drain_secs >= 0.0) {
            problems.push("drain_secs must not be negative".into());
        }
        if self.connections == 0 {
            problems.push("connections must be at least 1".into());
        }
        problems
    }

    /// Churn and faults: valid rates, and someone to add or remove.
    fn churn_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, rate) in [
            ("self_updates_per_minute", self.self_updates_per_minute),
            ("adds_per_minute", self.adds_per_minute),
            ("removes_per_minute", self.removes_per_minute),
            ("commit_storms_per_minute", self.commit_storms_per_minute),
            (
                "client_restarts_per_minute",
                self.client_restarts_per_minute,
            ),
            ("resyncs_per_minute", self.resyncs_per_minute),
        ] {
            if !(rate.is_finite() && rate >= 0.0) {
                problems.push(format!("{name} must be 0 or more, not {rate}"));
            }
        }
        if !(0.0..1.0).contains(&self.dropped_responses) {
            problems.push(format!(
                "dropped_responses is a fraction of sends, at least 0 and below 1, not {}",
                self.dropped_responses
            ));
        }
        let members = self.senders_per_group + self.verifiers_per_group;
        let has_counters = self.groups.iter().any(|g| {
            g.count > 0 && g.size * self.devices_per_user > members + self.devices_per_user
        });
        if self.removes_per_minute > 0.0 && !has_counters {
            problems.push(
                "removes need a group with a member that is neither a sender nor a verifier \
                 (only those are removed)"
                    .into(),
            );
        }
        if self.adds_per_minute > 0.0
            && self
                .groups
                .iter()
                .all(|g| g.count == 0 || g.size >= self.users)
        {
            problems
                .push("adds need a group smaller than the number of users (someone to add)".into());
        }
        problems
    }

    /// Whether the run changes membership or injects faults.
    pub fn has_churn_or_faults(&self) -> bool {
        self.self_updates_per_minute > 0.0
            || self.adds_per_minute > 0.0
            || self.removes_per_minute > 0.0
            || self.commit_storms_per_minute > 0.0
            || self.dropped_responses > 0.0
            || self.client_restarts_per_minute > 0.0
            || self.resyncs_per_minute > 0.0
            || self.ds_restarts > 0
    }

    pub fn clients(&self) -> usize {
        self.users * self.devices_per_user
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_secs)
    }

    /// The offered rate `elapsed` into the messaging phase.
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        let ramp = self.ramp_up_secs;
        if ramp <= 0.0 {
            return self.message_rate;
        }
        self.message_rate * (elapsed.as_secs_f64() / ramp).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scenario_can_run() {
        assert_eq!(Scenario::default().validate(), Ok(()));
    }

    #[test]
    fn a_group_larger_than_the_users_and_a_zero_rate_are_refused_together() {
        let scenario = Scenario {
            users: 10,
            groups: vec![GroupSpec { count: 1, size: 50 }],
            message_rate: 0.0,
            ..Scenario::default()
        };
        let Err(ScenarioError::Invalid(reason)) = scenario.validate() else {
            panic!("an impossible scenario was accepted");
        };
        assert!(
            reason.contains("a group of 50 users is larger than the 10 users"),
            "{reason}"
        );
        assert!(reason.contains("message_rate must be above 0"), "{reason}");
    }

    #[test]
    fn a_group_too_small_for_its_roles_is_refused() {
        let scenario = Scenario {
            groups: vec![GroupSpec { count: 1, size: 2 }],
            senders_per_group: 2,
            verifiers_per_group: 1,
            ..Scenario::default()
        };
        assert!(scenario.validate().is_err());
    }

    #[test]
    fn impossible_churn_and_faults_are_refused_with_their_reasons() {
        let scenario = Scenario {
            users: 10,
            groups: vec![GroupSpec { count: 1, size: 3 }],
            senders_per_group: 2,
            verifiers_per_group: 1,
            removes_per_minute: 5.0,
            self_updates_per_minute: -1.0,
            dropped_responses: 1.0,
            ..Scenario::default()
        };
        let Err(ScenarioError::Invalid(reason)) = scenario.validate() else {
            panic!("an impossible scenario was accepted");
        };
        assert!(
            reason.contains("removes need a group with a member"),
            "{reason}"
        );
        assert!(
            reason.contains("self_updates_per_minute must be 0 or more"),
            "{reason}"
        );
        assert!(
            reason.contains("dropped_responses is a fraction"),
            "{reason}"
        );
    }

    #[test]
    fn group_specs_read_as_count_x_size() {
        assert_eq!(
            "100x10".parse(),
            Ok(GroupSpec {
                count: 100,
                size: 10
            })
        );
        assert_eq!(
            "1000".parse(),
            Ok(GroupSpec {
                count: 1,
                size: 1000
            })
        );
        assert!("tenxten".parse::<GroupSpec>().is_err());
    }

    #[test]
    fn a_yaml_scenario_keeps_defaults_for_what_it_leaves_out() {
        let scenario: Scenario =
            serde_yaml::from_str("users: 20\ngroups: [{count: 2, size: 5}]\n").expect("valid");
        assert_eq!(scenario.users, 20);
        assert_eq!(scenario.groups, [GroupSpec { count: 2, size: 5 }]);
        assert_eq!(scenario.message_size, Scenario::default().message_size);
        assert!(serde_yaml::from_str::<Scenario>("userz: 20\n").is_err());
    }

    #[test]
    fn the_example_scenario_in_config_can_run() {
        let example: Scenario =
            serde_yaml::from_str(include_str!("../../../config/confide-sim.example.yaml"))
                .expect("the example parses");
        assert_eq!(example.validate(), Ok(()));
        assert!(example.groups.iter().any(|g| g.size == 1000));
    }

    #[test]
    fn the_rate_ramps_up_linearly() {
        let scenario = Scenario {
            message_rate: 100.0,
            ramp_up_secs: 10.0,
            ..Scenario::default()
        };
        assert_eq!(scenario.rate_at(Duration::from_secs(5)), 50.0);
        assert_eq!(scenario.rate_at(Duration::from_secs(20)), 100.0);
    }
}
