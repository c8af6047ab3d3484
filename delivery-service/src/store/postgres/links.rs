//! The linking mailbox: a new device's sealed offer, an existing device's
//! sealed answer, each link gone once its answer is taken or it expires.

use std::time::SystemTime;

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};

use crate::store::{LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, StoreResult};

/// Stores the offer, deciding under the user's row lock, so that concurrent
/// offers for one user never exceed `max_pending`.
pub(super) async fn post_offer(
    pool: &Pool,
    offer: &LinkOffer,
    max_pending: usize,
    now: SystemTime,
) -> StoreResult<LinkPosted> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if !lock_user(&tx, &offer.user).await? {
        return Ok(LinkPosted::UnknownUser);
    }
    if let Some((user, sealed_offer, expires_at)) = pending(&tx, &offer.link_id, now).await? {
        return Ok(
            if user == offer.user && sealed_offer == offer.sealed_offer[..] {
                LinkPosted::Posted { expires_at }
            } else {
                LinkPosted::Taken
            },
        );
    }
    if pending_for_user(&tx, &offer.user, now).await? >= max_pending as i64 {
        return Ok(LinkPosted::TooMany);
    }
    let Some(expires_at) = insert(&tx, offer, now).await? else {
        // Another user's offer took the id since.
        return Ok(LinkPosted::Taken);
    };
    tx.commit().await?;
    Ok(LinkPosted::Posted { expires_at })
}

/// Locks the user's row; false if there is no such user.
async fn lock_user(db: &impl GenericClient, user: &str) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached("SELECT 1 FROM users WHERE user_name = $1 FOR UPDATE")
        .await?;
    Ok(db.query_opt(&stmt, &[&user]).await?.is_some())
}

/// The user, offer and expiry of the unexpired link with this id.
async fn pending(
    db: &impl GenericClient,
    link_id: &[u8],
    now: SystemTime,
) -> StoreResult<Option<(String, Vec<u8>, SystemTime)>> {
    let stmt = db
        .prepare_cached(
            "SELECT user_name, sealed_offer, expires_at FROM device_links
             WHERE link_id = $1 AND expires_at > $2",
        )
        .await?;
    let row = db.query_opt(&stmt, &[&link_id, &now]).await?;
    Ok(row
        .map(|row| {
            Ok::<_, tokio_postgres::Error>((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        })
        .transpose()?)
}

async fn pending_for_user(
    db: &impl GenericClient,
    user: &str,
    now: SystemTime,
) -> StoreResult<i64> {
    let stmt = db
        .prepare_cached(
            "SELECT count(*) FROM device_links WHERE user_name = $1 AND expires_at > $2",
        )
        .await?;
    Ok(db.query_one(&stmt, &[&user, &now]).await?.try_get(0)?)
}

/// Inserts the link, replacing an expired one with its id, and returns its
/// expiry as stored (a retry reads the same); `None` if an unexpired one
/// holds the id.
async fn insert(
    db: &impl GenericClient,
    offer: &LinkOffer,
    now: SystemTime,
) -> StoreResult<Option<SystemTime>> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO device_links (link_id, user_name, sealed_offer, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (link_id) DO UPDATE
             SET user_name = EXCLUDED.user_name, sealed_offer = EXCLUDED.sealed_offer,
                 sealed_answer = NULL, expires_at = EXCLUDED.expires_at
             WHERE device_links.expires_at <= $5
             RETURNING expires_at",
        )
        .await?;
    let row = db
        .query_opt(
            &stmt,
            &[
                &offer.link_id,
                &offer.user,
                &&offer.sealed_offer[..],
                &offer.expires_at,
                &now,
            ],
        )
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

pub(super) async fn offer(
    db: &impl GenericClient,
    link_id: &[u8],
    now: SystemTime,
) -> StoreResult<Option<(String, Bytes)>> {
    Ok(pending(db, link_id, now)
        .await?
        .map(|(user, offer, _)| (user, Bytes::from(offer))))
}

pub(super) async fn post_answer(
    db: &impl GenericClient,
    link_id: &[u8],
    user: &str,
    answer: &Bytes,
    now: SystemTime,
) -> StoreResult<LinkAnswered> {
    let stmt = db
        .prepare_cached(
            "UPDATE device_links SET sealed_answer = $3
             WHERE link_id = $1 AND user_name = $2 AND expires_at > $4
               AND sealed_answer IS NULL",
        )
        .await?;
    if db
        .execute(&stmt, &[&link_id, &user, &&answer[..], &now])
        .await?
        == 1
    {
        return Ok(LinkAnswered::Posted);
    }
    let stmt = db
        .prepare_cached(
            "SELECT sealed_answer FROM device_links
             WHERE link_id = $1 AND user_name = $2 AND expires_at > $3",
        )
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&link_id, &user, &now]).await? else {
        return Ok(LinkAnswered::NotFound);
    };
    let stored: Option<Vec<u8>> = row.try_get(0)?;
    Ok(match stored {
        Some(stored) if stored == answer[..] => LinkAnswered::Posted,
        Some(_) => LinkAnswered::AlreadyAnswered,
        // Expired or taken between the two statements.
        None => LinkAnswered::NotFound,
    })
}

pub(super) async fn take_answer(
    db: &impl GenericClient,
    link_id: &[u8],
    now: SystemTime,
) -> StoreResult<LinkAnswer> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM device_links
             WHERE link_id = $1 AND expires_at > $2 AND sealed_answer IS NOT NULL
             RETURNING sealed_answer",
        )
        .await?;
    if let Some(row) = db.query_opt(&stmt, &[&link_id, &now]).await? {
        let answer: Vec<u8> = row.try_get(0)?;
        return Ok(LinkAnswer::Answered(answer.into()));
    }
    Ok(match pending(db, link_id, now).await? {
        Some(_) => LinkAnswer::Pending,
        None => LinkAnswer::NotFound,
    })
}

/// Deletes links that expired by `now`; returns how many.
pub(super) async fn purge_expired(db: &impl GenericClient, now: SystemTime) -> StoreResult<u64> {
    let stmt = db
        .prepare_cached("DELETE FROM device_links WHERE expires_at <= $1")
        .await?;
    Ok(db.execute(&stmt, &[&now]).await?)
}
