//! Key packages: the batches this client publishes, at registration and
//! whenever the DS says its pool runs low, and the check of a key package
//! claimed for another user before it goes into a commit.

use confide_core::profile::{self, CIPHERSUITE, client_of};
use confide_proto::v1;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use super::{Client, to_bytes};
use crate::error::{ClientError, ClientResult, mls};
use crate::events::Event;

/// Key packages uploaded at registration and on each low-pool notice.
pub const KEY_PACKAGE_BATCH: usize = 20;

impl Client {
    /// Uploads `count` fresh key packages, and a new last-resort one if asked.
    /// Returns the DS's pool size.
    pub async fn publish_key_packages(
        &mut self,
        count: usize,
        with_last_resort: bool,
    ) -> ClientResult<u32> {
        let key_packages = (0..count)
            .map(|_| self.new_key_package(false).map(Into::into))
            .collect::<ClientResult<Vec<_>>>()?;
        let last_resort = if with_last_resort {
            self.new_key_package(true)?
        } else {
            Vec::new()
        };
        let request = self.api.request(v1::PublishKeyPackagesRequest {
            key_packages,
            last_resort_key_package: last_resort.into(),
        });
        Ok(self
            .api
            .key_packages()
            .publish_key_packages(request)
            .await?
            .into_inner()
            .available)
    }

    fn new_key_package(&self, last_resort: bool) -> ClientResult<Vec<u8>> {
        let bundle = profile::key_package_builder(last_resort, &self.certificate)
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        to_bytes(MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// Answers the DS's notice that this client's pool runs low.
    pub(super) async fn replenish_key_packages(&mut self) -> ClientResult<()> {
        let uploaded = KEY_PACKAGE_BATCH;
        self.publish_key_packages(uploaded, false).await?;
        self.emit(Event::KeyPackagesReplenished { uploaded })
    }

    /// Checks a claimed key package is valid and really names a device of `user`,
    /// so a DS cannot slip another credential into the group under that name.
    /// Whether the device is certified by `user` is checked next, by
    /// [`Client::verify_leaf`] in `add_users`, which refuses it if not.
    pub(super) fn verify_claimed(
        &self,
        claimed: &v1::ClaimedKeyPackage,
        user: &str,
    ) -> ClientResult<KeyPackage> {
        let message = MlsMessageIn::tls_deserialize_exact(&claimed.key_package).map_err(mls)?;
        let MlsMessageBodyIn::KeyPackage(key_package) = message.extract() else {
            return Err(ClientError::Invalid(
                "the DS returned something other than a key package".into(),
            ));
        };
        let key_package = key_package
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?;
        let owner = client_of(key_package.leaf_node().credential()).map_err(mls)?;
        if owner.user() != user {
            return Err(ClientError::Invalid(format!(
                "the DS returned a key package of {owner} for user {user}"
            )));
        }
        Ok(key_package)
    }
}
