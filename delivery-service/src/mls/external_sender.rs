//! The DS's own key as an MLS external sender.

use openmls::prelude::*;

/// The DS's own signature key as an MLS external sender (RFC 9420 §12.1.8.1):
/// with it the DS signs Remove proposals for deprovisioned clients. It never
/// opens a message: an external sender holds no group secret.
pub struct ExternalSenderKey {
    signer: openmls_basic_credential::SignatureKeyPair,
}

impl ExternalSenderKey {
    /// The BasicCredential identity the DS uses as an external sender.
    pub const IDENTITY: &'static [u8] = b"confide-ds";

    /// Loads the key from `path`, or creates it there (readable by the owner
    /// only) if the file does not exist. Replicas of one deployment share it.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write as _;
        match std::fs::read(path) {
            Ok(bytes) => {
                let signer = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} is not a Confide external sender key: {e}",
                            path.display()
                        ),
                    )
                })?;
                Ok(Self { signer })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path)?;
                file.write_all(&serde_json::to_vec(&key.signer).map_err(std::io::Error::other)?)?;
                file.sync_all()?;
                Ok(key)
            }
            Err(error) => Err(error),
        }
    }

    pub fn generate() -> Self {
        Self {
            signer: openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519)
                .expect("Ed25519 key generation does not fail"),
        }
    }

    pub fn public(&self) -> &[u8] {
        self.signer.public()
    }

    /// The entry a group's ExternalSenders extension has for this DS.
    pub fn as_external_sender(&self) -> ExternalSender {
        ExternalSender::new(
            self.signer.public().into(),
            BasicCredential::new(Self::IDENTITY.to_vec()).into(),
        )
    }

    pub(crate) fn signer(&self) -> &openmls_basic_credential::SignatureKeyPair {
        &self.signer
    }
}
