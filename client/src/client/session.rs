//! Identity and sessions: registering a new device, opening one from its
//! state file, and proving possession of its signature key for a session
//! token.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confide_core::ClientId;
use confide_core::certificate::DeviceCertificate;
use confide_core::profile::CIPHERSUITE;
use confide_proto::v1;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;

use super::commit::COMMIT_RESEND_AFTER;
use super::{Client, KEY_PACKAGE_BATCH};
use crate::api::Api;
use crate::error::{ClientError, ClientResult, mls};
use crate::identity::UserIdentity;
use crate::lock::StateLock;
use crate::store::{self, Provider, StateDb, StateLocation, StoredIdentity};
use crate::verify::Verifier;

/// Takes the lock on a state file, so that no other client, in this
/// process or another, holds it while this one lives.
pub(super) fn lock(location: &StateLocation) -> ClientResult<Option<StateLock>> {
    match location {
        StateLocation::File(path) => StateLock::acquire(path).map(Some),
        StateLocation::Memory => Ok(None),
    }
}

/// A state made for a device being registered, until the DS has registered
/// it.
pub(super) struct NewState {
    pub(super) location: StateLocation,
    /// Whether the registration made the state file (and so may delete it).
    pub(super) created: bool,
    pub(super) provider: Provider,
    pub(super) db: StateDb,
    pub(super) lock: Option<StateLock>,
}

/// A device's keys: its MLS signature key, its user's identity key and the
/// certificate by which the one vouches for the other.
pub(super) struct Device {
    pub(super) signer: SignatureKeyPair,
    pub(super) identity: UserIdentity,
    pub(super) certificate: DeviceCertificate,
}

impl Client {
    /// Registers the first device of a new user: makes the user's identity
    /// key and a device certificate by it; see [`Client::register_with`].
    /// The DS refuses it for a user that already has devices: a device of
    /// an existing user is linked by one of them.
    pub async fn register(
        api: Api,
        id: ClientId,
        location: &StateLocation,
        registration_token: &str,
    ) -> ClientResult<Self> {
        Self::register_with(
            api,
            id,
            location,
            registration_token,
            UserIdentity::generate()?,
        )
        .await
    }

    /// Creates a new device at `location` (a state file made private),
    /// certified by the user's `identity` key, registers it with the DS,
    /// authenticates and uploads key packages (and a last-resort one). A
    /// state file it made is deleted again if the DS did not register the
    /// device: it would hold a client the DS does not know, and block
    /// registering again at that path.
    pub async fn register_with(
        api: Api,
        id: ClientId,
        location: &StateLocation,
        registration_token: &str,
        identity: UserIdentity,
    ) -> ClientResult<Self> {
        Self::register_device(api, id, location, registration_token, identity, None).await
    }

    /// [`Client::register_with`], with the device's signature key `signer`
    /// (restored from a backup) or a new one.
    pub(super) async fn register_device(
        api: Api,
        id: ClientId,
        location: &StateLocation,
        registration_token: &str,
        identity: UserIdentity,
        signer: Option<SignatureKeyPair>,
    ) -> ClientResult<Self> {
        let lock = lock(location)?;
        let (provider, db, created) = store::create(location)?;
        let registered = match Self::new_device(&id, &identity, signer, &provider, &db) {
            Ok((signer, certificate)) => api
                .auth()
                .register_client(v1::RegisterClientRequest {
                    client: Some((&id).into()),
                    signature_public_key: signer.to_public_vec().into(),
                    registration_token: registration_token.to_string(),
                    device_certificate: certificate.to_bytes().into(),
                })
                .await
                .map(|_| (signer, certificate))
                .map_err(ClientError::from),
            Err(error) => Err(error),
        };
        let state = NewState {
            location: location.clone(),
            created,
            provider,
            db,
            lock,
        };
        let registered = registered.map(|(signer, certificate)| Device {
            signer,
            identity,
            certificate,
        });
        Self::registered(api, id, state, registered).await
    }

    /// Finishes a registration. A refused one deletes the state file it
    /// made: it would hold a client the DS does not know, and block
    /// registering again at that path. An accepted one becomes the client,
    /// which signs in and uploads key packages (and a last-resort one).
    pub(super) async fn registered(
        api: Api,
        id: ClientId,
        state: NewState,
        registered: ClientResult<Device>,
    ) -> ClientResult<Self> {
        let NewState {
            location,
            created,
            provider,
            db,
            lock,
        } = state;
        let device = match registered {
            Ok(device) => device,
            Err(error) => {
                drop((provider, db));
                if let (StateLocation::File(path), true) = (&location, created) {
                    store::remove(path);
                }
                return Err(error);
            }
        };
        let mut client = Self::assemble(api, id, device, provider, db, lock)?;
        client.authenticate().await?;
        client.publish_key_packages(KEY_PACKAGE_BATCH, true).await?;
        Ok(client)
    }

