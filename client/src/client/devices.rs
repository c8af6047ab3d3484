//! A user's devices as the DS lists them, each certificate and revocation
//! checked here, and revoking one of this user's devices.

use confide_core::ClientId;
use confide_core::certificate::{DeviceCertificate, Revocation};
use confide_proto::v1;

use super::Client;
use super::commit::{Change, CommitSummary};
use crate::error::{ClientError, ClientResult};
use crate::events::GroupId;
use crate::roster;

/// What this client concluded about a listed device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Its certificate verifies, by the user's identity key.
    Certified,
    /// The user's identity key revoked it.
    Revoked,
    /// Listed by the DS without a valid certificate: a ghost.
    Uncertified(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedDevice {
    pub client: ClientId,
    pub fingerprint: String,
    pub status: DeviceStatus,
}

/// What revoking a device did in one group of this device.
#[derive(Debug)]
pub struct GroupRemoval {
    pub group: GroupId,
    pub outcome: Result<CommitSummary, ClientError>,
}

fn client_of(client: Option<v1::ClientId>) -> ClientResult<ClientId> {
    client
        .ok_or_else(|| ClientError::Invalid("the DS listed a device without a name".into()))?
        .try_into()
        .map_err(|e| ClientError::Invalid(format!("the DS listed a bad device name: {e}")))
}

impl Client {
    /// The devices of `user`, certified, revoked or not, each checked
    /// against the user's identity key as this client knows it.
    pub async fn devices(&self, user: &str) -> ClientResult<Vec<ListedDevice>> {
        let request = self.api.request(v1::ListDevicesRequest {
            user: user.to_string(),
        });
        let listed = self.api.devices().list_devices(request).await?.into_inner();
        // The own user's key is this client's; another user's the one
        // pinned at first contact, or failing that the one the DS lists.
        let identity_key = match user == self.id.user() {
            true => self.identity_key().to_vec(),
            false => match self.db.contact(user)? {
                Some(contact) => contact.identity_key,
                None => listed.identity_key.to_vec(),
            },
        };
        let mut revoked = Vec::new();
        let mut devices = Vec::new();
        for entry in listed.revocations {
            let client = client_of(entry.client)?;
            let Ok(revocation) = Revocation::from_bytes(client.clone(), &entry.revocation) else {
                continue;
            };
            if revocation.verify(&identity_key).is_err() {
                continue;
            }
            if user == self.id.user() {
                self.db
                    .save_revoked(&client.to_string(), &revocation.signature_key)?;
            }
            devices.push(ListedDevice {
                client,
                fingerprint: roster::fingerprint(&revocation.signature_key),
                status: DeviceStatus::Revoked,
            });
            revoked.push(revocation.signature_key);
        }
        for device in listed.devices {
            let client = client_of(device.client)?;
            if revoked.contains(&device.signature_public_key.to_vec()) {
                continue;
            }
            let status =
                match DeviceCertificate::from_bytes(&device.device_certificate).and_then(|c| {
                    c.verify(&client, &device.signature_public_key)?;
                    Ok(c)
                }) {
                    Ok(c) if c.identity_key() == identity_key.as_slice() => DeviceStatus::Certified,
                    Ok(_) => DeviceStatus::Uncertified("certified by another identity key".into()),
                    Err(e) => DeviceStatus::Uncertified(e.to_string()),
                };
            devices.push(ListedDevice {
                client,
                fingerprint: roster::fingerprint(&device.signature_public_key),
                status,
            });
        }
        devices.sort_by(|a, b| a.client.cmp(&b.client));
        Ok(devices)
    }

    /// Revokes another device of this user: signs a revocation with the
    /// identity key, has the DS deprovision the device with it (the DS then
    /// refuses it for good and serves the revocation to every client), keeps
    /// it in this state file so its key packages are never added again, and
    /// removes it from every group this device is in.
    pub async fn remove_device(&mut self, client: &ClientId) -> ClientResult<Vec<GroupRemoval>> {
        if client.user() != self.id.user() {
            return Err(ClientError::Invalid(format!(
                "{client} is not a device of {}",
                self.id.user()
            )));
        }
        if client == &self.id {
            return Err(ClientError::Invalid(
                "this is the device itself; revoke it from another of your devices".into(),
            ));
        }
        let request = self.api.request(v1::ListDevicesRequest {
            user: client.user().to_string(),
        });
        let listed = self.api.devices().list_devices(request).await?.into_inner();
        let signature_key = listed
            .devices
            .into_iter()
            .find(|d| {
                d.client
                    .clone()
                    .and_then(|c| ClientId::try_from(c).ok())
                    .as_ref()
                    == Some(client)
            })
            .map(|d| d.signature_public_key.to_vec())
            .ok_or_else(|| ClientError::Invalid(format!("{client} is not a registered device")))?;
        let revocation = self.identity.revoke(client, &signature_key)?;
        self.db.save_revoked(&client.to_string(), &signature_key)?;
        let request = self.api.request(v1::RemoveClientRequest {
            client: Some(client.into()),
            revocation: revocation.to_bytes().into(),
        });
        self.api.auth().remove_client(request).await?;
        let mut groups = self.groups();
        groups.sort();
        let mut removals = Vec::new();
        for group in groups {
            if !self.members(&group)?.contains(client) {
                continue;
            }
            let outcome = self
                .commit(&group, Change::RemoveClients(vec![client.clone()]))
                .await;
            removals.push(GroupRemoval { group, outcome });
        }
        Ok(removals)
    }
}
