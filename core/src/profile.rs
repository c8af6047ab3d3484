//! The one MLS profile of Confide groups, used by the delivery service, the
//! client library, the tools and the tests alike.
//!
//! - One ciphersuite ([`CIPHERSUITE`]).
//! - Handshakes (proposals, commits) travel as PublicMessage so the delivery
//!   service can validate them with openmls `PublicGroup` before any member
//!   sees them; application messages are always PrivateMessage
//!   ([`WIRE_FORMAT_POLICY`]).
//! - Neither Welcomes nor GroupInfos carry the ratchet tree: the delivery
//!   service serves it beside them, which keeps adding a member to a large
//!   group a small upload.
//! - Credentials are basic ones naming `user/device` ([`client_of`]); every
//!   leaf also carries its device's certificate
//!   ([`crate::certificate`]), and lists that extension among its
//!   capabilities.
//! - Key packages live [`KEY_PACKAGE_LIFETIME`]; the delivery service
//!   accepts those within [`LifetimeRules`].

use std::time::Duration;

use openmls::prelude::*;

use crate::certificate::{DeviceCertificate, leaf_capabilities};
use crate::ids::{ClientId, InvalidClientId};

/// The one ciphersuite Confide groups and key packages use.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Handshakes in the clear (signed, so the delivery service can validate
/// them), application messages encrypted.
pub const WIRE_FORMAT_POLICY: WireFormatPolicy = PURE_PLAINTEXT_WIRE_FORMAT_POLICY;

/// Past epochs whose secrets a member keeps, so messages sent just before a
/// commit still decrypt after it.
pub const MAX_PAST_EPOCHS: usize = 8;

/// How far out of order an application message may arrive (generations)
/// and how far ahead of the last one it may be.
fn sender_ratchet() -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(64, 10_000)
}

/// The configuration of a new group, whose creator's leaf carries
/// `certificate`. With the delivery service's external sender listed, the
/// delivery service can propose removing a deprovisioned device (never
/// adding anyone: members commit only its Remove proposals).
pub fn group_create_config(
    external_sender: Option<ExternalSender>,
    certificate: &DeviceCertificate,
) -> MlsGroupCreateConfig {
    let extensions = match external_sender {
        Some(sender) => Extensions::single(Extension::ExternalSenders(vec![sender]))
            .expect("ExternalSenders is a group context extension"),
        None => Extensions::empty(),
    };
    MlsGroupCreateConfig::builder()
        .with_group_context_extensions(extensions)
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .capabilities(leaf_capabilities(false))
        .with_leaf_node_extensions(certificate.leaf_extensions())
        .expect("the capabilities list the certificate extension")
        .build()
}

/// The leaf of a device joining by external commit: its certificate, and
/// the capabilities that allow it.
pub fn external_join_leaf(certificate: &DeviceCertificate) -> LeafNodeParameters {
    LeafNodeParameters::builder()
        .with_capabilities(leaf_capabilities(false))
        .with_extensions(certificate.leaf_extensions())
        .build()
}

/// The configuration of a group joined from a Welcome.
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .sender_ratchet_configuration(sender_ratchet())
        .build()
}

/// How long a key package a client makes is valid: openmls dates it from an
/// hour ago (for clocks slightly behind) to this long from now.
pub const KEY_PACKAGE_LIFETIME: Duration = Duration::from_secs(84 * 24 * 3600);

/// A builder for this profile's key packages, whose leaf carries the
/// device's `certificate`. A last-resort key package (RFC 9420 §16.8, handed
/// out again when its owner's pool is empty) carries the `last_resort`
/// extension, which must then be among the leaf's capabilities; no other key
/// package carries it.
pub fn key_package_builder(
    last_resort: bool,
    certificate: &DeviceCertificate,
) -> KeyPackageBuilder {
    let builder = KeyPackage::builder()
        .key_package_lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME.as_secs()))
        .leaf_node_capabilities(leaf_capabilities(last_resort))
        .leaf_node_extensions(certificate.leaf_extensions());
    if last_resort {
        builder.mark_as_last_resort()
    } else {
        builder
    }
}

/// The key package lifetimes the delivery service accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifetimeRules {
    /// Longest `not_after - not_before`.
    pub max_lifetime: Duration,
    /// How far in the future `not_before` may be: clients date key packages
    /// "now" by their own clock. An expired key package is refused however
    /// recently it expired.
    pub clock_skew: Duration,
}

impl Default for LifetimeRules {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(90 * 24 * 3600),
            clock_skew: Duration::from_secs(300),
        }
    }
}

