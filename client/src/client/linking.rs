//! Linking, the new device's side: it makes its signature key, posts an
//! offer sealed under a fresh code, shows the code and the authentication
//! string, and waits for an existing device of its user to answer with the
//! user's identity key and a certificate for it. Only then does it register:
//! the DS refuses a device of an existing user without a certificate.

use std::time::Duration;

use confide_core::ClientId;
use confide_core::certificate::DeviceCertificate;
use confide_core::link::{self, LinkAnswer, LinkCode, LinkKeys, LinkOffer};
use confide_core::profile::CIPHERSUITE;
use confide_proto::v1;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::OpenMlsProvider;
use openmls_traits::types::HpkeKeyPair;
use tokio::time::Instant;

use super::Client;
use super::session::{Device, NewState, lock};
use crate::api::Api;
use crate::error::{ClientError, ClientResult, mls};
use crate::identity::UserIdentity;
use crate::lock::StateLock;
use crate::store::{self, Provider, StateDb, StateLocation, StoredIdentity};

/// How often the new device asks whether its link was answered.
const ANSWER_POLL: Duration = Duration::from_millis(500);

/// A new device waiting to be approved: its state file holds its signature
/// key, but no client yet. Show [`PendingLink::code`] (or the URI) and
/// [`PendingLink::sas`], then [`PendingLink::finish`].
pub struct PendingLink {
    api: Api,
    id: ClientId,
    location: StateLocation,
    /// Whether the state file was made for this link (deleted if it fails).
    created: bool,
    provider: Provider,
    db: StateDb,
    lock: Option<StateLock>,
    signer: SignatureKeyPair,
    code: LinkCode,
    keys: LinkKeys,
    offer: LinkOffer,
    /// The one-time key the answer is sealed to; never stored.
    answer_key: HpkeKeyPair,
    expires_at_unix_ms: u64,
}

impl Client {
    /// Starts linking a new device `id` at `location`: makes its signature
    /// key and posts its sealed offer under a fresh code. Nothing is
    /// registered until [`PendingLink::finish`] has the answer.
    pub async fn start_link(
        api: Api,
        id: ClientId,
        location: &StateLocation,
    ) -> ClientResult<PendingLink> {
        let lock = lock(location)?;
        let (provider, db, created) = store::create(location)?;
        let cleanup = |provider: Provider, db: StateDb| {
            drop((provider, db));
            if let (StateLocation::File(path), true) = (location, created) {
                store::remove(path);
            }
        };
        if db.identity()?.is_some() {
            return Err(ClientError::Invalid(
                "this state file already holds a client; link into a new one".into(),
            ));
        }
        let prepared = async {
            let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
            signer.store(provider.storage()).map_err(mls)?;
            let answer_key = link::answer_key_pair()?;
            let offer = LinkOffer {
                client: id.clone(),
                signature_key: signer.to_public_vec(),
                hpke_key: answer_key.public.clone(),
            };
            let code = LinkCode::generate()?;
            let keys = code.keys()?;
            let posted = api
                .devices()
                .post_link_offer(v1::PostLinkOfferRequest {
                    user: id.user().to_string(),
                    link_id: keys.link_id.clone().into(),
                    sealed_offer: keys.seal_offer(&offer)?.into(),
                })
                .await?
                .into_inner();
            Ok::<_, ClientError>((signer, answer_key, offer, code, keys, posted))
        }
        .await;
        let (signer, answer_key, offer, code, keys, posted) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                cleanup(provider, db);
                return Err(error);
            }
        };
        Ok(PendingLink {
            api,
            id,
            location: location.clone(),
            created,
            provider,
            db,
            lock,
            signer,
            code,
            keys,
            offer,
            answer_key,
            expires_at_unix_ms: posted.expires_at_unix_ms,
        })
    }
}

impl PendingLink {
    /// The code to type on the approving device: `ABCD-EFGH-JKLM`.
    pub fn code(&self) -> String {
        self.code.display()
    }

    /// The code in one line: `confide://link/<user>/<CODE>`.
    pub fn uri(&self) -> String {
        link::uri(self.id.user(), &self.code)
    }

    /// The 6 digits the approving device must show too.
    pub fn sas(&self) -> ClientResult<String> {
        Ok(self.keys.sas(&self.offer)?)
    }

    /// When the DS forgets the offer, in Unix milliseconds.
    pub fn expires_at_unix_ms(&self) -> u64 {
        self.expires_at_unix_ms
    }

    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// Waits up to `timeout` for the answer, checks the certificate is for
    /// this device and key and by the identity key handed over, stores
    /// both, registers, authenticates and publishes key packages. On any
    /// failure a state file made for the link is deleted again.
    pub async fn finish(self, registration_token: &str, timeout: Duration) -> ClientResult<Client> {
        let Self {
            api,
            id,
            location,
            created,
            provider,
            db,
            lock,
            signer,
            keys,
            answer_key,
            ..
        } = self;
        let registered = async {
            let answer = wait_for_answer(&api, &keys, &answer_key, timeout).await?;
            let identity = UserIdentity::from_secret_bytes(&answer.identity_secret)?;
            let certificate = DeviceCertificate::from_bytes(&answer.certificate).map_err(mls)?;
            certificate
                .verify(&id, signer.public())
                .map_err(|e| ClientError::Invalid(format!("the answer's certificate: {e}")))?;
            if certificate.identity_key() != identity.public() {
                return Err(ClientError::Invalid(
                    "the answer's certificate is not by the identity key it hands over".into(),
                ));
            }
            identity.store(&provider)?;
            db.save_identity(&StoredIdentity {
                user: id.user().to_string(),
                device: id.device().to_string(),
                signature_public_key: signer.to_public_vec(),
                identity_public_key: identity.public().to_vec(),
                certificate: certificate.to_bytes(),
            })?;
            api.auth()
                .register_client(v1::RegisterClientRequest {
                    client: Some((&id).into()),
                    signature_public_key: signer.to_public_vec().into(),
                    registration_token: registration_token.to_string(),
                    device_certificate: certificate.to_bytes().into(),
                })
                .await?;
            Ok::<_, ClientError>((identity, certificate))
        }
        .await;
        let state = NewState {
            location,
            created,
            provider,
            db,
            lock,
        };
        let registered = registered.map(|(identity, certificate)| Device {
            signer,
            identity,
            certificate,
        });
        Client::registered(api, id, state, registered).await
    }
}

/// Polls the DS for the sealed answer until `timeout`, and opens it.
async fn wait_for_answer(
    api: &Api,
    keys: &LinkKeys,
    answer_key: &HpkeKeyPair,
    timeout: Duration,
) -> ClientResult<LinkAnswer> {
    let deadline = Instant::now() + timeout;
    loop {
        let answer = api
            .devices()
            .take_link_answer(v1::TakeLinkAnswerRequest {
                link_id: keys.link_id.clone().into(),
            })
            .await?
            .into_inner();
        if answer.answered {
            return Ok(LinkAnswer::open(
                &answer.sealed_answer,
                answer_key.private.as_ref(),
                &keys.link_id,
            )?);
        }
        if Instant::now() + ANSWER_POLL > deadline {
            return Err(ClientError::LinkTimedOut);
        }
        tokio::time::sleep(ANSWER_POLL).await;
    }
}
