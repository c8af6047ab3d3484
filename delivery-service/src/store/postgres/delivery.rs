//! What each client may read and how far it got: memberships with their
//! visible window of a group's log, the per-client inbox, and cursors.

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::{IsolationLevel, Row};

use super::{bound, from_db, group_id, groups, to_db, unknown_client};
use crate::domain::{ClientId, GroupEntry, GroupId, InboxEntry, InboxItem};
use crate::store::{Membership, StoreError, StoreResult};

const WELCOME: i16 = 1;
const KEY_PACKAGES_LOW: i16 = 2;

/// Makes the client a current member that sees the log after `seq` (and has
/// acknowledged up to it). A client that left and is added again starts over.
pub(super) async fn join(
    db: &impl GenericClient,
    client: &ClientId,
    group_id: &GroupId,
    seq: u64,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO memberships
                 (user_name, device_name, group_id, joined_seq, left_seq, acked_seq)
             VALUES ($1, $2, $3, $4, NULL, $4)
             ON CONFLICT (user_name, device_name, group_id) DO UPDATE
             SET joined_seq = EXCLUDED.joined_seq, left_seq = NULL,
                 acked_seq = EXCLUDED.acked_seq",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &client.user(),
            &client.device(),
            &group_id.as_slice(),
            &to_db(seq, "seq")?,
        ],
    )
    .await
    .map_err(unknown_client)?;
    Ok(())
}

