//! The groups a client is in, for a device restored from its user's
//! identity key: its state file is gone, so the DS's roster is the only
//! record of which groups it must rejoin (by external commit).

use crate::domain::{ClientId, GroupId};
use crate::error::ApiResult;
use crate::state::Ds;

impl Ds {
    /// The groups where `caller` is a current member of the roster.
    pub async fn list_groups(&self, caller: &ClientId) -> ApiResult<Vec<GroupId>> {
        Ok(self
            .store
            .memberships(caller)
            .await?
            .into_iter()
            .filter(|m| m.is_current())
            .map(|m| m.group_id)
            .collect())
    }
}
