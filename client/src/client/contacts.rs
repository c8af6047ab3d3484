//! Contacts: the identity key pinned for each user whose devices this
//! client has seen (`crate::verify`), the safety number two users compare
//! to know they hold each other's real key, and accepting a key after
//! comparing it.

use confide_core::fingerprint::contact_safety_number;

use super::Client;
use crate::error::{ClientError, ClientResult};
use crate::store::Contact;
use crate::verify::Ghost;

impl Client {
    /// Every user whose identity key this client pinned, by name.
    pub fn contacts(&self) -> ClientResult<Vec<Contact>> {
        self.db.contacts()
    }

    /// The identity key pinned for `user`, if this client has seen one of
    /// its devices.
    pub fn contact(&self, user: &str) -> ClientResult<Option<Contact>> {
        self.db.contact(user)
    }

    /// The safety number between this client's user and `user` holding
    /// `identity_key` ([`contact_safety_number`]): the same on both sides
    /// exactly when each holds the other's real identity key.
    pub fn safety_number(&self, user: &str, identity_key: &[u8]) -> String {
        contact_safety_number(self.id.user(), self.identity_key(), user, identity_key)
    }

    /// Marks `user`'s identity key verified, after the safety numbers were
    /// compared: the changed key if one was seen (its devices are certified
    /// from now on, and the old key's are not), the pinned one otherwise.
    pub fn accept_identity_key(&mut self, user: &str) -> ClientResult<Contact> {
        let contact = self.db.contact(user)?.ok_or_else(|| unknown(user))?;
        let key = contact.changed_to.unwrap_or(contact.identity_key);
        self.db.accept_contact(user, &key)?;
        self.db.contact(user)?.ok_or_else(|| unknown(user))
    }
}

impl Client {
    /// Checks a leaf this client is about to trust (a claimed key package,
    /// an external joiner): the client it names if certified by its user's
    /// pinned identity key, the ghost otherwise; an identity change it
    /// reveals is reported ([`crate::Event::IdentityKeyChanged`]).
    pub(crate) fn verify_leaf(
        &mut self,
        leaf: &openmls::prelude::LeafNode,
    ) -> ClientResult<Result<confide_core::ClientId, Ghost>> {
        let observed = self.verifier.observe(&self.db, leaf)?;
        if let Some(changed) = observed.changed {
            self.emit(changed)?;
        }
        Ok(observed.verdict)
    }
}

fn unknown(user: &str) -> ClientError {
    ClientError::Invalid(format!(
        "no identity key is pinned for {user}: this device has not seen a device of {user} yet"
    ))
}
