//! Linking, the approving device's side: it opens the new device's offer
//! with the code the person typed, shows the authentication string, and
//! only once the person confirmed it matches certifies the new device and
//! hands it the user's identity key. Then it adds the new device to every
//! group it is in, one commit per group (see ARCHITECTURE.md for why the
//! approving device adds it rather than the new device joining by external
//! commit).

use std::time::Duration;

use confide_core::ClientId;
use confide_core::link::{self, LinkAnswer, LinkOffer};
use confide_proto::v1;
use tokio::time::Instant;

use super::{Added, Client};
use crate::error::{ClientError, ClientResult};
use crate::events::GroupId;
use crate::roster;

/// How often the approving device looks for the new device's registration
/// and key packages.
const REGISTRATION_POLL: Duration = Duration::from_millis(200);

/// A new device's offer, opened with the right code: who it says it is,
/// and the authentication string to compare with the one it shows.
pub struct LinkRequest {
    pub client: ClientId,
    /// The fingerprint of the signature key to be certified.
    pub fingerprint: String,
    sas: String,
    offer: LinkOffer,
    link_id: Vec<u8>,
}

impl LinkRequest {
    /// The 6 digits the new device must show as well.
    pub fn sas(&self) -> &str {
        &self.sas
    }
}

/// What linking did in one group of the approving device.
#[derive(Debug)]
pub struct GroupLinked {
    pub group: GroupId,
    /// The commit that added the new device, `None` if it was in the group
    /// already, or why it could not be added.
    pub outcome: Result<Option<Added>, ClientError>,
}

impl Client {
    /// Takes and opens the offer the code (or its `confide://link/` URI)
    /// names. A wrong code finds no offer, or one that does not open; either
    /// way nothing is linked.
    pub async fn open_link(&self, code_or_uri: &str) -> ClientResult<LinkRequest> {
        let (user, code) = link::parse_code_or_uri(code_or_uri)?;
        if let Some(user) = user
            && user != self.id.user()
        {
            return Err(ClientError::Invalid(format!(
                "that link is for user {user}; this device is {}",
                self.id
            )));
        }
        let keys = code.keys()?;
        let request = self.api.request(v1::TakeLinkOfferRequest {
            link_id: keys.link_id.clone().into(),
        });
        let sealed = match self.api.devices().take_link_offer(request).await {
            Ok(response) => response.into_inner().sealed_offer,
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Err(ClientError::Invalid(
                    "no device is waiting to be linked with this code: is it typed right, or did it expire?"
                        .into(),
                ));
            }
            Err(status) => return Err(status.into()),
        };
        let offer = keys.open_offer(&sealed)?;
        if offer.client.user() != self.id.user() {
            return Err(ClientError::Invalid(format!(
                "the offer is for {}, not a device of {}",
                offer.client,
                self.id.user()
            )));
        }
        Ok(LinkRequest {
            client: offer.client.clone(),
            fingerprint: roster::fingerprint(&offer.signature_key),
            sas: keys.sas(&offer)?,
            link_id: keys.link_id,
            offer,
        })
    }

    /// Certifies the new device and hands it the identity key, if `entered`
    /// (the digits the person read on the new device) is the request's
    /// authentication string; otherwise [`ClientError::SasMismatch`] and
    /// nothing is sent.
    pub async fn approve_link(&self, request: &LinkRequest, entered: &str) -> ClientResult<()> {
        let entered: String = entered.chars().filter(|c| !c.is_whitespace()).collect();
        if entered != request.sas {
            return Err(ClientError::SasMismatch {
                computed: request.sas.clone(),
                entered,
            });
        }
        let certificate = self
            .identity
            .certify(&request.offer.client, &request.offer.signature_key)?;
        let answer = LinkAnswer {
            identity_secret: self.identity.to_secret_bytes()?,
            certificate: certificate.to_bytes(),
        };
        let request = self.api.request(v1::PostLinkAnswerRequest {
            link_id: request.link_id.clone().into(),
            sealed_answer: answer.seal(&request.offer, &request.link_id)?.into(),
        });
        self.api.devices().post_link_answer(request).await?;
        Ok(())
    }

    /// Waits (up to `timeout`) until the linked device `client` has
    /// registered and published key packages, and adds it to every group
    /// this device is in, one commit per group; reports each group.
    pub async fn add_linked_device(
        &mut self,
        client: &ClientId,
        timeout: Duration,
    ) -> ClientResult<Vec<GroupLinked>> {
        let deadline = Instant::now() + timeout;
        while !self.is_registered(client).await? {
            if Instant::now() + REGISTRATION_POLL > deadline {
                return Err(ClientError::Invalid(format!(
                    "{client} did not register in time"
                )));
            }
            tokio::time::sleep(REGISTRATION_POLL).await;
        }
        let mut groups = self.groups();
        groups.sort();
        let mut linked = Vec::new();
        for group in groups {
            let outcome = self.add_own_device(&group, client, deadline).await;
            linked.push(GroupLinked { group, outcome });
        }
        Ok(linked)
    }

    async fn is_registered(&self, client: &ClientId) -> ClientResult<bool> {
        let request = self.api.request(v1::ListDevicesRequest {
            user: client.user().to_string(),
        });
        let listed = self.api.devices().list_devices(request).await?.into_inner();
        Ok(listed.devices.iter().any(|d| {
            d.client
                .clone()
                .and_then(|c| ClientId::try_from(c).ok())
                .as_ref()
                == Some(client)
        }))
    }

    /// Adds this user's devices missing from the group; until `deadline`,
    /// again while `client` has no key package to claim yet (it registers
    /// before it publishes them).
    async fn add_own_device(
        &mut self,
        group: &[u8],
        client: &ClientId,
        deadline: Instant,
    ) -> ClientResult<Option<Added>> {
        let user = self.id.user().to_string();
        loop {
            if self.members(group)?.contains(client) {
                return Ok(None);
            }
            match self.add_users(group, &[&user]).await {
                Ok(added) if added.clients.contains(client) => return Ok(Some(added)),
                Ok(_) | Err(ClientError::NothingToAdd(_)) => {}
                Err(error) => return Err(error),
            }
            if Instant::now() + REGISTRATION_POLL > deadline {
                return Err(ClientError::Invalid(format!(
                    "{client} published no key package in time"
                )));
            }
            tokio::time::sleep(REGISTRATION_POLL).await;
        }
    }
}
