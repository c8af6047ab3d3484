//! Pruning ([`crate::store::Store::prune`]): group log entries every member
//! acknowledged or past retention, the memberships they leave empty, inbox
//! entries acknowledged or past retention. Every statement is bounded (a
//! chunk of seqs of one group, a chunk of clients), and each transaction
//! is short: the group's row is locked only for one chunk's delete, so an
//! append waits at most that long, and nothing is held across the run.

use std::time::SystemTime;

use deadpool_postgres::{GenericClient, Pool};

use super::{bound, from_db, group_id, to_db};
use crate::domain::GroupId;
use crate::store::StoreResult;

/// Log entries deleted per transaction.
const LOG_CHUNK: u64 = 1000;
/// Groups, and clients, visited per query of the walk.
const WALK_PAGE: i64 = 500;

/// Prunes every group's log, a group at a time; returns how many log
/// entries and memberships were deleted.
pub(super) async fn prune_groups(pool: &Pool, cutoff: SystemTime) -> StoreResult<(u64, u64)> {
    let conn = pool.get().await?;
    let page = conn
        .prepare_cached(
            "SELECT group_id, pruned_seq, next_seq FROM groups
             WHERE group_id > $1 ORDER BY group_id LIMIT $2",
        )
        .await?;
    let (mut entries, mut memberships) = (0, 0);
    let mut after: Vec<u8> = Vec::new();
    loop {
        let rows = conn.query(&page, &[&after, &WALK_PAGE]).await?;
        for row in &rows {
            let group = group_id(row.try_get(0)?)?;
            let pruned = from_db(row.try_get(1)?)?;
            let last = from_db(row.try_get(2)?)?.saturating_sub(1);
            let (e, m) = prune_group(pool, &group, pruned, last, cutoff).await?;
            entries += e;
            memberships += m;
        }
        match rows.last() {
            Some(row) if rows.len() as i64 == WALK_PAGE => after = row.try_get(0)?,
            _ => return Ok((entries, memberships)),
        }
    }
}

/// Prunes one group's log from `pruned` (where it was pruned up to) as far
/// as its members' acks or the retention cutoff allow, at most `last`.
async fn prune_group(
    pool: &Pool,
    group: &GroupId,
    mut pruned: u64,
    last: u64,
    cutoff: SystemTime,
) -> StoreResult<(u64, u64)> {
    let mut conn = pool.get().await?;
    let mut deleted = 0;
    // Cursors only move forward and a new membership starts at the end of
    // the log, so a horizon read now stays safe while the group goes on.
    let acked = if last > pruned {
        acked_by_all(&conn, group).await?.unwrap_or(last).min(last)
    } else {
        last
    };
    loop {
        let upper = pruned.saturating_add(LOG_CHUNK).min(last);
        if upper <= pruned {
            break;
        }
        let expired = expired_up_to(&conn, group, pruned, upper, cutoff).await?;
        let target = acked.min(upper).max(expired.unwrap_or(0));
        if target <= pruned {
            break;
        }
        let tx = conn.transaction().await?;
        // The group's row first, as appends lock it: the horizon and the
        // delete become visible together, and readers in one snapshot see
        // either both or neither.
        let moved = tx
            .prepare_cached(
                "UPDATE groups SET pruned_seq = $2 WHERE group_id = $1 AND pruned_seq < $2
                 RETURNING 1",
            )
            .await?;
        if tx
            .query_opt(&moved, &[&group.as_slice(), &to_db(target, "seq")?])
            .await?
            .is_none()
        {
            // Another replica's purge got there first.
            tx.commit().await?;
            break;
        }
        let delete = tx
            .prepare_cached("DELETE FROM group_log WHERE group_id = $1 AND seq > $2 AND seq <= $3")
            .await?;
        deleted += tx
            .execute(
                &delete,
                &[&group.as_slice(), &bound(pruned), &to_db(target, "seq")?],
            )
            .await?;
        tx.commit().await?;
        pruned = target;
    }
    let memberships = prune_memberships(&conn, group, pruned).await?;
    Ok((deleted, memberships))
}

/// The lowest cursor of the group's readers: its current members, and its
/// removed members that have not read up to their removal. `None` if it
/// has none.
async fn acked_by_all(db: &impl GenericClient, group: &GroupId) -> StoreResult<Option<u64>> {
    let stmt = db
        .prepare_cached(
            "SELECT min(acked_seq) FROM memberships
             WHERE group_id = $1 AND (left_seq IS NULL OR acked_seq < left_seq)",
        )
        .await?;
    let row = db.query_one(&stmt, &[&group.as_slice()]).await?;
    row.try_get::<_, Option<i64>>(0)?.map(from_db).transpose()
}

/// The highest seq in `(after, upto]` appended before `cutoff`.
async fn expired_up_to(
    db: &impl GenericClient,
    group: &GroupId,
    after: u64,
    upto: u64,
    cutoff: SystemTime,
) -> StoreResult<Option<u64>> {
    let stmt = db
        .prepare_cached(
            "SELECT max(seq) FROM group_log
             WHERE group_id = $1 AND seq > $2 AND seq <= $3 AND created_at < $4",
        )
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[&group.as_slice(), &bound(after), &bound(upto), &cutoff],
        )
        .await?;
    row.try_get::<_, Option<i64>>(0)?.map(from_db).transpose()
}

/// Deletes the memberships of removed members whose window is pruned and
/// who read up to their removal (one that has not is told ENTRIES_PRUNED
/// when it comes back, and its membership goes once it acknowledged).
async fn prune_memberships(
    db: &impl GenericClient,
    group: &GroupId,
    pruned: u64,
) -> StoreResult<u64> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM memberships
             WHERE group_id = $1 AND left_seq IS NOT NULL AND left_seq <= $2
               AND acked_seq >= left_seq",
        )
        .await?;
    Ok(db
        .execute(&stmt, &[&group.as_slice(), &bound(pruned)])
        .await?)
}

/// Deletes inbox entries their client acknowledged or appended before
/// `cutoff`, for a page of clients per statement; returns how many.
pub(super) async fn prune_inbox(db: &impl GenericClient, cutoff: SystemTime) -> StoreResult<u64> {
    let clients = db
        .prepare_cached(
            "SELECT user_name, device_name FROM clients
             WHERE (user_name, device_name) > ($1, $2)
             ORDER BY user_name, device_name
             OFFSET $3::bigint - 1 LIMIT 1",
        )
        .await?;
    let delete = db
        .prepare_cached(
            "DELETE FROM inbox AS i USING clients AS c
             WHERE c.user_name = i.user_name AND c.device_name = i.device_name
               AND (c.user_name, c.device_name) > ($1, $2)
               AND ($5 OR (c.user_name, c.device_name) <= ($3, $4))
               AND (i.seq <= c.inbox_acked_seq OR i.created_at < $6)",
        )
        .await?;
    let mut after = (String::new(), String::new());
    let mut deleted = 0;
    loop {
        // The last client of the next page, or none: the page runs to the end.
        let end = db
            .query_opt(&clients, &[&after.0, &after.1, &WALK_PAGE])
            .await?;
        let (upto, open) = match &end {
            Some(row) => ((row.try_get(0)?, row.try_get(1)?), false),
            None => ((String::new(), String::new()), true),
        };
        deleted += db
            .execute(
                &delete,
                &[&after.0, &after.1, &upto.0, &upto.1, &open, &cutoff],
            )
            .await?;
        if open {
            return Ok(deleted);
        }
        after = upto;
    }
}
