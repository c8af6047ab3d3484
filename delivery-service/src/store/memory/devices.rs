//! Users and their devices in memory: registration under a user's identity
//! key, deprovisioning with a revocation, and the linking mailbox.

use std::time::SystemTime;

use bytes::Bytes;

use super::state::{ClientState, LinkState, State};
use crate::domain::ClientId;
use crate::store::{
    ClientRecord, LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, NewDevice, Registration,
    StoreError, StoreResult, UserDevices,
};

impl State {
    pub(super) fn register(&mut self, device: &NewDevice) -> Registration {
        let id = &device.client.id;
        if self.clients.get(id).is_some_and(|c| c.removed) {
            return Registration::Removed;
        }
        match self.users.get(id.user()) {
            Some(identity_key) if *identity_key != device.identity_key => {
                return Registration::OtherIdentity;
            }
            Some(_) => {}
            // The first device makes the user's identity. (Every client here
            // registered with a certificate, so an unknown user has none.)
            None => {
                self.users
                    .insert(id.user().to_owned(), device.identity_key.clone());
            }
        }
        let record = &device.client;
        let Some(client) = self.clients.get_mut(id) else {
            self.clients.insert(
                id.clone(),
                ClientState::new(record.signature_key.clone(), record.certificate.clone()),
            );
            return Registration::Created;
        };
        client.certificate = record.certificate.clone();
        if client.signature_key == record.signature_key {
            return Registration::AlreadyRegistered;
        }
        client.signature_key = record.signature_key.clone();
        client.clear_key_packages();
        self.sign_out(id);
        Registration::Rekeyed
    }

    pub(super) fn remove(&mut self, id: &ClientId, revocation: Option<&[u8]>) -> StoreResult<bool> {
        let client = self
            .clients
            .get_mut(id)
            .ok_or(StoreError::NotFound("client"))?;
        let newly = !client.removed;
        client.removed = true;
        client.clear_key_packages();
        if client.revocation.is_none() {
            client.revocation = revocation.map(<[u8]>::to_vec);
        }
        self.sign_out(id);
        Ok(newly)
    }

    pub(super) fn user_devices(&self, user: &str) -> UserDevices {
        let mut devices = UserDevices {
            identity_key: self.users.get(user).cloned(),
            ..UserDevices::default()
        };
        for (id, client) in self.clients.iter().filter(|(id, _)| id.user() == user) {
            if let Some(revocation) = &client.revocation {
                devices.revocations.push((id.clone(), revocation.clone()));
            }
            if !client.removed {
                devices.devices.push(ClientRecord {
                    id: id.clone(),
                    signature_key: client.signature_key.clone(),
                    certificate: client.certificate.clone(),
                });
            }
        }
        devices
    }

    /// The link with this id, unless it expired by `now`.
    fn link(&self, link_id: &[u8], now: SystemTime) -> Option<&LinkState> {
        self.links.get(link_id).filter(|link| link.expires_at > now)
    }

    pub(super) fn post_link_offer(
        &mut self,
        offer: &LinkOffer,
        max_pending: usize,
        now: SystemTime,
    ) -> LinkPosted {
        if !self.users.contains_key(&offer.user) {
            return LinkPosted::UnknownUser;
        }
        if let Some(link) = self.link(&offer.link_id, now) {
            return if link.user == offer.user && link.sealed_offer == offer.sealed_offer {
                LinkPosted::Posted {
                    expires_at: link.expires_at,
                }
            } else {
                LinkPosted::Taken
            };
        }
        let pending = self
            .links
            .values()
            .filter(|link| link.user == offer.user && link.expires_at > now)
            .count();
        if pending >= max_pending {
            return LinkPosted::TooMany;
        }
        self.links.insert(
            offer.link_id.clone(),
            LinkState {
                user: offer.user.clone(),
                sealed_offer: offer.sealed_offer.clone(),
                sealed_answer: None,
                expires_at: offer.expires_at,
            },
        );
        LinkPosted::Posted {
            expires_at: offer.expires_at,
        }
    }

    pub(super) fn link_offer(&self, link_id: &[u8], now: SystemTime) -> Option<(String, Bytes)> {
        self.link(link_id, now)
            .map(|link| (link.user.clone(), link.sealed_offer.clone()))
    }

    pub(super) fn post_link_answer(
        &mut self,
        link_id: &[u8],
        user: &str,
        sealed_answer: &Bytes,
        now: SystemTime,
    ) -> LinkAnswered {
        let Some(link) = self
            .links
            .get_mut(link_id)
            .filter(|link| link.expires_at > now && link.user == user)
        else {
            return LinkAnswered::NotFound;
        };
        match &link.sealed_answer {
            None => {
                link.sealed_answer = Some(sealed_answer.clone());
                LinkAnswered::Posted
            }
            Some(answer) if answer == sealed_answer => LinkAnswered::Posted,
            Some(_) => LinkAnswered::AlreadyAnswered,
        }
    }

    pub(super) fn take_link_answer(&mut self, link_id: &[u8], now: SystemTime) -> LinkAnswer {
        let Some(link) = self.link(link_id, now) else {
            return LinkAnswer::NotFound;
        };
        if link.sealed_answer.is_none() {
            return LinkAnswer::Pending;
        }
        let link = self.links.remove(link_id).expect("found above");
        LinkAnswer::Answered(link.sealed_answer.expect("checked above"))
    }
}
