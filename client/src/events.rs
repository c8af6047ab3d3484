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
        /// When the sender says it sent it (its clock, ms since 1970), from
        /// inside the ciphertext; `None` from a sender that did not say
        /// (a payload that is not MIMI content).
        #[serde(default)]
        sent_at_ms: Option<u64>,
    },
    /// A member named the group, or changed its name or topic. Sent inside
    /// the ciphertext like a message: the DS never sees either.
    GroupRenamed {
        group: GroupId,
        seq: u64,
        by: ClientId,
        name: String,
        topic: Option<String>,
    },
    /// A message of a type this version cannot show (a reaction, an
    /// attachment, …), named by its MIMI content type.
    Unsupported {
        group: GroupId,
        seq: u64,
        sender: ClientId,
        content_type: String,
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
    /// `left`: it had asked to leave ([`crate::Client::leave`]), and `by`'s
    /// device committed that.
    Removed {
        group: GroupId,
        by: ClientId,
        #[serde(default)]
        left: bool,
    },
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
            Event::GroupRenamed {
                by,
                name: new,
                topic,
                ..
            } => {
                write!(f, "{} named the group \"{}\"", name(by), Untrusted(new))?;
                match topic {
                    Some(topic) => write!(f, " (topic: {})", Untrusted(topic)),
                    None => Ok(()),
                }
            }
            Event::Unsupported {
                seq,
                sender,
                content_type,
                ..
            } => write!(
                f,
                "#{seq} from {}: a message of type {} that this version cannot show",
                name(sender),
                Untrusted(content_type)
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
            Event::Removed { by, left: true, .. } => {
                write!(f, "you left the group ({}'s device committed it)", name(by))
            }
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
                let missing = match next - after {
                    2 => format!("#{}", after + 1),
                    _ => format!("#{}..#{}", after + 1, next - 1),
                };
                write!(
                    f,
                    "{missing} of the group's log never arrived: the server withheld it, or \
                     pruned it before this device read it"
                )
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
            | Event::GroupRenamed { group, .. }
            | Event::Unsupported { group, .. }
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
