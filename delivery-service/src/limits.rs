//! Per-client rate limits (governor, GCRA): calls and bytes per client,
//! unauthenticated calls per peer address, key package claims per claimer
//! and per claimer and claimed user. A refusal says when to retry.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil, Quota, RateLimiter};

use crate::config::LimitSettings;
use crate::domain::ClientId;
use crate::error::{ApiError, ApiResult};

pub struct RateLimits {
    requests: DefaultKeyedRateLimiter<ClientId>,
    bytes: DefaultKeyedRateLimiter<ClientId>,
    unauthenticated: DefaultKeyedRateLimiter<IpAddr>,
    claims: DefaultKeyedRateLimiter<ClientId>,
    claims_per_target: DefaultKeyedRateLimiter<(ClientId, String)>,
    clock: DefaultClock,
}

/// `n`, which the configuration guarantees to be at least 1.
fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateLimits {
    pub fn new(settings: &LimitSettings) -> Self {
        let per_second = |rate: u32, burst: u32| {
            Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst.max(rate)))
        };
        let per_minute = |rate: u32| Quota::per_minute(nonzero(rate));
        Self {
            requests: RateLimiter::keyed(per_second(
                settings.requests_per_second,
                settings.request_burst,
            )),
            bytes: RateLimiter::keyed(per_second(settings.bytes_per_second, settings.byte_burst)),
            unauthenticated: RateLimiter::keyed(per_minute(settings.unauthenticated_per_minute)),
            claims: RateLimiter::keyed(per_minute(settings.claims_per_minute)),
            claims_per_target: RateLimiter::keyed(per_minute(
                settings.claims_per_target_per_minute,
            )),
            clock: DefaultClock::default(),
        }
    }

    fn refused(
        &self,
        limit: &'static str,
        not_until: NotUntil<<DefaultClock as Clock>::Instant>,
    ) -> ApiError {
        let retry_after = not_until.wait_time_from(self.clock.now());
        metrics::counter!("confide_rate_limited_total", "limit" => limit).increment(1);
        ApiError::RateLimited {
            limit,
            retry_after,
            reason: format!(
                "rate limit `{limit}` exceeded; retry in {} ms",
                retry_after.as_millis().max(1)
            ),
        }
    }

    /// One authenticated call of `bytes` encoded bytes by `client`.
    pub fn check_request(&self, client: &ClientId, bytes: usize) -> ApiResult<()> {
        self.requests
            .check_key(client)
            .map_err(|n| self.refused("requests", n))?;
        let cells = nonzero(u32::try_from(bytes).unwrap_or(u32::MAX).max(1));
        match self.bytes.check_key_n(client, cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(n)) => Err(self.refused("bytes", n)),
            // More than the burst: the request size limit refuses it first;
            // this is only reached if the two are configured inconsistently.
            Err(_) => Err(ApiError::TooLarge(format!(
                "a {bytes}-byte request exceeds the byte burst"
            ))),
        }
    }

    /// One registration or authentication call from `peer`.
    pub fn check_unauthenticated(&self, peer: Option<IpAddr>) -> ApiResult<()> {
        // Without a peer address (an in-process transport) there is nothing
        // to key on; those callers are local.
        let Some(peer) = peer else { return Ok(()) };
        self.unauthenticated
            .check_key(&peer)
            .map_err(|n| self.refused("unauthenticated", n))
    }

    /// One key package claim by `claimer` for `user`'s devices.
    pub fn check_claim(&self, claimer: &ClientId, user: &str) -> ApiResult<()> {
        self.claims
            .check_key(claimer)
            .map_err(|n| self.refused("claims", n))?;
        self.claims_per_target
            .check_key(&(claimer.clone(), user.to_string()))
            .map_err(|n| self.refused("claims_per_target", n))
    }

    /// Forgets keys whose limits are back to full, so idle clients cost no
    /// memory.
    pub fn forget_idle(&self) {
        self.requests.retain_recent();
        self.bytes.retain_recent();
        self.unauthenticated.retain_recent();
        self.claims.retain_recent();
        self.claims_per_target.retain_recent();
    }
}
