//! External commits (RFC 9420 §12.4.3.2): what the DS accepts of one.
//!
//! A client joins, or re-joins, a group by external commit from its
//! GroupInfo, without any member's involvement, so the DS lets through only
//! the two cases a user's own devices need: a member re-syncing itself (it
//! lost its state, or is stuck in an old epoch), which removes its own old
//! leaf, and a certified device of a user already in the group. That the
//! caller's user has a device in the roster is the store's to answer
//! (`Ds::submit_commit`); here: the commit brings in only the caller's own
//! leaf, removes no one else's, and leaves the caller one leaf.

use std::collections::{BTreeSet, HashMap};

use openmls::prelude::*;

use super::{MlsError, client_of};
use crate::domain::ClientId;

/// Refuses an external commit that brings in a leaf of another client than
/// the caller, adds anyone, removes another client's leaf, or leaves the
/// caller with two leaves (one it had and did not remove).
pub(super) fn check_external_commit(
    caller: &ClientId,
    current: &HashMap<u32, ClientId>,
    staged: &StagedCommit,
) -> Result<(), MlsError> {
    let leaf = staged
        .update_path_leaf_node()
        .ok_or_else(|| MlsError::Rejected("an external commit needs an update path".into()))?;
    let joiner = client_of(leaf.credential())?;
    if joiner != *caller {
        return Err(MlsError::Forbidden(format!(
            "an external commit may bring in only the caller's own device, not {joiner}"
        )));
    }
    if staged.add_proposals().next().is_some() {
        return Err(MlsError::Forbidden(
            "an external commit may not add members".into(),
        ));
    }
    let removed: BTreeSet<u32> = staged
        .remove_proposals()
        .map(|remove| remove.remove_proposal().removed().u32())
        .collect();
    for index in &removed {
        match current.get(index) {
            Some(client) if client == caller => {}
            Some(client) => {
                return Err(MlsError::Forbidden(format!(
                    "an external commit may remove only the committer's own old leaf, not \
                     {client}'s"
                )));
            }
            None => return Err(MlsError::Rejected("a Remove names no member".into())),
        }
    }
    let kept_leaf = current
        .iter()
        .any(|(index, client)| client == caller && !removed.contains(index));
    if kept_leaf {
        return Err(MlsError::Rejected(format!(
            "{caller} already has a leaf in the group: its external commit must remove it"
        )));
    }
    Ok(())
}

/// The roster change of an accepted external commit: a client re-syncing
/// (its old leaf removed, a new one added) stays as it is, membership and
/// all; a new device of the group's user joins.
pub(super) fn external_joiner_roster(
    caller: &ClientId,
    added: &mut Vec<ClientId>,
    removed: &mut Vec<ClientId>,
) {
    let before = removed.len();
    removed.retain(|client| client != caller);
    if removed.len() == before {
        added.push(caller.clone());
    }
}
