//! Registration and challenge-response authentication.
//!
//! A device registers with a certificate by its user's identity key; the
//! first device of a user brings that key, so nobody can register a device
//! under a user whose identity did not certify it.
//!
//! A client proves possession of the Ed25519 key it registered by signing a
//! fresh single-use challenge, and gets a random session token. Only a SHA-256
//! of the token is stored. Every other RPC is attributed to a client by its
//! token alone, never by a field the client fills in.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use confide_core::auth::{CHALLENGE_LEN, SIGNATURE_KEY_LEN, challenge_signing_payload};
use confide_core::certificate::DeviceCertificate;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto;
use openmls_traits::types::SignatureScheme;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::ClientId;
use crate::error::{ApiError, ApiResult};
use crate::hub::{Ending, SessionHash};
use crate::state::Ds;
use crate::store::{ClientRecord, NewDevice, Registration};

pub struct Session {
    pub token: String,
    pub expires_at: SystemTime,
}

/// An authenticated caller: its client and the session it presented.
pub struct Caller {
    pub client: ClientId,
    /// The SHA-256 of the session token.
    pub session: SessionHash,
    pub expires_at: SystemTime,
}

/// What the DS checks about a request before it reads the request itself,
/// as the gRPC adapter found it: the size of the request message, who sent
/// it from where, and the tokens its metadata carries.
pub struct RequestMeta<'a> {
    /// The encoded size of the request message.
    pub size: usize,
    /// The peer's address, which unauthenticated calls are rate limited by.
    pub peer: Option<IpAddr>,
    /// The `authorization: Bearer <token>` metadata.
    pub session_token: SessionToken<'a>,
    /// The admin token metadata as presented, compared byte for byte.
    pub admin_token: Option<&'a [u8]>,
}

/// The session token a request carries in `authorization: Bearer <token>`.
pub enum SessionToken<'a> {
    /// No `authorization` metadata.
    Missing,
    /// `authorization` that is not `Bearer <token>` in visible ASCII.
    Malformed,
    Bearer(&'a str),
}

