//! A user's devices, and the mailbox through which an existing device links
//! a new one.
//!
//! `ListDevices` serves what clients check certificates and revocations
//! against: the user's identity key, its devices and the revocations its
//! identity key signed. The DS vouches for none of it; every client checks
//! each signature itself.
//!
//! Linking: the new device, which has no session, posts an offer sealed
//! under a key derived from a code its person reads off it, at a link id
//! derived from the same code; an existing device of the user (signed in)
//! takes the offer, and after its person compared a short authentication
//! string, posts a sealed answer (with the new device's certificate); the
//! new device takes it, which ends the link. The DS sees only sealed blobs,
//! and only the user's own devices see the offer: to anyone else a link is
//! NOT_FOUND, exactly like an unknown or expired one.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::domain::{ClientId, InvalidClientId, valid_user};
use crate::error::{ApiError, ApiResult};
use crate::state::Ds;
use crate::store::{LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, UserDevices};

/// A link id is 16 bytes derived from the linking code.
pub const LINK_ID_LEN: usize = 16;
/// Largest sealed offer or answer.
pub const MAX_SEALED_BYTES: usize = 16 * 1024;
/// Pending links per user at most, so nobody can fill the mailbox.
pub const MAX_PENDING_LINKS: usize = 8;

/// The answer to a new device polling its link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkPoll {
    /// No answer yet.
    Pending,
    /// The answer, now deleted from the DS.
    Answered(Bytes),
}

fn check_user(user: &str) -> ApiResult<()> {
    if !valid_user(user) {
        return Err(ApiError::InvalidArgument(
            InvalidClientId::BadName("user").to_string(),
        ));
    }
    Ok(())
}

fn check_link_id(link_id: &[u8]) -> ApiResult<()> {
    if link_id.len() != LINK_ID_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "link_id must be {LINK_ID_LEN} bytes, not {}",
            link_id.len()
        )));
    }
    Ok(())
}

fn check_sealed(bytes: &[u8], field: &'static str) -> ApiResult<()> {
    confide_proto::validation::require_bytes(bytes, field, MAX_SEALED_BYTES)?;
    Ok(())
}

/// What anyone but a device of the link's user learns about a link.
fn no_such_link() -> ApiError {
    ApiError::NotFound("no such link (it may have expired)".into())
}

impl Ds {
    /// `user`'s identity key (empty for an unknown user), its devices that
    /// were not removed, each with its signature key and certificate (none
    /// for a device registered before certificates), and the revocations its
    /// identity key signed.
    pub async fn list_devices(&self, user: &str) -> ApiResult<UserDevices> {
        check_user(user)?;
        Ok(self.store.user_devices(user).await?)
    }

    /// Stores a new device's sealed offer to be linked to `user`, for
    /// `link_ttl_secs`; returns when it expires. Posting the same offer
    /// again returns the same expiry.
    pub async fn post_link_offer(
        &self,
        user: &str,
        link_id: &[u8],
        sealed_offer: Bytes,
    ) -> ApiResult<SystemTime> {
        check_user(user)?;
        check_link_id(link_id)?;
        check_sealed(&sealed_offer, "sealed_offer")?;
        let now = SystemTime::now();
        let offer = LinkOffer {
            link_id: link_id.to_vec(),
            user: user.to_owned(),
            sealed_offer,
            expires_at: now + Duration::from_secs(self.settings.link_ttl_secs),
        };
        match self
            .store
            .post_link_offer(&offer, MAX_PENDING_LINKS, now)
            .await?
        {
            LinkPosted::Posted { expires_at } => Ok(expires_at),
            LinkPosted::UnknownUser => Err(ApiError::NotFound(format!(
                "user {user} has no device to link this one from"
            ))),
            LinkPosted::TooMany => Err(ApiError::Exhausted(format!(
                "user {user} has {MAX_PENDING_LINKS} pending links already; retry once one \
                 completes or expires"
            ))),
            LinkPosted::Taken => Err(ApiError::AlreadyExists(
                "this link id is taken: make a new linking code".into(),
            )),
        }
    }

    /// The sealed offer of a link, for a device of the link's user.
    pub async fn take_link_offer(&self, caller: &ClientId, link_id: &[u8]) -> ApiResult<Bytes> {
        check_link_id(link_id)?;
        match self.store.link_offer(link_id, SystemTime::now()).await? {
            Some((user, offer)) if user == caller.user() => Ok(offer),
            _ => Err(no_such_link()),
        }
    }

    /// Answers a link of the caller's user, once (the same answer again is
    /// a retry and succeeds).
    pub async fn post_link_answer(
        &self,
        caller: &ClientId,
        link_id: &[u8],
        sealed_answer: Bytes,
    ) -> ApiResult<()> {
        check_link_id(link_id)?;
        check_sealed(&sealed_answer, "sealed_answer")?;
        let answered = self
            .store
            .post_link_answer(link_id, caller.user(), &sealed_answer, SystemTime::now())
            .await?;
        match answered {
            LinkAnswered::Posted => Ok(()),
            LinkAnswered::NotFound => Err(no_such_link()),
            LinkAnswered::AlreadyAnswered => Err(ApiError::AlreadyExists(
                "this link was answered already".into(),
            )),
        }
    }

    /// What the new device finds at its link: no answer yet, or the answer,
    /// which ends the link.
    pub async fn take_link_answer(&self, link_id: &[u8]) -> ApiResult<LinkPoll> {
        check_link_id(link_id)?;
        match self
            .store
            .take_link_answer(link_id, SystemTime::now())
            .await?
        {
            LinkAnswer::Pending => Ok(LinkPoll::Pending),
            LinkAnswer::Answered(answer) => Ok(LinkPoll::Answered(answer)),
            LinkAnswer::NotFound => Err(no_such_link()),
        }
    }
}
