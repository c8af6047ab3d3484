//! Deprovisioning a device: a lost laptop loses its sessions and key
//! packages at once, can never authenticate or register again, and — in
//! every group that lists the DS as an external sender — the DS proposes its
//! removal with a DS-signed MLS Remove proposal that the remaining members'
//! clients commit. Until that commit the device is still a member
//! cryptographically, but it can no longer reach the DS.

use crate::domain::ClientId;
use crate::error::{ApiError, ApiResult};
use crate::hub::Ending;
use crate::state::Ds;
use crate::store::StoreError;

/// What deprovisioning did to the client's groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Groups in which the DS proposed the client's removal.
    pub proposed_in: u32,
    /// Groups without the DS as external sender, where a member must remove
    /// the client.
    pub not_removable_in: u32,
}

impl Ds {
    /// Checks that the request may deprovision `target`: an operator with
    /// the admin token, or an authenticated device of the same user. The
    /// answer to anybody else does not depend on whether `target` exists.
    pub async fn authorize_removal<T: prost::Message>(
        &self,
        request: &tonic::Request<T>,
        target: &ClientId,
    ) -> ApiResult<()> {
        if self.is_admin(request)? {
            return self.admit_unauthenticated(request);
        }
        let caller = self.authenticated_client(request).await?;
        if caller.user() != target.user() {
            return Err(ApiError::PermissionDenied(
                "a client may remove only devices of its own user".into(),
            ));
        }
        Ok(())
    }

    /// Deprovisions `target` (see the module docs). Repeating it is harmless
    /// and proposes again where the removal is still pending.
    pub async fn remove_client(&self, target: &ClientId) -> ApiResult<Removal> {
        match self.store.remove_client(target).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::NotFound("client not found".into()));
            }
            Err(error) => return Err(error.into()),
        }
        self.end_streams(Ending::ClientRemoved {
            client: target.clone(),
        })
        .await;
        let mut removal = Removal::default();
        let groups = self.store.memberships(target).await?;
        for group in groups.iter().filter(|m| m.is_current()) {
            let proposed = match &self.external_sender {
                Some(key) => self
                    .append_proposal(&group.group_id, None, |handle| {
                        Ok(handle
                            .propose_remove(key, target)?
                            .map(|(proposal, epoch)| (proposal.into(), epoch)))
                    })
                    .await?
                    .is_some(),
                None => false,
            };
            if proposed {
                removal.proposed_in += 1;
            } else {
                removal.not_removable_in += 1;
            }
        }
        tracing::info!(client = %target, proposed_in = removal.proposed_in,
            not_removable_in = removal.not_removable_in, "client deprovisioned");
        metrics::counter!("confide_clients_removed_total").increment(1);
        Ok(removal)
    }
}