    /// Makes (or takes, restored) and stores a signature key for `id` in a
    /// state without a client, with the user's identity key and its certificate of the key.
    fn new_device(
        id: &ClientId,
        identity: &UserIdentity,
        signer: Option<SignatureKeyPair>,
        provider: &Provider,
        db: &StateDb,
    ) -> ClientResult<(SignatureKeyPair, DeviceCertificate)> {
        if db.identity()?.is_some() {
            return Err(ClientError::Invalid(
                "this state file already holds a registered device: use it as `--state` of the other commands, or give a new path to register another device".into(),
            ));
        }
        let signer = match signer {
            Some(signer) => signer,
            None => SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?,
        };
        let certificate = identity.certify(id, signer.public())?;
        signer.store(provider.storage()).map_err(mls)?;
        identity.store(provider)?;
        db.save_identity(&StoredIdentity {
            user: id.user().to_string(),
            device: id.device().to_string(),
            signature_public_key: signer.to_public_vec(),
            identity_public_key: identity.public().to_vec(),
            certificate: certificate.to_bytes(),
        })?;
        Ok((signer, certificate))
    }

    /// Restores a client from its state and authenticates; every group it
    /// belonged to resumes where it left off. Fails at once with
    /// [`ClientError::StateLocked`] if another client holds the state file.
    pub async fn open(api: Api, location: &StateLocation) -> ClientResult<Self> {
        let mut client = Self::open_offline(api, location)?;
        client.authenticate().await?;
        Ok(client)
    }

    /// Restores a client from its state without signing in, for an
    /// application that starts while the DS cannot be reached: what the
    /// state holds (groups, history) is there at once, and the first call
    /// that needs the DS fails until [`Client::reconnect`] signs in.
    pub fn open_offline(api: Api, location: &StateLocation) -> ClientResult<Self> {
        if let StateLocation::File(path) = location
            && !path.is_file()
        {
            // Before the lock, which would leave a lock file behind.
            return Err(ClientError::NoStateFile(path.clone()));
        }
        let lock = lock(location)?;
        let (provider, db) = store::open(location).inspect_err(|_| {
            // Not a state file: no lock file of ours stays beside it.
            if let Some(lock) = &lock {
                lock.remove_if_made();
            }
        })?;
        let identity = db
            .identity()?
            .ok_or_else(|| ClientError::Invalid("no client in this state file".into()))?;
        let id = ClientId::new(identity.user, identity.device)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let signer = SignatureKeyPair::read(
            provider.storage(),
            &identity.signature_public_key,
            CIPHERSUITE.signature_algorithm(),
        )
        .ok_or_else(|| ClientError::Invalid("the signature key is missing".into()))?;
        let device = Device {
            signer,
            identity: UserIdentity::read(&provider, &identity.identity_public_key)?,
            certificate: DeviceCertificate::from_bytes(&identity.certificate).map_err(mls)?,
        };
        let mut client = Self::assemble(api, id, device, provider, db, lock)?;
        for group_id in client.db.groups()? {
            let mut group = MlsGroup::load(
                client.provider.storage(),
                &openmls::group::GroupId::from_slice(&group_id),
            )
            .map_err(mls)?
            .ok_or_else(|| ClientError::Invalid("a group's state is missing".into()))?;
            if group.pending_commit().is_some() && client.db.commit_in_doubt(&group_id)?.is_none() {
                // Staged but stopped before it was recorded, so never sent.
                group
                    .clear_pending_commit(client.provider.storage())
                    .map_err(mls)?;
            }
            client.groups.insert(group_id, group);
        }
        Ok(client)
    }

    pub(super) fn assemble(
        api: Api,
        id: ClientId,
        device: Device,
        provider: Provider,
        db: StateDb,
        lock: Option<StateLock>,
    ) -> ClientResult<Self> {
        let events = db.events()?.into();
        let Device {
            signer,
            identity,
            certificate,
        } = device;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.identity()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let verifier = Verifier::new(id.user(), identity.public());
        Ok(Self {
            id,
            verifier,
            signer,
            identity,
            certificate,
            credential,
            provider,
            db,
            api,
            groups: HashMap::new(),
            events,
            stream: None,
            pending_removals: BTreeSet::new(),
            undecryptable_run: HashMap::new(),
            commit_resend_after: COMMIT_RESEND_AFTER,
            session_renew_at: None,
            _lock: lock,
        })
    }

