//! Key package pools: validated uploads, atomic claims, low-pool notices.

use std::time::Duration;

use bytes::Bytes;

use crate::domain::{ClientId, InboxItem};
use crate::error::{ApiError, ApiResult};
use crate::mls::{LifetimeRules, validate_key_package};
use crate::state::Ds;
use crate::store::{ClaimedKeyPackage, KeyPackageCount, KeyPackageRecord};

impl Ds {
    /// Validates every key package (signature, lifetime, ciphersuite, the
    /// uploader's own credential and registered key, and a device
    /// certificate by the uploader's user's identity key) before storing any.
    pub async fn publish_key_packages(
        &self,
        client: &ClientId,
        key_packages: Vec<Bytes>,
        last_resort: Option<Bytes>,
    ) -> ApiResult<u32> {
        let max = self.settings.max_key_packages_per_publish;
        if key_packages.len() > max {
            return Err(ApiError::TooLarge(format!(
                "at most {max} key packages per publish"
            )));
        }
        if key_packages.is_empty() && last_resort.is_none() {
            return Err(ApiError::InvalidArgument("no key packages given".into()));
        }
        let registered = self
            .store
            .client(client)
            .await?
            .ok_or(ApiError::Unauthenticated("client is no longer registered"))?;
        let identity_key = self
            .store
            .identity_key(client.user())
            .await?
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "user {} has no identity key: register this device again with its device \
                 certificate",
                    client.user()
                ))
            })?;
        let rules = LifetimeRules {
            max_lifetime: Duration::from_secs(self.settings.key_package_max_lifetime_secs),
            clock_skew: Duration::from_secs(self.settings.key_package_clock_skew_secs),
        };
        let check = |data: Bytes, index: Option<usize>| -> ApiResult<KeyPackageRecord> {
            let name = index.map_or("last-resort key package".to_string(), |i| {
                format!("key package {i}")
            });
            if data.len() > self.settings.max_message_bytes {
                return Err(ApiError::TooLarge(format!(
                    "{name} is {} bytes, more than the {} allowed",
                    data.len(),
                    self.settings.max_message_bytes
                )));
            }
            let valid = validate_key_package(&data, &rules)
                .map_err(|e| ApiError::InvalidArgument(format!("{name}: {e}")))?;
            if valid.client != *client || valid.signature_key != registered.signature_key {
                return Err(ApiError::PermissionDenied(format!(
                    "{name} is not for the caller's own credential and signature key"
                )));
            }
            if valid.identity_key != identity_key {
                return Err(ApiError::InvalidArgument(format!(
                    "{name}'s device certificate is not by user {}'s identity key",
                    client.user()
                )));
            }
            // The extension tells a joiner's client the key package may be
            // used more than once, so it keeps the private key; an unmarked
            // one handed out twice leaves every joiner but the first unable
            // to join.
            match (index, valid.last_resort) {
                (None, false) => {
                    return Err(ApiError::InvalidArgument(
                        "the last-resort key package lacks the last_resort extension".into(),
                    ));
                }
                (Some(_), true) => {
                    return Err(ApiError::InvalidArgument(format!(
                        "{name} carries the last_resort extension: only the last-resort key \
                         package may"
                    )));
                }
                _ => {}
            }
            Ok(KeyPackageRecord {
                key_package_ref: valid.key_package_ref,
                data,
                not_after: valid.not_after,
            })
        };
        let records = key_packages
            .into_iter()
            .enumerate()
            .map(|(i, data)| check(data, Some(i)))
            .collect::<ApiResult<Vec<_>>>()?;
        let last_resort = last_resort.map(|data| check(data, None)).transpose()?;
        Ok(self
            .store
            .publish_key_packages(client, records, last_resort)
            .await?)
    }

    /// One key package for each device of `user`, for `claimer`, within the
    /// claim limits per claimer and per claimer and user. A device whose pool
    /// a claim leaves below the low watermark is told so through its inbox,
    /// once until it publishes again.
    pub async fn claim_key_packages(
        &self,
        claimer: &ClientId,
        user: &str,
    ) -> ApiResult<Vec<ClaimedKeyPackage>> {
        self.limits.check_claim(claimer, user)?;
        let devices = self.store.devices(user).await?;
        let mut claimed = Vec::with_capacity(devices.len());
        for device in devices {
            let Some(key_package) = self.store.claim_key_package(&device).await? else {
                continue;
            };
            let low = key_package.last_resort
                || key_package.remaining < self.settings.key_package_low_watermark;
            if low && self.store.take_low_pool_notice(&device).await? {
                let item = InboxItem::KeyPackagesLow {
                    available: key_package.remaining,
                };
                let entry = self.store.push_inbox(&device, item).await?;
                self.publish_inbox(&device, &entry);
            }
            claimed.push(key_package);
        }
        if claimed.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no user {user} on this server (or none of its devices has published a key package yet)"
            )));
        }
        Ok(claimed)
    }

    pub async fn count_key_packages(&self, client: &ClientId) -> ApiResult<KeyPackageCount> {
        Ok(self.store.count_key_packages(client).await?)
    }
}