/// Ends a current membership at `seq`: the client still sees entries up to
/// and including it (the commit that removed it), nothing after.
pub(super) async fn leave(
    db: &impl GenericClient,
    client: &ClientId,
    group_id: &GroupId,
    seq: u64,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE memberships SET left_seq = $4
             WHERE user_name = $1 AND device_name = $2 AND group_id = $3
               AND left_seq IS NULL",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &client.user(),
            &client.device(),
            &group_id.as_slice(),
            &to_db(seq, "seq")?,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn membership(
    db: &impl GenericClient,
    client: &ClientId,
    group_id: &GroupId,
) -> StoreResult<Option<Membership>> {
    let stmt = db
        .prepare_cached(
            "SELECT group_id, joined_seq, left_seq, acked_seq FROM memberships
             WHERE user_name = $1 AND device_name = $2 AND group_id = $3",
        )
        .await?;
    let row = db
        .query_opt(
            &stmt,
            &[&client.user(), &client.device(), &group_id.as_slice()],
        )
        .await?;
    row.as_ref().map(membership_from_row).transpose()
}

/// Every membership of the client, current and ended, ordered by group id.
pub(super) async fn memberships(
    db: &impl GenericClient,
    client: &ClientId,
) -> StoreResult<Vec<Membership>> {
    let stmt = db
        .prepare_cached(
            "SELECT group_id, joined_seq, left_seq, acked_seq FROM memberships
             WHERE user_name = $1 AND device_name = $2
             ORDER BY group_id",
        )
        .await?;
    let rows = db.query(&stmt, &[&client.user(), &client.device()]).await?;
    rows.iter().map(membership_from_row).collect()
}

fn membership_from_row(row: &Row) -> StoreResult<Membership> {
    let left_seq: Option<i64> = row.try_get(2)?;
    Ok(Membership {
        group_id: group_id(row.try_get(0)?)?,
        joined_seq: from_db(row.try_get(1)?)?,
        left_seq: left_seq.map(from_db).transpose()?,
        acked_seq: from_db(row.try_get(3)?)?,
    })
}

/// The part of the log the client may see after `after_seq`. The membership
/// and the log are read from one snapshot, so a removal committed between the
/// two reads cannot let entries after the removal through.
pub(super) async fn read_group(
    pool: &Pool,
    client: &ClientId,
    group_id: &GroupId,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<GroupEntry>> {
    let mut conn = pool.get().await?;
    let tx = conn
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let member = membership(&tx, client, group_id)
        .await?
        .ok_or(StoreError::NotMember)?;
    let after = after_seq.max(member.joined_seq);
    let entries = groups::read_log(&tx, group_id, after, member.left_seq, limit).await?;
    // Entries follow `after` without a gap unless some were pruned: only
    // then is the horizon read, in the same snapshot.
    let contiguous = entries.first().is_some_and(|entry| entry.seq == after + 1);
    if !contiguous && member.left_seq.is_none_or(|left| after < left) {
        let pruned = groups::pruned_seq(&tx, group_id).await?;
        if after < pruned {
            return Err(StoreError::Pruned {
                group_id: group_id.clone(),
                first_seq: pruned + 1,
            });
        }
    }
    tx.commit().await?;
    Ok(entries)
}

/// Appends to the client's inbox with the next inbox sequence number. The
/// counter update locks the client's row until the transaction ends, so
/// inbox entries become visible in sequence order.
pub(super) async fn push_inbox(
    db: &impl GenericClient,
    client: &ClientId,
    item: &InboxItem,
) -> StoreResult<InboxEntry> {
    let seq = next_inbox_seq(db, client).await?;
    let stmt = db
        .prepare_cached(
            "INSERT INTO inbox
                 (user_name, device_name, seq, kind, group_id, commit_seq, available, payload,
                  ratchet_tree)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    let (kind, group_id, commit_seq, available, payload, ratchet_tree) = match item {
        InboxItem::Welcome {
            group_id,
            commit_seq,
            welcome,
            ratchet_tree,
        } => (
            WELCOME,
            Some(group_id.as_slice()),
            Some(to_db(*commit_seq, "seq")?),
            None,
            Some(&welcome[..]),
            Some(&ratchet_tree[..]),
        ),
        InboxItem::KeyPackagesLow { available } => (
            KEY_PACKAGES_LOW,
            None,
            None,
            Some(i32::try_from(*available).unwrap_or(i32::MAX)),
            None,
            None,
        ),
    };
    db.execute(
        &stmt,
        &[
            &client.user(),
            &client.device(),
            &to_db(seq, "seq")?,
            &kind,
            &group_id,
            &commit_seq,
            &available,
            &payload,
            &ratchet_tree,
        ],
    )
    .await?;
    Ok(InboxEntry {
        seq,
        item: item.clone(),
    })
}

async fn next_inbox_seq(db: &impl GenericClient, client: &ClientId) -> StoreResult<u64> {
    let stmt = db
        .prepare_cached(
            "UPDATE clients SET inbox_next_seq = inbox_next_seq + 1
             WHERE user_name = $1 AND device_name = $2
             RETURNING inbox_next_seq - 1",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?
        .ok_or(StoreError::NotFound("client"))?;
    from_db(row.try_get(0)?)
}

pub(super) async fn read_inbox(
    db: &impl GenericClient,
    client: &ClientId,
    after_seq: u64,
    limit: u32,
) -> StoreResult<Vec<InboxEntry>> {
    let stmt = db
        .prepare_cached(
            "SELECT seq, kind, group_id, commit_seq, available, payload, ratchet_tree FROM inbox
             WHERE user_name = $1 AND device_name = $2 AND seq > $3
             ORDER BY seq
             LIMIT $4",
        )
        .await?;
    let rows = db
        .query(
            &stmt,
            &[
                &client.user(),
                &client.device(),
                &bound(after_seq),
                &i64::from(limit),
            ],
        )
        .await?;
    rows.iter().map(inbox_entry_from_row).collect()
}

fn inbox_entry_from_row(row: &Row) -> StoreResult<InboxEntry> {
    let kind: i16 = row.try_get(1)?;
    let item = match kind {
        WELCOME => {
            let commit_seq: Option<i64> = row.try_get(3)?;
            let payload: Option<Vec<u8>> = row.try_get(5)?;
            let group: Option<Vec<u8>> = row.try_get(2)?;
            match (group, commit_seq, payload) {
                (Some(group), Some(commit_seq), Some(payload)) => InboxItem::Welcome {
                    group_id: group_id(group)?,
                    commit_seq: from_db(commit_seq)?,
                    welcome: Bytes::from(payload),
                    ratchet_tree: row
                        .try_get::<_, Option<Vec<u8>>>(6)?
                        .map(Bytes::from)
                        .unwrap_or_default(),
                },
                _ => return Err(malformed_inbox_row()),
            }
        }
        KEY_PACKAGES_LOW => {
            let available: Option<i32> = row.try_get(4)?;
            let available = available.ok_or_else(malformed_inbox_row)?;
            InboxItem::KeyPackagesLow {
                available: u32::try_from(available).map_err(|_| malformed_inbox_row())?,
            }
        }
        _ => return Err(malformed_inbox_row()),
    };
    Ok(InboxEntry {
        seq: from_db(row.try_get(0)?)?,
        item,
    })
}

fn malformed_inbox_row() -> StoreError {
    StoreError::Backend("malformed inbox row".into())
}

/// Moves the client's group cursor forward (never back); `NotMember` if the
/// client has no membership of the group.
pub(super) async fn ack_group(
    db: &impl GenericClient,
    client: &ClientId,
    group_id: &GroupId,
    seq: u64,
) -> StoreResult<()> {
    // One round trip: whether the client is a member, where the log ends,
    // and the update if both allow it. Membership is checked first, so a
    // non-member learns nothing about the group.
    let stmt = db
        .prepare_cached(
            "WITH member AS (
                 SELECT 1 FROM memberships
                 WHERE user_name = $1 AND device_name = $2 AND group_id = $3
             ), log AS (
                 SELECT next_seq - 1 AS last FROM groups WHERE group_id = $3
             ), moved AS (
                 UPDATE memberships SET acked_seq = GREATEST(acked_seq, $4)
                 WHERE user_name = $1 AND device_name = $2 AND group_id = $3
                   AND $4 <= (SELECT last FROM log)
                 RETURNING 1
             )
             SELECT EXISTS (SELECT 1 FROM member),
                    COALESCE((SELECT last FROM log), 0),
                    EXISTS (SELECT 1 FROM moved)",
        )
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[
                &client.user(),
                &client.device(),
                &group_id.as_slice(),
                &bound(seq),
            ],
        )
        .await?;
    let (member, last, moved): (bool, i64, bool) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    match (member, moved) {
        (false, _) => Err(StoreError::NotMember),
        (true, true) => Ok(()),
        (true, false) => Err(StoreError::BeyondEnd {
            last: from_db(last)?,
        }),
    }
}

/// Moves the client's inbox cursor forward (never back).
pub(super) async fn ack_inbox(
    db: &impl GenericClient,
    client: &ClientId,
    seq: u64,
) -> StoreResult<()> {
    // Inbox entries only ever grow, so a seq checked here stays valid.
    let last_stmt = db
        .prepare_cached(
            "SELECT inbox_next_seq - 1 FROM clients WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let last = match db
        .query_opt(&last_stmt, &[&client.user(), &client.device()])
        .await?
    {
        Some(row) => from_db(row.try_get(0)?)?,
        None => return Err(StoreError::NotFound("client")),
    };
    if seq > last {
        return Err(StoreError::BeyondEnd { last });
    }
    let stmt = db
        .prepare_cached(
            "UPDATE clients SET inbox_acked_seq = GREATEST(inbox_acked_seq, $3)
             WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    db.execute(&stmt, &[&client.user(), &client.device(), &bound(seq)])
        .await?;
    Ok(())
}

/// The highest inbox seq the client acknowledged; 0 before its first ack.
pub(super) async fn inbox_cursor(db: &impl GenericClient, client: &ClientId) -> StoreResult<u64> {
    let stmt = db
        .prepare_cached(
            "SELECT inbox_acked_seq FROM clients WHERE user_name = $1 AND device_name = $2",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&client.user(), &client.device()])
        .await?;
    match row {
        Some(row) => from_db(row.try_get(0)?),
        None => Ok(0),
    }
}
