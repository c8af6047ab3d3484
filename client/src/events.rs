//! What a client observes in its groups, in the order the DS fixed.

use std::fmt;

use confide_core::ClientId;

use crate::display::Untrusted;
use crate::roster::GroupMember;

/// A group id as the client sees it.
pub type GroupId = Vec<u8>;

/// Kept in the client's state until handed over, so a client that stops
/// after processing an entry but before its application took the event
/// still delivers it after a restart.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// An application message, decrypted.
    Message {
        group: GroupId,
        seq: u64,
        sender: ClientId,
        body: Vec<u8>,
    },
    /// This client joined a group through a Welcome; `members` is the
    /// roster it joined, credentials and key fingerprints included.
    Joined {
        group: GroupId,
        members: Vec<GroupMember>,
        epoch: u64,
    },
    /// A commit by `by` added members. Derived from the roster before and
    /// after the commit, so whatever way a member got in (an Add, or an
    /// external commit, where `by` is the newcomer itself) is reported.
    MembersAdded {
        group: GroupId,
        by: ClientId,
        members: Vec<GroupMember>,
    },
    /// A commit by `by` removed members.
    MembersRemoved {
        group: GroupId,
        by: ClientId,
        members: Vec<GroupMember>,
    },
    /// Members left: a commit removed them on their own user's proposal
    /// (`crate::Client::leave`), whoever committed it.
    MembersLeft {
        group: GroupId,
        members: Vec<GroupMember>,
    },
    /// This client was removed from the group; nothing more arrives from it.
    Removed { group: GroupId, by: ClientId },
    /// A commit moved the group to a new epoch.
    EpochChanged {
        group: GroupId,
        epoch: u64,
        by: ClientId,
    },
    /// The DS said this client's key package pool ran low; it uploaded more.
    KeyPackagesReplenished { uploaded: usize },
    /// An entry could not be processed (e.g. it was tampered with).
    Undecryptable {
        group: GroupId,
        seq: u64,
        reason: String,
    },
    /// The DS skipped entries `after + 1 ..= next - 1` of the group's log,
    /// and asking again did not bring them: they were withheld (or pruned
    /// before this client read them). Processing went on at `next`.
    Gap {
        group: GroupId,
        after: u64,
        next: u64,
    },
    /// This client found itself stuck in the group (a commit it could not
    /// process, or a run of messages it could not decrypt) and is rejoining
    /// it by external commit ([`crate::Client::rejoin`]).
    Resyncing { group: GroupId, reason: String },
    /// This client rejoined the group by external commit at `epoch`; what
    /// the log held before it (unreadable to it) is skipped.
    Resynced { group: GroupId, epoch: u64 },
    /// A member rejoined the group by external commit, removing its own old
    /// leaf (a re-sync after it lost its state or fell behind); its new
    /// leaf is certified by its user's identity key.
    MemberRejoined {
        group: GroupId,
        member: ClientId,
        fingerprint: String,
    },
    /// A device in the group that is not certified by the identity key
    /// pinned for the user it names (`crate::verify`): slipped in by a
    /// Welcome's tree, an Add, an Update or an external commit. It can read
    /// the group from the epoch it appeared in.
    GhostDevice {
        group: GroupId,
        client: ClientId,
        fingerprint: String,
        reason: String,
    },
    /// A key package claimed to add `client` to the group was refused: the
    /// device is not certified by its user, so it was not added.
    DeviceRefused {
        group: GroupId,
        client: ClientId,
        fingerprint: String,
        reason: String,
    },
    /// A device of `user` is certified by another identity key than the one
    /// pinned for it (fingerprints `old` and `new`): the user's devices
    /// under the new key count as ghosts until this user compares their
    /// contact safety number and accepts the new key.
    IdentityKeyChanged {
        user: String,
        old: String,
        new: String,
    },
}

fn names(members: &[GroupMember]) -> String {
    let names = members
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Untrusted(&names).to_string()
}

fn name(client: &ClientId) -> String {
    Untrusted(&client.to_string()).to_string()
}

/// One line for people: the CLI and the demo print events this way. Every
/// string another party chose (a body, a name, a reason) is shown through
/// [`Untrusted`], so it cannot steer the terminal or fake a line.
impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Message {
                seq, sender, body, ..
            } => write!(
                f,
                "#{seq} from {}: {}",
                name(sender),
                Untrusted(&String::from_utf8_lossy(body))
            ),
            Event::Joined { members, epoch, .. } => {
                write!(f, "joined at epoch {epoch} with {}", names(members))
            }
            Event::MembersAdded { by, members, .. } if members.iter().all(|m| &m.client == by) => {
                write!(f, "{} joined by external commit", names(members))
            }
            Event::MembersAdded { by, members, .. } => {
                write!(f, "{} added {}", name(by), names(members))
            }
            Event::MembersRemoved { by, members, .. } => {
                write!(f, "{} removed {}", name(by), names(members))
            }
            Event::MembersLeft { members, .. } => write!(f, "{} left", names(members)),
            Event::Removed { by, .. } => write!(f, "removed from the group by {}", name(by)),
            Event::EpochChanged { epoch, by, .. } => {
                write!(f, "epoch {epoch} (commit by {})", name(by))
            }
            Event::KeyPackagesReplenished { uploaded } => {
                write!(f, "uploaded {uploaded} key packages")
            }
            Event::Undecryptable { seq, reason, .. } => {
                write!(f, "could not process #{seq}: {}", Untrusted(reason))
            }
            Event::Gap { after, next, .. } => {
                write!(f, "the server withheld #{}..#{}", after + 1, next - 1)
            }
            Event::Resyncing { reason, .. } => {
                write!(f, "stuck in the group ({}); re-joining", Untrusted(reason))
            }
            Event::Resynced { epoch, .. } => write!(f, "re-joined at epoch {epoch} (resync)"),
            Event::MemberRejoined {
                member,
                fingerprint,
                ..
            } => write!(
                f,
                "{} re-joined (resync), key {}",
                name(member),
                Untrusted(fingerprint)
            ),
            Event::GhostDevice {
                client,
                fingerprint,
                reason,
                ..
            } => write!(
                f,
                "GHOST DEVICE {} (key {fingerprint}) is in the group: {}",
                name(client),
                Untrusted(reason)
            ),
            Event::DeviceRefused {
                client,
                fingerprint,
                reason,
                ..
            } => write!(
                f,
                "refused to add {} (key {fingerprint}): {}",
                name(client),
                Untrusted(reason)
            ),
            Event::IdentityKeyChanged { user, old, new } => write!(
                f,
                "the identity key of {} changed from {old} to {new}: its devices under the new \
                 key are refused until you compare your safety number and accept it",
                Untrusted(user)
            ),
        }
    }
}

impl Event {
    /// The group the event belongs to, if any.
    pub fn group(&self) -> Option<&GroupId> {
        match self {
            Event::Message { group, .. }
            | Event::Joined { group, .. }
            | Event::MembersAdded { group, .. }
            | Event::MembersRemoved { group, .. }
            | Event::MembersLeft { group, .. }
            | Event::Removed { group, .. }
            | Event::EpochChanged { group, .. }
            | Event::Undecryptable { group, .. }
            | Event::Gap { group, .. }
            | Event::Resyncing { group, .. }
            | Event::Resynced { group, .. }
            | Event::MemberRejoined { group, .. }
            | Event::GhostDevice { group, .. }
            | Event::DeviceRefused { group, .. } => Some(group),
            Event::KeyPackagesReplenished { .. } | Event::IdentityKeyChanged { .. } => None,
        }
    }
}