/// Why a key package's lifetime is refused (times in seconds since the Unix
/// epoch).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifetimeViolation {
    #[error("its lifetime is longer than the {max} seconds allowed")]
    TooLong { max: u64 },
    #[error("it is not valid until {not_before} (now {now}, {skew} s of skew allowed)")]
    NotYetValid {
        not_before: u64,
        now: u64,
        skew: u64,
    },
    #[error("it expired at {not_after} (now {now})")]
    Expired { not_after: u64, now: u64 },
}

impl LifetimeRules {
    /// Refuses a lifetime longer than allowed, one that starts further in
    /// the future than the clock skew allows, or one that has ended.
    pub fn check(&self, lifetime: &Lifetime, now: u64) -> Result<(), LifetimeViolation> {
        let (not_before, not_after) = (lifetime.not_before(), lifetime.not_after());
        let max = self.max_lifetime.as_secs();
        if not_after.saturating_sub(not_before) > max {
            return Err(LifetimeViolation::TooLong { max });
        }
        let skew = self.clock_skew.as_secs();
        if not_before > now.saturating_add(skew) {
            return Err(LifetimeViolation::NotYetValid {
                not_before,
                now,
                skew,
            });
        }
        if not_after <= now {
            return Err(LifetimeViolation::Expired { not_after, now });
        }
        Ok(())
    }
}

/// Why a credential names no client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidCredential {
    #[error("only basic credentials are accepted")]
    NotBasic,
    #[error(transparent)]
    BadIdentity(#[from] InvalidClientId),
}

/// The client a credential names; credentials must be basic `user/device` ones.
pub fn client_of(credential: &Credential) -> Result<ClientId, InvalidCredential> {
    let basic =
        BasicCredential::try_from(credential.clone()).map_err(|_| InvalidCredential::NotBasic)?;
    Ok(ClientId::from_identity(basic.identity())?)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs()
    }

    #[test]
    fn the_key_package_lifetime_a_client_uses_is_one_the_ds_accepts() {
        let lifetime = Lifetime::new(KEY_PACKAGE_LIFETIME.as_secs());
        assert_eq!(LifetimeRules::default().check(&lifetime, now()), Ok(()));
    }

    #[test]
    fn lifetimes_too_long_too_early_or_ended_are_refused_and_a_little_skew_is_tolerated() {
        let rules = LifetimeRules::default();
        let now = now();
        let day = 24 * 3600;
        let too_long = Lifetime::init(now - 60, now + 91 * day);
        assert!(matches!(
            rules.check(&too_long, now),
            Err(LifetimeViolation::TooLong { .. })
        ));
        let early = Lifetime::init(now + 301, now + day);
        assert!(matches!(
            rules.check(&early, now),
            Err(LifetimeViolation::NotYetValid { .. })
        ));
        let ended = Lifetime::init(now - day, now);
        assert!(matches!(
            rules.check(&ended, now),
            Err(LifetimeViolation::Expired { .. })
        ));
        assert_eq!(
            rules.check(&Lifetime::init(now + 299, now + day), now),
            Ok(())
        );
    }

    #[test]
    fn a_credential_names_its_client_only_if_it_is_a_basic_user_slash_device_one() {
        let alice: Credential = BasicCredential::new(b"alice/phone".to_vec()).into();
        assert_eq!(
            client_of(&alice),
            Ok(ClientId::new("alice", "phone").unwrap())
        );
        let nameless: Credential = BasicCredential::new(b"alice".to_vec()).into();
        assert_eq!(
            client_of(&nameless),
            Err(InvalidCredential::BadIdentity(InvalidClientId::BadIdentity))
        );
    }

    #[test]
    fn a_last_resort_key_package_lists_the_extension_among_its_capabilities() {
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer =
            openmls_basic_credential::SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
                .expect("a key");
        let alice = ClientId::new("alice", "phone").unwrap();
        let certificate =
            DeviceCertificate::issue(&signer, signer.public(), &alice, signer.public()).unwrap();
        let capabilities = |last_resort| {
            let credential = CredentialWithKey {
                credential: BasicCredential::new(b"alice/phone".to_vec()).into(),
                signature_key: signer.public().into(),
            };
            key_package_builder(last_resort, &certificate)
                .build(CIPHERSUITE, &provider, &signer, credential)
                .expect("a key package")
                .key_package()
                .clone()
        };
        let last_resort = capabilities(true);
        assert!(last_resort.last_resort());
        assert!(
            last_resort
                .leaf_node()
                .capabilities()
                .extensions()
                .contains(&ExtensionType::LastResort)
        );
        let regular = capabilities(false);
        assert!(!regular.last_resort());
        for key_package in [&last_resort, &regular] {
            let leaf = key_package.leaf_node();
            assert_eq!(
                crate::certificate::certified_client(leaf).map(|(client, _)| client),
                Ok(alice.clone())
            );
        }
    }
}
