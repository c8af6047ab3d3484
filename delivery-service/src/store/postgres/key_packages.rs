//! Key package pools: one-time key packages, each handed out at most once,
//! and one last-resort key package per client.

use std::time::SystemTime;

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};

use super::unknown_client;
use crate::domain::ClientId;
use crate::store::{ClaimedKeyPackage, KeyPackageCount, KeyPackageRecord, StoreResult};

/// Adds to the pool and replaces the last-resort key package in one
/// transaction; returns the pool size.
pub(super) async fn publish(
    pool: &Pool,
    client: &ClientId,
    key_packages: &[KeyPackageRecord],
    last_resort: Option<&KeyPackageRecord>,
) -> StoreResult<u32> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if !key_packages.is_empty() {
        insert(&tx, client, key_packages).await?;
    }
    if let Some(last_resort) = last_resort {
        put_last_resort(&tx, client, last_resort).await?;
    }
    set_low_pool_notified(&tx, client, false).await?;
    let available = count_pool(&tx, client).await?;
    tx.commit().await?;
    Ok(available)
}

/// Inserts a batch in one statement; refs already in the pool are skipped.
async fn insert(
    db: &impl GenericClient,
    client: &ClientId,
    key_packages: &[KeyPackageRecord],
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO key_packages (user_name, device_name, kp_ref, data, not_after)
             SELECT $1, $2, kp.kp_ref, kp.data, kp.not_after
             FROM unnest($3::bytea[], $4::bytea[], $5::timestamptz[])
                 AS kp (kp_ref, data, not_after)
             ON CONFLICT (user_name, device_name, kp_ref) DO NOTHING",
        )
        .await?;
    let refs: Vec<&[u8]> = key_packages
        .iter()
        .map(|kp| kp.key_package_ref.as_slice())
        .collect();
    let data: Vec<&[u8]> = key_packages.iter().map(|kp| &kp.data[..]).collect();
    let not_after: Vec<SystemTime> = key_packages.iter().map(|kp| kp.not_after).collect();
    db.execute(
        &stmt,
        &[&client.user(), &client.device(), &refs, &data, &not_after],
    )
    .await
    .map_err(unknown_client)?;
    Ok(())
}

async fn put_last_resort(
    db: &impl GenericClient,
    client: &ClientId,
    key_package: &KeyPackageRecord,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO last_resort_key_packages (user_name, device_name, kp_ref, data, not_after)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_name, device_name)
             DO UPDATE SET kp_ref = EXCLUDED.kp_ref, data = EXCLUDED.data,
                           not_after = EXCLUDED.not_after",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &client.user(),
            &client.device(),
            &key_package.key_package_ref,
            &&key_package.data[..],
            &key_package.not_after,
        ],
    )
    .await
    .map_err(unknown_client)?;
    Ok(())
}

/// Marks whether the client was told its pool is low; true if that changed
/// the mark (so exactly one of concurrent claims gets to tell it).
async fn set_low_pool_notified(
    db: &impl GenericClient,
    client: &ClientId,
    notified: bool,
) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "UPDATE clients SET low_pool_notified = $3
             WHERE user_name = $1 AND device_name = $2 AND low_pool_notified <> $3",
        )
        .await?;
    let changed = db
        .execute(&stmt, &[&client.user(), &client.device(), &notified])
        .await?;
    Ok(changed == 1)
}

pub(super) async fn take_low_pool_notice(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<bool> {
    set_low_pool_notified(db, client, true).await
}

/// Takes the client's oldest key package, or its last-resort one when the
/// pool is empty.
pub(super) async fn claim(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Option<ClaimedKeyPackage>> {
    let (data, last_resort) = match take_one(db, client).await? {
        Some(data) => (data, false),
        None => match last_resort(db, client).await? {
            Some(data) => (data, true),
            None => return Ok(None),
        },
    };
    Ok(Some(ClaimedKeyPackage {
        client: client.clone(),
        data: Bytes::from(data),
        last_resort,
        remaining: count_pool(db, client).await?,
    }))
}

/// Deletes one key package and returns it. `SKIP LOCKED` lets concurrent
/// claims for the same client each take a different row instead of queueing
/// on (and then all missing) the same one; a row is deleted by exactly the
/// claim that locked it, so none is handed out twice.
async fn take_one(db: &impl GenericClient, client: &ClientId) -> StoreResult<Option<Vec<u8>>> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM key_packages
             WHERE (user_name, device_name, kp_ref) = (
                 SELECT user_name, device_name, kp_ref FROM key_packages
                 WHERE user_name = $1 AND device_name = $2
                 ORDER BY created_at, kp_ref
                 LIMIT 1
                 FOR UPDATE SKIP LOCKED
             )
             RETURNING data",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

async fn last_resort(db: &impl GenericClient, client: &ClientId) -> StoreResult<Option<Vec<u8>>> {
    let stmt = db
        .prepare_cached(
            "SELECT data FROM last_resort_key_packages
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

async fn count_pool(db: &impl GenericClient, client: &ClientId) -> StoreResult<u32> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*) FROM key_packages WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let row = db
        .query_one(&stmt, &[&client.user(), &client.device()])
        .await?;
    let count: i64 = row.try_get(0)?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

pub(super) async fn count(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<KeyPackageCount> {
    let stmt = db
        .prepare_cached(
            "SELECT
                 (SELECT count(*) FROM key_packages
                  WHERE user_name = $1 AND device_name = $2),
                 EXISTS (SELECT 1 FROM last_resort_key_packages
                         WHERE user_name = $1 AND device_name = $2)",
        )
        .await?;
    let row = db
        .query_one(&stmt, &[&client.user(), &client.device()])
        .await?;
    let available: i64 = row.try_get(0)?;
    Ok(KeyPackageCount {
        available: u32::try_from(available).unwrap_or(u32::MAX),
        has_last_resort: row.try_get(1)?,
    })
}

/// Rows deleted per statement when pruning, so none holds many row locks
/// or runs long.
const PRUNE_CHUNK: i64 = 1000;

/// Deletes the key packages (pool and last-resort) whose lifetime ended by
/// `now`, a chunk per statement; returns how many.
pub(super) async fn prune_expired(db: &impl GenericClient, now: SystemTime) -> StoreResult<u64> {
    let mut deleted = 0;
    for table in ["key_packages", "last_resort_key_packages"] {
        let stmt = db
            .prepare_cached(&format!(
                "DELETE FROM {table} WHERE ctid = ANY (ARRAY (
                     SELECT ctid FROM {table} WHERE not_after < $1 LIMIT $2
                 ))"
            ))
            .await?;
        loop {
            let n = db.execute(&stmt, &[&now, &PRUNE_CHUNK]).await?;
            deleted += n;
            if n < PRUNE_CHUNK as u64 {
                break;
            }
        }
    }
    Ok(deleted)
}
