//! Whether a device is really its user's: the check every leaf this client
//! sees goes through (a claimed key package, each leaf of a Welcome's tree,
//! every Add, Update, committer's path and external joiner in a commit).
//!
//! A device is certified when its leaf carries a certificate that verifies
//! over the leaf's credential (user and device) and signature key
//! ([`certified_client`]), by the identity key pinned for its user: this
//! client's own identity key for its own user, and for another user the key
//! first seen certifying one of its devices (trust on first use, checked
//! out of band with the contact safety number). Any other device is a
//! ghost: never added, and reported if it appears in a group. A device
//! certified by another identity key than the pinned one is an identity
//! change, reported once, whose devices stay ghosts until the user accepts
//! the new key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use confide_core::ClientId;
use confide_core::certificate::{DeviceCertificate, certified_client};
use openmls::prelude::*;

use crate::error::ClientResult;
use crate::events::Event;
use crate::roster::{fingerprint, name_of};
use crate::store::StateDb;

/// A device that is not its user's, as a member is told of it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ghost {
    /// The client its credential names.
    pub client: ClientId,
    /// Its signature key's fingerprint.
    pub fingerprint: String,
    /// Why it is not certified by its user.
    pub reason: String,
}

/// What checking one leaf found.
pub(crate) struct Observed {
    pub verdict: Result<ClientId, Ghost>,
    /// An identity change this leaf revealed, reported once.
    pub changed: Option<Event>,
}

/// The certificate check of a leaf: the client it names and the identity
/// key that certified it, or why it has no valid certificate.
type Checked = Result<(ClientId, Vec<u8>), String>;

/// A leaf as far as its certificate goes: its credential's bytes, its
/// signature key and its certificate's bytes (empty if none).
type LeafKey = (Vec<u8>, Vec<u8>, Vec<u8>);

pub(crate) struct Verifier {
    user: String,
    identity_key: Vec<u8>,
    /// Certificates already checked, by credential, signature key and
    /// certificate: a group's leaves are checked once, not at every commit.
    checked: Mutex<HashMap<LeafKey, Checked>>,
}

impl Verifier {
    /// The verifier of a device of `user`, whose identity key is
    /// `identity_key`.
    pub fn new(user: &str, identity_key: &[u8]) -> Self {
        Self {
            user: user.to_string(),
            identity_key: identity_key.to_vec(),
            checked: Mutex::default(),
        }
    }

    fn certificate(&self, leaf: &LeafNode) -> Checked {
        let certificate = DeviceCertificate::of_leaf(leaf.extensions())
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let key = (
            leaf.credential().serialized_content().to_vec(),
            leaf.signature_key().as_slice().to_vec(),
            certificate,
        );
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .entry(key)
            .or_insert_with(|| {
                certified_client(leaf)
                    .map(|(client, certificate)| (client, certificate.identity_key().to_vec()))
                    .map_err(|e| {
                        format!("it has no valid certificate by its user's identity key: {e}")
                    })
            })
            .clone()
    }

    /// Checks a leaf, pinning its user's identity key at first contact and
    /// recording an identity change.
    pub fn observe(&self, db: &StateDb, leaf: &LeafNode) -> ClientResult<Observed> {
        let ghost = |reason: String| Ghost {
            client: name_of(leaf.credential()),
            fingerprint: fingerprint(leaf.signature_key().as_slice()),
            reason,
        };
        let (client, identity_key) = match self.certificate(leaf) {
            Ok(checked) => checked,
            Err(reason) => {
                return Ok(Observed {
                    verdict: Err(ghost(reason)),
                    changed: None,
                });
            }
        };
        let user = client.user();
        if user == self.user {
            let verdict = match identity_key == self.identity_key {
                true => Ok(client),
                false => Err(ghost(other_key(user, &identity_key))),
            };
            return Ok(Observed {
                verdict,
                changed: None,
            });
        }
        let Some(contact) = db.contact(user)? else {
            db.pin_contact(user, &identity_key, now())?;
            return Ok(Observed {
                verdict: Ok(client),
                changed: None,
            });
        };
        if contact.identity_key == identity_key {
            return Ok(Observed {
                verdict: Ok(client),
                changed: None,
            });
        }
        let changed = match contact.changed_to.as_deref() == Some(identity_key.as_slice()) {
            true => None,
            false => {
                db.set_contact_changed(user, &identity_key)?;
                Some(Event::IdentityKeyChanged {
                    user: user.to_string(),
                    old: fingerprint(&contact.identity_key),
                    new: fingerprint(&identity_key),
                })
            }
        };
        Ok(Observed {
            verdict: Err(ghost(format!(
                "it is certified by a new identity key of {user} ({}), not accepted yet",
                fingerprint(&identity_key)
            ))),
            changed,
        })
    }

    /// Checks a leaf that is in `group`: what a member is told of it, an
    /// identity change it revealed and [`Event::GhostDevice`] if it is not
    /// its user's.
    pub fn report(&self, db: &StateDb, group: &[u8], leaf: &LeafNode) -> ClientResult<Vec<Event>> {
        let observed = self.observe(db, leaf)?;
        let mut events: Vec<Event> = observed.changed.into_iter().collect();
        if let Err(ghost) = observed.verdict {
            tracing::warn!(ghost = %ghost.client, reason = %ghost.reason, "a ghost device in a group");
            events.push(Event::GhostDevice {
                group: group.to_vec(),
                client: ghost.client,
                fingerprint: ghost.fingerprint,
                reason: ghost.reason,
            });
        }
        Ok(events)
    }

