//! Key packages as uploaded: parsed and validated, with the lifetime rules
//! of the profile and the clock skew clients are allowed.

use std::time::{SystemTime, UNIX_EPOCH};

use confide_core::certificate::certified_client;
use openmls::prelude::*;
use openmls::treesync::errors::LifetimeError;
use openmls_rust_crypto::RustCrypto;

use super::{CIPHERSUITE, LifetimeRules, MlsError, client_of, invalid, parse_message};
use crate::domain::ClientId;

/// A key package that passed validation.
pub struct ValidKeyPackage {
    pub key_package_ref: Vec<u8>,
    pub client: ClientId,
    pub signature_key: Vec<u8>,
    /// The identity key of the device certificate its leaf carries, which
    /// verifies for its client and signature key.
    pub identity_key: Vec<u8>,
    /// Whether it carries the `last_resort` extension (RFC 9420 §16.8), which
    /// tells its claimers it may be handed out more than once.
    pub last_resort: bool,
    /// The end of its lifetime.
    pub not_after: SystemTime,
}

/// Parses and validates a key package: signatures, lifetime (within
/// `rules`), ciphersuite, the credential it names and the device certificate
/// its leaf carries. The caller checks the credential is the uploader's and
/// the certificate is by the uploader's user's identity key.
pub fn validate_key_package(
    bytes: &[u8],
    rules: &LifetimeRules,
) -> Result<ValidKeyPackage, MlsError> {
    let MlsMessageBodyIn::KeyPackage(key_package) = parse_message(bytes, "key package")? else {
        return Err(MlsError::WrongType {
            what: "key package",
            expected: "an MlsMessage carrying a KeyPackage",
        });
    };
    let crypto = RustCrypto::default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| MlsError::CorruptState)?
        .as_secs();
    let key_package = match key_package
        .clone()
        .validate(&crypto, ProtocolVersion::Mls10)
    {
        Ok(key_package) => key_package,
        // openmls checks the lifetime last, against its own clock and with no
        // tolerance: every signature and every other check passed, and
        // `not_before` is within the skew allowed (checked below).
        Err(KeyPackageVerifyError::LifetimeError(LifetimeError::NotValidYet {
            not_before,
            ..
        })) if not_before <= now.saturating_add(rules.clock_skew.as_secs()) => {
            key_package.into_unchecked()
        }
        Err(e) => return Err(invalid("key package", e)),
    };
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(invalid(
            "key package",
            format!("ciphersuite must be {CIPHERSUITE:?}"),
        ));
    }
    rules
        .check(key_package.life_time(), now)
        .map_err(|e| invalid("key package", e))?;
    let leaf = key_package.leaf_node();
    let (_, certificate) = certified_client(leaf)
        .map_err(|e| invalid("key package", format!("its leaf's device certificate: {e}")))?;
    Ok(ValidKeyPackage {
        key_package_ref: key_package
            .hash_ref(&crypto)
            .map_err(|e| invalid("key package", e))?
            .as_slice()
            .to_vec(),
        client: client_of(leaf.credential())?,
        signature_key: leaf.signature_key().as_slice().to_vec(),
        identity_key: certificate.identity_key().to_vec(),
        last_resort: key_package.last_resort(),
        not_after: UNIX_EPOCH + std::time::Duration::from_secs(key_package.life_time().not_after()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openmls::prelude::tls_codec::Serialize as _;

    use super::*;

    /// A key package for `alice/phone`, valid from `not_before` for a day,
    /// with `certificate` in its leaf if given.
    fn key_package_with(not_before: u64, certified: bool) -> Vec<u8> {
        use confide_core::certificate::{DeviceCertificate, leaf_capabilities};
        use openmls_basic_credential::SignatureKeyPair;
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        let identity = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        let alice = ClientId::new("alice", "phone").unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(alice.identity()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let mut builder = KeyPackage::builder()
            .key_package_lifetime(Lifetime::init(not_before, not_before + 86_400))
            .leaf_node_capabilities(leaf_capabilities(false));
        if certified {
            let certificate =
                DeviceCertificate::issue(&identity, identity.public(), &alice, signer.public())
                    .unwrap();
            builder = builder.leaf_node_extensions(certificate.leaf_extensions());
        }
        let bundle = builder
            .build(CIPHERSUITE, &provider, &signer, credential)
            .unwrap();
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .unwrap()
    }

    fn key_package_from(not_before: u64) -> Vec<u8> {
        key_package_with(not_before, true)
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The skew tolerance relies on openmls checking the lifetime last: a
    /// key package dated slightly ahead is accepted only with its
    /// signatures intact.
    #[test]
    fn a_key_package_dated_slightly_ahead_is_accepted_only_if_its_signature_holds() {
        let rules = LifetimeRules::default();
        let ahead = key_package_from(unix_now() + 60);
        assert!(validate_key_package(&ahead, &rules).is_ok());
        let mut forged = ahead.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            validate_key_package(&forged, &rules),
            Err(MlsError::Invalid { .. })
        ));
        let no_skew = LifetimeRules {
            clock_skew: Duration::ZERO,
            ..rules
        };
        assert!(validate_key_package(&ahead, &no_skew).is_err());
    }

    #[test]
    fn a_key_package_without_a_device_certificate_is_refused_naming_it() {
        let uncertified = key_package_with(unix_now() - 60, false);
        let Err(MlsError::Invalid { what, reason }) =
            validate_key_package(&uncertified, &LifetimeRules::default())
        else {
            panic!("an uncertified key package was accepted");
        };
        assert_eq!(what, "key package");
        assert!(reason.contains("device certificate"), "{reason}");
    }
}