    /// Switches to another connection (a restarted or different DS replica)
    /// and authenticates on it.
    pub async fn reconnect(&mut self, api: Api) -> ClientResult<()> {
        self.api = api;
        self.authenticate().await
    }

    /// When a long-running caller should renew the session
    /// ([`Client::authenticate`]), a margin before the DS ends it; `None`
    /// if the DS named no expiry. A monotonic instant, which stands still
    /// while the computer sleeps: a session that expired meanwhile fails
    /// the next call with [`ClientError::needs_new_session`].
    pub fn session_renew_at(&self) -> Option<Instant> {
        self.session_renew_at
    }

    /// Proves possession of the signature key and takes a fresh session
    /// token. The live stream is dropped with the old session; the next
    /// [`Client::receive`] opens it again, and the DS replays what came
    /// after this client's acknowledged cursors (entries already processed
    /// are skipped by their sequence numbers), so renewing loses and
    /// repeats nothing. A DS that no longer knows this device fails it with
    /// [`ClientError::SignInRefused`].
    pub async fn authenticate(&mut self) -> ClientResult<()> {
        let challenge = self
            .api
            .auth()
            .create_challenge(v1::CreateChallengeRequest {
                client: Some((&self.id).into()),
            })
            .await?
            .into_inner()
            .challenge;
        let signature = self
            .signer
            .sign(&confide_proto::challenge_signing_payload(&challenge))
            .map_err(|e| ClientError::Mls(format!("signing the challenge: {e:?}")))?;
        let session = self
            .api
            .auth()
            .authenticate(v1::AuthenticateRequest {
                client: Some((&self.id).into()),
                challenge,
                signature: signature.into(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated => {
                    ClientError::SignInRefused(status.message().to_owned())
                }
                _ => status.into(),
            })?
            .into_inner();
        self.api.set_token(&session.session_token)?;
        self.stream = None;
        self.session_renew_at = renew_after(session.expires_at_unix_ms, SystemTime::now())
            .map(|after| Instant::now() + after);
        Ok(())
    }
}

/// The shortest margin before a session's expiry at which it is renewed:
/// room for a slow sign-in and a clock a little ahead of the DS's.
const MIN_RENEW_MARGIN: Duration = Duration::from_secs(30);

/// How long after `now` a session that expires at `expires_at_unix_ms`
/// (0: never said) is renewed: a margin before its expiry of a tenth of
/// what is left of it or [`MIN_RENEW_MARGIN`], whichever is longer, but
/// never before half of it, so a short session is not renewed in a loop.
/// None if it never expires, or if this computer's clock says it is over
/// already (a clock far ahead of the DS's): renewing would loop, and the
/// session's end shows as [`ClientError::needs_new_session`] instead.
fn renew_after(expires_at_unix_ms: u64, now: SystemTime) -> Option<Duration> {
    if expires_at_unix_ms == 0 {
        return None;
    }
    let expires_at = UNIX_EPOCH + Duration::from_millis(expires_at_unix_ms);
    let lifetime = expires_at
        .duration_since(now)
        .ok()
        .filter(|l| !l.is_zero())?;
    let margin = (lifetime / 10).max(MIN_RENEW_MARGIN).min(lifetime / 2);
    Some(lifetime - margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renewal(lifetime: Duration) -> Option<Duration> {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let expires_at = (now + lifetime).duration_since(UNIX_EPOCH).unwrap();
        renew_after(expires_at.as_millis() as u64, now)
    }

    #[test]
    fn a_session_is_renewed_a_tenth_of_its_lifetime_or_30_seconds_before_it_expires() {
        let hour = Duration::from_secs(3600);
        assert_eq!(renewal(hour), Some(hour - Duration::from_secs(360)));
        let two_minutes = Duration::from_secs(120);
        assert_eq!(renewal(two_minutes), Some(Duration::from_secs(90)));
    }

    #[test]
    fn a_short_session_is_renewed_halfway_never_at_once() {
        assert_eq!(
            renewal(Duration::from_secs(3)),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn a_session_without_an_expiry_or_over_by_this_clock_is_not_renewed_ahead() {
        let now = SystemTime::now();
        assert_eq!(renew_after(0, now), None);
        let past = now.duration_since(UNIX_EPOCH).unwrap() - Duration::from_secs(5);
        assert_eq!(renew_after(past.as_millis() as u64, now), None);
        assert_eq!(renewal(Duration::ZERO), None);
    }
}
