//! The user's identity key: made by the user's first device, handed to each
//! device linked to it, and kept by each in its state file. It certifies the
//! user's devices ([`confide_core::certificate`]) and revokes them.

use confide_core::ClientId;
use confide_core::certificate::{DeviceCertificate, Revocation};
use confide_core::profile::CIPHERSUITE;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider;

use crate::error::{ClientError, ClientResult, mls};

pub struct UserIdentity(SignatureKeyPair);

impl UserIdentity {
    /// A new identity key, for the first device of a new user.
    pub fn generate() -> ClientResult<Self> {
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .map(Self)
            .map_err(mls)
    }

    /// The identity key as it travels to a newly linked device, or into a
    /// backup: secret bytes, to be sealed or kept private.
    pub fn to_secret_bytes(&self) -> ClientResult<Vec<u8>> {
        serde_json::to_vec(&self.0).map_err(mls)
    }

    pub fn from_secret_bytes(bytes: &[u8]) -> ClientResult<Self> {
        let keys: SignatureKeyPair = serde_json::from_slice(bytes)
            .map_err(|e| ClientError::Invalid(format!("not an identity key: {e}")))?;
        Ok(Self(keys))
    }

    /// The identity public key, which every device of the user carries a
    /// certificate by.
    pub fn public(&self) -> &[u8] {
        self.0.public()
    }

    pub fn certify(
        &self,
        client: &ClientId,
        signature_key: &[u8],
    ) -> ClientResult<DeviceCertificate> {
        DeviceCertificate::issue(&self.0, self.public(), client, signature_key).map_err(mls)
    }

    pub fn revoke(&self, client: &ClientId, signature_key: &[u8]) -> ClientResult<Revocation> {
        Revocation::issue(&self.0, client, signature_key).map_err(mls)
    }

    pub(crate) fn store(&self, provider: &impl OpenMlsProvider) -> ClientResult<()> {
        self.0.store(provider.storage()).map_err(mls)
    }

    pub(crate) fn read(provider: &impl OpenMlsProvider, public: &[u8]) -> ClientResult<Self> {
        SignatureKeyPair::read(
            provider.storage(),
            public,
            CIPHERSUITE.signature_algorithm(),
        )
        .map(Self)
        .ok_or_else(|| ClientError::Invalid("the identity key is missing".into()))
    }
}
