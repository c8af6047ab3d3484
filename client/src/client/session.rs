//! Identity and sessions: registering a new device, opening one from its
//! state file, and proving possession of its signature key for a session
//! token.

use std::collections::{BTreeSet, HashMap};

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
        client.authenticate().await?;
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
            _lock: lock,
        })
    }

    /// Switches to another connection (a restarted or different DS replica)
    /// and authenticates on it.
    pub async fn reconnect(&mut self, api: Api) -> ClientResult<()> {
        self.api = api;
        self.authenticate().await
    }

    /// Proves possession of the signature key and takes a fresh session token.
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
            .await?
            .into_inner();
        self.api.set_token(&session.session_token)?;
        self.stream = None;
        Ok(())
    }
}