pub struct Challenge {
    pub challenge: Vec<u8>,
    pub expires_at: SystemTime,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The device certificate a registration carries, checked: it must vouch
/// for this client and signature key. Whose identity key it names is the
/// store's to decide, under the user's lock.
fn verified_certificate(
    client: &ClientId,
    signature_key: &[u8],
    bytes: &[u8],
) -> ApiResult<DeviceCertificate> {
    if bytes.is_empty() {
        return Err(ApiError::InvalidArgument(
            "missing field `device_certificate`: every device needs a certificate by its \
             user's identity key"
                .into(),
        ));
    }
    let certificate = DeviceCertificate::from_bytes(bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("device_certificate: {e}")))?;
    certificate.verify(client, signature_key).map_err(|e| {
        ApiError::InvalidArgument(format!("device_certificate does not certify {client}: {e}"))
    })?;
    Ok(certificate)
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Ds {
    /// Registers `client` with its signature key and its certificate by
    /// its user's identity key. The first device of a user makes the user's
    /// identity; every later one needs a certificate by it (linked by an
    /// existing device). The same client again with the same key is a
    /// no-op; with a new key certified by the user's identity key it is a
    /// device restored after losing its state, which is re-keyed: its
    /// sessions and key packages end, its groups and inbox stay.
    pub async fn register_client(
        &self,
        client: ClientId,
        signature_key: Vec<u8>,
        device_certificate: &[u8],
        registration_token: &str,
    ) -> ApiResult<()> {
        if let Some(expected) = &self.settings.registration_token
            && !constant_time_eq(expected.as_bytes(), registration_token.as_bytes())
        {
            return Err(ApiError::PermissionDenied(
                "registration requires a valid registration token".into(),
            ));
        }
        if signature_key.len() != SIGNATURE_KEY_LEN {
            return Err(ApiError::InvalidArgument(
                "signature_public_key must be a 32-byte Ed25519 public key".into(),
            ));
        }
        let certificate = verified_certificate(&client, &signature_key, device_certificate)?;
        let device = NewDevice {
            client: ClientRecord {
                id: client.clone(),
                signature_key,
                certificate: Some(device_certificate.to_vec()),
            },
            identity_key: certificate.identity_key().to_vec(),
        };
        match self.store.register_client(&device).await? {
            Registration::Created | Registration::AlreadyRegistered => Ok(()),
            Registration::Rekeyed => {
                self.end_streams(Ending::ClientRekeyed {
                    client: client.clone(),
                });
                tracing::info!(%client, "client re-keyed");
                Ok(())
            }
            Registration::KeyMismatch => Err(ApiError::AlreadyExists(
                "this client is registered with another signature key".into(),
            )),
            Registration::Removed => Err(ApiError::PermissionDenied(
                "this client was removed; register the device under a new name".into(),
            )),
            Registration::OtherIdentity => Err(ApiError::PermissionDenied(format!(
                "user {} already has devices: link this device from one of them (`confide link`)",
                client.user()
            ))),
        }
    }

    /// A fresh challenge for `client`. An unknown (or removed) client gets
    /// one too, random and never stored, so this answer reveals nothing about
    /// which clients exist: answering it fails later like a bad signature.
    pub async fn create_challenge(&self, client: &ClientId) -> ApiResult<Challenge> {
        let mut challenge = vec![0u8; CHALLENGE_LEN];
        rand::rng().fill_bytes(&mut challenge);
        let expires_at = SystemTime::now() + Duration::from_secs(self.settings.challenge_ttl_secs);
        if self.store.client(client).await?.is_some() {
            self.store
                .put_challenge(client, &challenge, expires_at)
                .await?;
        }
        Ok(Challenge {
            challenge,
            expires_at,
        })
    }

    pub async fn authenticate(
        &self,
        client: &ClientId,
        challenge: &[u8],
        signature: &[u8],
    ) -> ApiResult<Session> {
        const REFUSED: &str =
            "authentication failed: unknown or expired challenge, or bad signature";
        let record = self
            .store
            .client(client)
            .await?
            .ok_or(ApiError::Unauthenticated(REFUSED))?;
        if !self
            .store
            .take_challenge(client, challenge, SystemTime::now())
            .await?
        {
            return Err(ApiError::Unauthenticated(REFUSED));
        }
        RustCrypto::default()
            .verify_signature(
                SignatureScheme::ED25519,
                &challenge_signing_payload(challenge),
                &record.signature_key,
                signature,
            )
            .map_err(|_| ApiError::Unauthenticated(REFUSED))?;
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let expires_at = SystemTime::now() + Duration::from_secs(self.settings.session_ttl_secs);
        self.store
            .put_session(&token_hash(&token), client, expires_at)
            .await?;
        Ok(Session { token, expires_at })
    }

    /// Refuses a request larger than `limits.max_request_bytes`. tonic's own
    /// decode limit sits above it and answers only absurd frames.
    fn check_request_size(&self, size: usize) -> ApiResult<()> {
        let max = self.settings.limits.max_request_bytes;
        if size > max {
            return Err(ApiError::TooLarge(format!(
                "the request is {size} bytes, more than the {max} allowed"
            )));
        }
        Ok(())
    }

    /// Admits a registration or authentication call: size, and the rate per
    /// peer address.
    pub fn admit_unauthenticated(&self, request: &RequestMeta<'_>) -> ApiResult<()> {
        self.check_request_size(request.size)?;
        self.limits.check_unauthenticated(request.peer)
    }

    /// The client a request's session token belongs to, once the request
    /// passes the size limit and the client's rate limits.
    pub async fn authenticated_client(&self, request: &RequestMeta<'_>) -> ApiResult<ClientId> {
        Ok(self.authenticated_caller(request).await?.client)
    }

    /// Like [`Ds::authenticated_client`], with the session the request
    /// carries (a live stream ends when that session does).
    pub async fn authenticated_caller(&self, request: &RequestMeta<'_>) -> ApiResult<Caller> {
        self.check_request_size(request.size)?;
        let session = token_hash(request.session_token.token()?);
        let now = SystemTime::now();
        let record =
            match self.hub.sessions().get(&session, now) {
                Ok(record) => record,
                Err(generation) => {
                    let record = self.store.session(&session, now).await?.ok_or(
                        ApiError::Unauthenticated("invalid or expired session token"),
                    )?;
                    self.hub
                        .sessions()
                        .insert(session, record.clone(), generation);
                    record
                }
            };
        self.limits.check_request(&record.client, request.size)?;
        Ok(Caller {
            client: record.client,
            session,
            expires_at: record.expires_at,
        })
    }

    /// Ends the session the request carries, and the live streams opened
    /// with it on every replica.
    pub async fn revoke_session(&self, request: &RequestMeta<'_>) -> ApiResult<ClientId> {
        let Caller {
            client, session, ..
        } = self.authenticated_caller(request).await?;
        self.store.revoke_session(&session).await?;
        self.end_streams(Ending::SessionRevoked {
            client: client.clone(),
            session,
        });
        Ok(client)
    }

    /// Whether the request carries the configured admin token (compared in
    /// constant time). A wrong or unconfigured one is refused outright.
    pub fn is_admin(&self, request: &RequestMeta<'_>) -> ApiResult<bool> {
        let Some(presented) = request.admin_token else {
            return Ok(false);
        };
        match &self.settings.admin_token {
            Some(expected) if constant_time_eq(expected.as_bytes(), presented) => Ok(true),
            _ => Err(ApiError::PermissionDenied("invalid admin token".into())),
        }
    }
}

impl SessionToken<'_> {
    /// The token, or why the request carries none.
    fn token(&self) -> ApiResult<&str> {
        match self {
            SessionToken::Bearer(token) => Ok(token),
            SessionToken::Missing => Err(ApiError::Unauthenticated("missing session token")),
            SessionToken::Malformed => Err(ApiError::Unauthenticated(
                "authorization must be `Bearer <session token>`",
            )),
        }
    }
}
