//! Clients, authentication challenges and sessions.

use std::time::SystemTime;

use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::{client_id, unknown_client};
use crate::domain::ClientId;
use crate::store::{ClientRecord, DedupKey, Registration, SessionRecord, StoreError, StoreResult};

/// Binds the client to its key, or reports how an earlier binding differs.
pub(super) async fn register(
    db: &impl GenericClient,
    client: &ClientRecord,
) -> StoreResult<Registration> {
    if insert_client(db, client).await? {
        return Ok(Registration::Created);
    }
    // Clients are never deleted (a removed one stays as a tombstone), so the
    // row that blocked the insert is there.
    match registered_key(db, &client.id).await? {
        Some((_, true)) => Ok(Registration::Removed),
        Some((key, false)) if key == client.signature_key => Ok(Registration::AlreadyRegistered),
        Some(_) => Ok(Registration::KeyMismatch),
        None => Err(StoreError::NotFound("client")),
    }
}

/// True if the client was new.
async fn insert_client(db: &impl GenericClient, client: &ClientRecord) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO clients (user_name, device_name, signature_key)
             VALUES ($1, $2, $3)
             ON CONFLICT (user_name, device_name) DO NOTHING",
        )
        .await?;
    let inserted = db
        .execute(
            &stmt,
            &[
                &client.id.user(),
                &client.id.device(),
                &client.signature_key,
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// The client's signature key and whether it was removed.
async fn registered_key(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Option<(Vec<u8>, bool)>> {
    let stmt = db
        .prepare_cached(
            "SELECT signature_key, removed_at IS NOT NULL FROM clients
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?;
    Ok(row
        .map(|row| Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?)))
        .transpose()?)
}

/// The signature key of a client that is registered and not removed.
pub(super) async fn signature_key(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Option<Vec<u8>>> {
    Ok(registered_key(db, client)
        .await?
        .and_then(|(key, removed)| (!removed).then_some(key)))
}

/// Marks the client removed and deletes its sessions, challenges and key
/// packages. True if it was active; false if it was removed before.
pub(super) async fn remove(db: &impl GenericClient, client: &ClientId) -> StoreResult<bool> {
    let mark = db
        .prepare_cached(
            "UPDATE clients SET removed_at = now()
             WHERE user_name = $1 AND device_name = $2 AND removed_at IS NULL",
        )
        .await?;
    let args: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&client.user(), &client.device()];
    let newly = db.execute(&mark, &args).await? == 1;
    if !newly && registered_key(db, client).await?.is_none() {
        return Err(StoreError::NotFound("client"));
    }
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
    Ok(newly)
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
