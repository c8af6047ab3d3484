//! What members compare to know the DS has not slipped anyone in or split
//! them apart: each group's roster, with every member's credential and key
//! fingerprint, and a safety code derived from the epoch authenticator.
//!
//! The DS orders and delivers, and it could try to add a member on its own
//! (a key package it substitutes, an external commit it crafts) or show
//! members different histories (a fork). It cannot do either unseen: every
//! membership change reaches every member's client as an event naming the
//! credential ([`diff`]), and members of a forked group show different safety
//! codes ([`safety_code`]).

use std::fmt;

pub use confide_core::fingerprint::fingerprint;
use confide_core::{ClientId, profile::client_of};
use openmls::prelude::*;

/// One leaf of a group's ratchet tree, as this client's own MLS state has it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct GroupMember {
    /// The client the credential names (user and device).
    pub client: ClientId,
    /// Its leaf in the ratchet tree.
    pub leaf: u32,
    /// The fingerprint of its signature key ([`fingerprint`]): a device can
    /// show its own, so a user sees whether the key in the group is theirs.
    pub fingerprint: String,
    /// Whether the device carries a certificate by the identity key this
    /// client pinned for its user (`crate::verify`); one that does not is a
    /// ghost.
    pub certified: bool,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.certified {
            true => write!(f, "{} (key {})", self.client, self.fingerprint),
            false => write!(
                f,
                "{} (key {}, GHOST: not certified by its user)",
                self.client, self.fingerprint
            ),
        }
    }
}

/// Every member of the group in leaf order, each leaf judged by
/// `certified`. A leaf whose credential names no client is still listed,
/// under a stand-in name ([`name_of`]).
pub fn roster(group: &MlsGroup, certified: impl Fn(&LeafNode) -> bool) -> Vec<GroupMember> {
    let tree = group.public_group();
    group
        .members()
        .map(|member| GroupMember {
            client: name_of(&member.credential),
            leaf: member.index.u32(),
            fingerprint: fingerprint(&member.signature_key),
            certified: tree.leaf(member.index).is_some_and(&certified),
        })
        .collect()
}

/// The client a credential names, or a stand-in name for one that names
/// none (no client of ours would create one; a hostile DS might): it must
/// still be shown.
pub fn name_of(credential: &Credential) -> ClientId {
    client_of(credential).unwrap_or_else(|_| {
        let identity = hex::encode(credential.serialized_content());
        ClientId::new("unknown-credential", &identity[..identity.len().min(32)])
            .expect("hex digits make a valid device name")
    })
}

/// What changed between two rosters of the same group: the members that
/// appeared and those that went. A leaf that changed its credential or key
/// counts as both (a key rotation by self-update keeps credential and leaf
/// but changes nothing here, since the signature key stays).
pub fn diff(before: &[GroupMember], after: &[GroupMember]) -> (Vec<GroupMember>, Vec<GroupMember>) {
    let added = after
        .iter()
        .filter(|m| !before.contains(m))
        .cloned()
        .collect();
    let removed = before
        .iter()
        .filter(|m| !after.contains(m))
        .cloned()
        .collect();
    (added, removed)
}

/// The group's safety code for its current epoch
/// ([`confide_core::fingerprint::safety_code`]), for members to compare out
/// of band (read aloud, or shown side by side).
pub fn safety_code(group: &MlsGroup) -> String {
    confide_core::fingerprint::safety_code(
        group.group_id().as_slice(),
        group.epoch().as_u64(),
        group.epoch_authenticator().as_slice(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(client: &str, leaf: u32, key: &[u8]) -> GroupMember {
        let (user, device) = client.split_once('/').expect("user/device");
        GroupMember {
            client: ClientId::new(user, device).expect("a valid id"),
            leaf,
            fingerprint: fingerprint(key),
            certified: true,
        }
    }

    #[test]
    fn a_fingerprint_is_eight_groups_of_four_hex_digits_and_differs_by_key() {
        let a = fingerprint(b"key a");
        assert_eq!(a.split(' ').count(), 8);
        assert!(a.split(' ').all(|g| g.len() == 4));
        assert_ne!(a, fingerprint(b"key b"));
        assert_eq!(a, fingerprint(b"key a"));
    }

    #[test]
    fn a_substituted_key_under_a_known_name_shows_as_removed_and_added() {
        let before = [member("alice/phone", 0, b"a"), member("bob/phone", 1, b"b")];
        let after = [
            member("alice/phone", 0, b"a"),
            member("bob/phone", 1, b"ghost"),
        ];
        let (added, removed) = diff(&before, &after);
        assert_eq!(added, vec![after[1].clone()]);
        assert_eq!(removed, vec![before[1].clone()]);
    }

    #[test]
    fn an_unchanged_roster_has_no_difference() {
        let roster = [member("alice/phone", 0, b"a"), member("bob/phone", 1, b"b")];
        assert_eq!(diff(&roster, &roster), (vec![], vec![]));
    }
}
