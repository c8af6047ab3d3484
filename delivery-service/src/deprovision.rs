//! Deprovisioning a device: a lost laptop loses its sessions and key
//! packages at once, can never authenticate or register again, and — in
//! every group that lists the DS as an external sender — the DS proposes its
//! removal with a DS-signed MLS Remove proposal that the remaining members'
//! clients commit. Until that commit the device is still a member
//! cryptographically, but it can no longer reach the DS. A revocation signed
//! by the user's identity key may come with it: the DS keeps it and serves
//! it with the user's devices, so every client refuses the device too.

use confide_core::certificate::Revocation;

use crate::auth::RequestMeta;
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

/// Who asks to deprovision a client, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remover {
    /// An operator presenting the admin token.
    Operator,
    /// An authenticated client, which may remove devices of its own user.
    Client(ClientId),
}

impl Remover {
    /// Checks that this remover may deprovision `target`: an operator, or a
    /// device of the same user. The answer to anybody else does not depend
    /// on whether `target` exists.
    pub fn may_remove(&self, target: &ClientId) -> ApiResult<()> {
        match self {
            Remover::Client(caller) if caller.user() != target.user() => {
                Err(ApiError::PermissionDenied(
                    "a client may remove only devices of its own user".into(),
                ))
            }
            _ => Ok(()),
        }
    }
}

impl Ds {
    /// Authenticates a deprovisioning request, before anything in it is
    /// looked at (as every authenticated RPC does): the admin token, or a
    /// session.
    pub async fn authenticate_remover(&self, request: &RequestMeta<'_>) -> ApiResult<Remover> {
        if self.is_admin(request)? {
            self.admit_unauthenticated(request)?;
            return Ok(Remover::Operator);
        }
        Ok(Remover::Client(self.authenticated_client(request).await?))
    }

    /// Deprovisions `target` (see the module docs), keeping `revocation`
    /// (confide-core `Revocation` bytes; empty for none) once it verifies.
    /// Repeating it is harmless and proposes again where the removal is
    /// still pending.
    pub async fn remove_client(&self, target: &ClientId, revocation: &[u8]) -> ApiResult<Removal> {
        if !revocation.is_empty() {
            self.check_revocation(target, revocation).await?;
        }
        let revocation = (!revocation.is_empty()).then_some(revocation);
        match self.store.remove_client(target, revocation).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::NotFound("client not found".into()));
            }
            Err(error) => return Err(error.into()),
        }
        self.end_streams(Ending::ClientRemoved {
            client: target.clone(),
        });
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

    /// A revocation must be signed by the target's user's identity key and
    /// name the signature key the target registered (removed or not: a
    /// device removed before may be revoked after).
    async fn check_revocation(&self, target: &ClientId, bytes: &[u8]) -> ApiResult<()> {
        let invalid = |reason: String| ApiError::InvalidArgument(format!("revocation: {reason}"));
        let revocation =
            Revocation::from_bytes(target.clone(), bytes).map_err(|e| invalid(e.to_string()))?;
        let registered = self
            .store
            .registered_client(target)
            .await?
            .ok_or_else(|| ApiError::NotFound("client not found".into()))?;
        if revocation.signature_key != registered.record.signature_key {
            return Err(invalid(format!(
                "it revokes another signature key than {target}'s"
            )));
        }
        let identity_key = self
            .store
            .identity_key(target.user())
            .await?
            .ok_or_else(|| invalid(format!("user {} has no identity key", target.user())))?;
        revocation.verify(&identity_key).map_err(|_| {
            invalid(format!(
                "it is not signed by user {}'s identity key",
                target.user()
            ))
        })
    }
}
