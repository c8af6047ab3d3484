//! Clients, authentication challenges and sessions.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::{client_id, unknown_client};
use crate::domain::ClientId;
use crate::store::{
    ClientRecord, DedupKey, RegisteredClient, SessionRecord, StoreError, StoreResult,
};

/// Inserts a new client with its key and certificate.
pub(super) async fn insert(db: &impl GenericClient, client: &ClientRecord) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO clients (user_name, device_name, signature_key, device_certificate)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &client.id.user(),
            &client.id.device(),
            &client.signature_key,
            &client.certificate,
        ],
    )
    .await?;
    Ok(())
}

/// Stores the certificate a client registered again with.
pub(super) async fn set_certificate(
    db: &impl GenericClient,
    client: &ClientRecord,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE clients SET device_certificate = $3
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    db.execute(
        &stmt,
        &[&client.id.user(), &client.id.device(), &client.certificate],
    )
    .await?;
    Ok(())
}

/// Binds a client to a new key and certificate (a device restored after it
/// lost its state): what the old key signed in to and published goes.
pub(super) async fn rekey(db: &impl GenericClient, client: &ClientRecord) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE clients SET signature_key = $3, device_certificate = $4
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &client.id.user(),
            &client.id.device(),
            &client.signature_key,
            &client.certificate,
        ],
    )
    .await?;
    sign_out_and_forget_key_packages(db, &client.id).await
}

/// The client as registered (its key, certificate and whether it was
/// removed), its row locked until the transaction ends.
pub(super) async fn registered_key_for_update(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Option<(Vec<u8>, bool)>> {
    let stmt = db
        .prepare_cached(
            "SELECT signature_key, removed_at IS NOT NULL FROM clients
             WHERE user_name = $1 AND device_name = $2 FOR UPDATE",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?;
    Ok(row
        .map(|row| Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()?)
}

/// The client as registered, removed or not.
pub(super) async fn registered(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Option<RegisteredClient>> {
    let stmt = db
        .prepare_cached(
            "SELECT signature_key, device_certificate, removed_at IS NOT NULL FROM clients
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let Some(row) = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(RegisteredClient {
        record: ClientRecord {
            id: client.clone(),
            signature_key: row.try_get(0)?,
            certificate: row.try_get(1)?,
        },
        removed: row.try_get(2)?,
    }))
}

/// Marks the client removed, keeps its revocation and deletes its
/// sessions, challenges and key packages. True if it was active; false if
/// it was removed before.
pub(super) async fn remove(
    db: &impl GenericClient,
    client: &ClientId,
    revocation: Option<&[u8]>,
) -> StoreResult<bool> {
    let mark = db
        .prepare_cached(
            "UPDATE clients SET removed_at = now()
             WHERE user_name = $1 AND device_name = $2 AND removed_at IS NULL",
        )
        .await?;
    let newly = db
        .execute(&mark, &[&client.user(), &client.device()])
        .await?
        == 1;
    if !newly && registered(db, client).await?.is_none() {
        return Err(StoreError::NotFound("client"));
    }
    if let Some(revocation) = revocation {
        super::devices::put_revocation(db, client, revocation).await?;
    }
    sign_out_and_forget_key_packages(db, client).await?;
    Ok(newly)
}

/// Deletes the client's sessions, challenges and key packages.
async fn sign_out_and_forget_key_packages(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<()> {
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&client.user(), &client.device()];
    for table in [
        "sessions",
        "challenges",
        "key_packages",
        "last_resort_key_packages",
    ] {
        let stmt = db
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE user_name = $1 AND device_name = $2"
            ))
            .await?;
        db.execute(&stmt, &args).await?;
    }
    Ok(())
}

/// Ends one session.
pub(super) async fn revoke_session(
    db: &impl GenericClient,
    token_hash: &DedupKey,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached("DELETE FROM sessions WHERE token_hash = $1")
        .await?;
    db.execute(&stmt, &[&token_hash.as_slice()]).await?;
    Ok(())
}

pub(super) async fn devices(db: &impl GenericClient, user: &str) -> StoreResult<Vec<ClientId>> {
    let stmt = db
        .prepare_cached(
            "SELECT device_name FROM clients
             WHERE user_name = $1 AND removed_at IS NULL ORDER BY device_name",
        )
        .await?;
    let rows = db.query(&stmt, &[&user]).await?;
    rows.iter()
        .map(|row| client_id(user.to_owned(), row.try_get(0)?))
        .collect()
}

pub(super) async fn put_challenge(
    db: &impl GenericClient,
    client: &ClientId,
    challenge: &[u8],
    expires_at: SystemTime,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO challenges (user_name, device_name, challenge, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_name, device_name, challenge)
             DO UPDATE SET expires_at = EXCLUDED.expires_at",
        )
        .await?;
    db.execute(
        &stmt,
        &[&client.user(), &client.device(), &challenge, &expires_at],
    )
    .await
    .map_err(unknown_client)?;
    Ok(())
}

/// Deletes the challenge and returns when it expired (or expires), if it existed.
pub(super) async fn take_challenge(
    db: &impl GenericClient,
    client: &ClientId,
    challenge: &[u8],
) -> StoreResult<Option<SystemTime>> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM challenges
             WHERE user_name = $1 AND device_name = $2 AND challenge = $3
             RETURNING expires_at",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device(), &challenge])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// Stores a new session; a token hash that is already taken is refused.
pub(super) async fn put_session(
    db: &impl GenericClient,
    token_hash: &DedupKey,
    client: &ClientId,
    expires_at: SystemTime,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO sessions (token_hash, user_name, device_name, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &token_hash.as_slice(),
            &client.user(),
            &client.device(),
            &expires_at,
        ],
    )
    .await
    .map_err(|err| {
        if err.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::AlreadyExists("session")
        } else {
            err.into()
        }
    })?;
    Ok(())
}

pub(super) async fn session(
    db: &impl GenericClient,
    token_hash: &DedupKey,
    now: SystemTime,
) -> StoreResult<Option<SessionRecord>> {
    let stmt = db
        .prepare_cached(
            "SELECT user_name, device_name, expires_at FROM sessions
             WHERE token_hash = $1 AND expires_at > $2",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&token_hash.as_slice(), &now]).await? else {
        return Ok(None);
    };
    Ok(Some(SessionRecord {
        client: client_id(row.try_get(0)?, row.try_get(1)?)?,
        expires_at: row.try_get(2)?,
    }))
}

/// Deletes expired challenges and sessions; returns how many.
pub(super) async fn purge_expired(db: &impl GenericClient, now: SystemTime) -> StoreResult<u64> {
    let challenges = db
        .prepare_cached("DELETE FROM challenges WHERE expires_at <= $1")
        .await?;
    let sessions = db
        .prepare_cached("DELETE FROM sessions WHERE expires_at <= $1")
        .await?;
    Ok(db.execute(&challenges, &[&now]).await? + db.execute(&sessions, &[&now]).await?)
}
