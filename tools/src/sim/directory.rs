//! What the coordinator and the virtual clients share while messages flow:
//! the directory of groups and clients, each group's membership and every
//! change to it, the orders the coordinator gives, and the progress counters.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use confide_client::{ClientId, GroupId};

/// Counters shared with the coordinator, for progress and for knowing when
/// everything arrived.
#[derive(Debug, Default)]
pub struct Progress {
    pub joined: AtomicU64,
    pub acknowledged: AtomicU64,
    pub deliveries: AtomicU64,
    /// Deliveries owed so far: an acknowledged message in a group of n
    /// members is owed to n - 1 (the report recounts this exactly from the
    /// membership log).
    pub owed: AtomicU64,
    /// Sends given up on.
    pub failed: AtomicU64,
    /// Commits and restarts ordered and not yet done.
    pub pending_changes: AtomicU64,
    /// Live streams that broke and were opened again.
    pub resubscribes: AtomicU64,
}

/// A membership change a full member commits.
#[derive(Clone, Copy, Debug)]
pub enum Churn {
    SelfUpdate,
    /// Add every device of this user.
    Add(usize),
    /// Remove every device of this user.
    Remove(usize),
    /// Rejoin the group by external commit, as a member stuck in it does.
    Resync,
}

/// What the coordinator tells a full member to do.
#[derive(Debug)]
pub enum Order {
    Send {
        group: u32,
        number: u64,
        /// When the open-loop arrival process wanted it sent.
        due: Instant,
    },
    Commit {
        group: u32,
        churn: Churn,
        due: Instant,
    },
    /// Stop abruptly and start again from the state file.
    Restart,
}

/// Who is in a group, and every change to that since it was built.
#[derive(Clone, Debug)]
pub struct Membership {
    /// Which clients decrypt (full members); the others only count.
    pub decrypts: Arc<[bool]>,
    pub initial: Vec<usize>,
    pub clients: BTreeSet<usize>,
    pub changes: Vec<MembershipChange>,
    /// Full members that rejoined by external commit: (client, last seq
    /// it had read, seq of its external commit, the epoch it began). What
    /// lies strictly between is skipped by the rejoin, unread, and what
    /// others encrypted for an earlier epoch after it cannot be read: not
    /// owed to it.
    pub resyncs: Vec<(usize, u64, u64, u64)>,
}

/// Clients added or removed by the commit at `seq` of a group's log, which
/// began `epoch`.
#[derive(Clone, Debug)]
pub struct MembershipChange {
    pub seq: u64,
    pub epoch: u64,
    pub clients: Vec<usize>,
    pub added: bool,
}

impl Membership {
    pub fn new(clients: &[usize], decrypts: Arc<[bool]>) -> Self {
        Self {
            decrypts,
            initial: clients.to_vec(),
            clients: clients.iter().copied().collect(),
            changes: Vec::new(),
            resyncs: Vec::new(),
        }
    }

    /// How many members are owed a message of `epoch` appended at `seq`:
    /// the members then, but full members added in a later epoch (it was
    /// not encrypted for them, so they skip it; a counter counts what the DS
    /// sends it).
    pub fn size_at(&self, seq: u64, epoch: u64) -> usize {
        match self.changes.is_empty() && self.resyncs.is_empty() {
            true => self.initial.len(),
            false => self.members_at(seq, epoch).len(),
        }
    }

    /// The members owed a message of `epoch` appended at `seq`.
    pub fn members_at(&self, seq: u64, epoch: u64) -> BTreeSet<usize> {
        let mut members: BTreeSet<usize> = self.initial.iter().copied().collect();
        for change in self.changes.iter().filter(|c| c.seq < seq) {
            for client in &change.clients {
                if !change.added {
                    members.remove(client);
                } else if change.epoch <= epoch || !self.decrypts[*client] {
                    members.insert(*client);
                }
            }
        }
        for (client, read, rejoined, rejoined_epoch) in &self.resyncs {
            if (*read < seq && seq < *rejoined) || (seq > *rejoined && epoch < *rejoined_epoch) {
                members.remove(client);
            }
        }
        members
    }

    /// Records that `client`, having read the log up to `read`, rejoined by
    /// the external commit at `rejoined`, which began `epoch`.
    pub fn resynced(&mut self, client: usize, read: u64, rejoined: u64, epoch: u64) {
        self.resyncs.push((client, read, rejoined, epoch));
    }

    /// Whether `client` was removed by a commit in `from..to` of the log, so
    /// entries up to its return are not its to receive.
    pub fn removed_between(&self, client: usize, from: u64, to: u64) -> bool {
        self.changes
            .iter()
            .any(|c| !c.added && (from..to).contains(&c.seq) && c.clients.contains(&client))
    }

    pub fn apply(&mut self, seq: u64, epoch: u64, clients: Vec<usize>, added: bool) {
        for client in &clients {
            if added {
                self.clients.insert(*client);
            } else {
                self.clients.remove(client);
            }
        }
        self.changes.push(MembershipChange {
            seq,
            epoch,
            clients,
            added,
        });
    }
}

/// What the actors know about the groups and clients.
pub struct Directory {
    pub group_ids: Vec<GroupId>,
    pub index_of: HashMap<GroupId, u32>,
    pub client_ids: Vec<ClientId>,
    pub client_index: HashMap<ClientId, usize>,
    /// Each user's name, by user index.
    pub user_names: Vec<String>,
    pub devices_per_user: usize,
    pub message_size: usize,
    pub dropped_responses: f64,
    pub membership: Vec<Mutex<Membership>>,
}

impl Directory {
    pub fn membership(&self, group: u32) -> std::sync::MutexGuard<'_, Membership> {
        self.membership[group as usize]
            .lock()
            .expect("no actor panics holding the membership")
    }

    /// Each group's membership, with every change made so far.
    pub fn membership_log(&self) -> Vec<Membership> {
        (0..self.membership.len() as u32)
            .map(|group| self.membership(group).clone())
            .collect()
    }
}