    /// Whether a leaf is certified by the identity key pinned for its user
    /// (a user not pinned yet counts as pinned to it, as the first contact
    /// would pin it); changes nothing.
    pub fn certified(&self, db: &StateDb, leaf: &LeafNode) -> bool {
        let Ok((client, identity_key)) = self.certificate(leaf) else {
            return false;
        };
        if client.user() == self.user {
            return identity_key == self.identity_key;
        }
        match db.contact(client.user()) {
            Ok(Some(contact)) => contact.identity_key == identity_key,
            Ok(None) => true,
            Err(error) => {
                tracing::warn!(%error, "reading a pinned identity key");
                false
            }
        }
    }
}

fn other_key(user: &str, identity_key: &[u8]) -> String {
    format!(
        "it is certified by identity key {}, which is not {user}'s",
        fingerprint(identity_key)
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use confide_core::profile::{self, CIPHERSUITE};
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;

    use super::*;
    use crate::identity::UserIdentity;
    use crate::store::{self, StateLocation};

    /// The leaf of a key package of `client`, certified by `identity` (none
    /// if `None`).
    fn leaf(client: &str, identity: Option<&UserIdentity>) -> LeafNode {
        let (user, device) = client.split_once('/').expect("user/device");
        let id = ClientId::new(user, device).expect("an id");
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.identity()).into(),
            signature_key: signer.public().into(),
        };
        let builder = match identity {
            Some(identity) => {
                let certificate = identity.certify(&id, signer.public()).expect("certifying");
                profile::key_package_builder(false, &certificate)
            }
            None => KeyPackage::builder(),
        };
        builder
            .build(CIPHERSUITE, &provider, &signer, credential)
            .expect("a key package")
            .key_package()
            .leaf_node()
            .clone()
    }

    fn setup() -> (StateDb, UserIdentity, Verifier) {
        let (_provider, db) = store::open(&StateLocation::Memory).expect("a state");
        let alice = UserIdentity::generate().expect("a key");
        let verifier = Verifier::new("alice", alice.public());
        (db, alice, verifier)
    }

    #[test]
    fn a_users_first_identity_key_is_pinned_and_a_device_by_another_is_a_ghost_reported_once() {
        let (db, _alice, verifier) = setup();
        let (bob, stranger) = (
            UserIdentity::generate().unwrap(),
            UserIdentity::generate().unwrap(),
        );
        let phone = leaf("bob/phone", Some(&bob));
        let observed = verifier.observe(&db, &phone).expect("checking");
        assert_eq!(observed.verdict, Ok(ClientId::new("bob", "phone").unwrap()));
        assert!(observed.changed.is_none());
        assert!(verifier.certified(&db, &phone));

        let ghost = leaf("bob/ghost", Some(&stranger));
        let observed = verifier.observe(&db, &ghost).expect("checking");
        let refused = observed.verdict.expect_err("a ghost");
        assert_eq!(refused.client, ClientId::new("bob", "ghost").unwrap());
        assert!(
            refused.reason.contains("new identity key of bob"),
            "{}",
            refused.reason
        );
        assert_eq!(
            observed.changed,
            Some(Event::IdentityKeyChanged {
                user: "bob".into(),
                old: fingerprint(bob.public()),
                new: fingerprint(stranger.public()),
            })
        );
        assert!(!verifier.certified(&db, &ghost));
        let again = verifier.observe(&db, &ghost).expect("checking");
        assert!(
            again.verdict.is_err() && again.changed.is_none(),
            "reported once"
        );

        db.accept_contact("bob", stranger.public())
            .expect("accepting");
        assert!(verifier.certified(&db, &ghost));
        assert!(
            !verifier.certified(&db, &phone),
            "the old key no longer counts"
        );
    }

    #[test]
    fn a_device_without_a_certificate_or_of_this_user_under_another_key_is_a_ghost() {
        let (db, alice, verifier) = setup();
        let uncertified = verifier
            .observe(&db, &leaf("carol/phone", None))
            .expect("checking");
        assert!(
            uncertified
                .verdict
                .expect_err("a ghost")
                .reason
                .contains("no valid certificate")
        );
        assert_eq!(
            db.contact("carol").expect("reading"),
            None,
            "nothing pinned"
        );

        let own = leaf("alice/laptop", Some(&alice));
        assert!(verifier.observe(&db, &own).unwrap().verdict.is_ok());
        let forged = leaf("alice/evil", Some(&UserIdentity::generate().unwrap()));
        let observed = verifier.observe(&db, &forged).expect("checking");
        assert!(
            observed
                .verdict
                .expect_err("a ghost")
                .reason
                .contains("not alice's")
        );
        assert_eq!(
            db.contacts().expect("listing"),
            vec![],
            "alice is no contact of hers"
        );
    }
}
