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

/// A device's backup, what `confide identity export` writes: the user's
/// identity key and the device's own signature key. Restored from it
/// ([`crate::Client::restore`]), the device keeps its key, so the external
/// commit that rejoins each group removes its old leaf itself (openmls
/// removes, inline, only a leaf with the joiner's own key). A backup of
/// the identity key alone restores the device under a new key.
pub struct Backup {
    identity: UserIdentity,
    device: Option<(ClientId, SignatureKeyPair)>,
}

impl Backup {
    pub(crate) fn new(identity: UserIdentity, client: ClientId, signer: SignatureKeyPair) -> Self {
        Self {
            identity,
            device: Some((client, signer)),
        }
    }

    /// Secret bytes: whoever holds them can act as the device and certify
    /// devices of its user.
    pub fn to_secret_bytes(&self) -> ClientResult<Vec<u8>> {
        let mut backup = serde_json::Map::new();
        backup.insert(
            "identity".into(),
            serde_json::to_value(&self.identity.0).map_err(mls)?,
        );
        if let Some((client, signer)) = &self.device {
            backup.insert("client".into(), client.to_string().into());
            backup.insert(
                "signature_key".into(),
                serde_json::to_value(signer).map_err(mls)?,
            );
        }
        serde_json::to_vec(&backup).map_err(mls)
    }

    /// Reads a backup, or an identity key alone
    /// ([`UserIdentity::to_secret_bytes`]).
    pub fn from_secret_bytes(bytes: &[u8]) -> ClientResult<Self> {
        let invalid = |e: String| ClientError::Invalid(format!("not a backup: {e}"));
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let Some(identity) = value.get("identity") else {
            return Ok(Self {
                identity: UserIdentity::from_secret_bytes(bytes)?,
                device: None,
            });
        };
        let identity = UserIdentity(
            serde_json::from_value(identity.clone()).map_err(|e| invalid(e.to_string()))?,
        );
        let device = match (value.get("client"), value.get("signature_key")) {
            (Some(client), Some(signer)) => {
                let client = client
                    .as_str()
                    .ok_or_else(|| invalid("the client is not text".into()))?;
                let client = ClientId::from_identity(client.as_bytes())
                    .map_err(|e| invalid(e.to_string()))?;
                let signer: SignatureKeyPair =
                    serde_json::from_value(signer.clone()).map_err(|e| invalid(e.to_string()))?;
                Some((client, signer))
            }
            _ => None,
        };
        Ok(Self { identity, device })
    }

    pub fn identity(&self) -> &UserIdentity {
        &self.identity
    }

    /// The device's identity key and, if the backup is of `client`, its
    /// signature key.
    pub(crate) fn into_parts(self, client: &ClientId) -> (UserIdentity, Option<SignatureKeyPair>) {
        let signer = self
            .device
            .filter(|(backed_up, _)| backed_up == client)
            .map(|(_, signer)| signer);
        (self.identity, signer)
    }
}
