//! Groups, their logs and rosters. Everything that changes a group runs in
//! one transaction that first locks the group's row with [`lock`], so the
//! epoch check, the sequence number and the roster change are decided by one
//! writer at a time and become visible together.

use bytes::Bytes;
use deadpool_postgres::{GenericClient, Pool};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{bound, delivery, from_db, to_db};
use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId, InboxItem};
use crate::store::{
    AppendOutcome, CommitAccepted, CommitOutcome, CommitRecord, DedupKey, NewGroup, NewMessage,
    StoreError, StoreResult, StoredGroupState,
};

/// Registers the group with its creator as the only member.
pub(super) async fn create(pool: &Pool, group: &NewGroup) -> StoreResult<()> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if !insert_group(&tx, group).await? {
        return Err(StoreError::AlreadyExists("group"));
    }
    add_member(&tx, &group.group_id, &group.creator).await?;
    delivery::join(&tx, &group.creator, &group.group_id, 0).await?;
    tx.commit().await?;
    Ok(())
}

/// True if the group id was free.
async fn insert_group(db: &impl GenericClient, group: &NewGroup) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO groups (group_id, epoch, next_seq, state, group_info)
             VALUES ($1, $2, 1, $3, $4)
             ON CONFLICT (group_id) DO NOTHING",
        )
        .await?;
    let inserted = db
        .execute(
            &stmt,
            &[
                &group.group_id.as_slice(),
                &to_db(group.epoch, "epoch")?,
                &group.state,
                &&group.group_info[..],
            ],
        )
        .await?;
    Ok(inserted == 1)
}

pub(super) async fn state(
    db: &impl GenericClient,
    group_id: &GroupId,
) -> StoreResult<Option<StoredGroupState>> {
    let stmt = db
        .prepare_cached("SELECT epoch, state, state_version FROM groups WHERE group_id = $1")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&group_id.as_slice()]).await? else {
        return Ok(None);
    };
    Ok(Some(StoredGroupState {
        epoch: from_db(row.try_get(0)?)?,
        state: row.try_get(1)?,
        version: from_db(row.try_get(2)?)?,
    }))
}

pub(super) async fn state_version(
    db: &impl GenericClient,
    group_id: &GroupId,
) -> StoreResult<Option<u64>> {
    let stmt = db
        .prepare_cached("SELECT state_version FROM groups WHERE group_id = $1")
        .await?;
    db.query_opt(&stmt, &[&group_id.as_slice()])
        .await?
        .map(|row| from_db(row.try_get(0)?))
        .transpose()
}

pub(super) async fn group_info(
    db: &impl GenericClient,
    group_id: &GroupId,
) -> StoreResult<Option<(u64, Bytes)>> {
    let stmt = db
        .prepare_cached("SELECT epoch, group_info FROM groups WHERE group_id = $1")
        .await?;
    let Some(row) = db.query_opt(&stmt, &[&group_id.as_slice()]).await? else {
        return Ok(None);
    };
    let info: Vec<u8> = row.try_get(1)?;
    Ok(Some((from_db(row.try_get(0)?)?, Bytes::from(info))))
}

/// Where the group stands, read under its row lock.
struct Locked {
    epoch: u64,
    next_seq: u64,
    state_version: u64,
}

/// Locks the group's row until the transaction ends; `NotFound` if there is
/// no such group.
async fn lock(db: &impl GenericClient, group_id: &GroupId) -> StoreResult<Locked> {
    let stmt = db
        .prepare_cached(
            "SELECT epoch, next_seq, state_version FROM groups WHERE group_id = $1 FOR UPDATE",
        )
        .await?;
    let row = db
        .query_opt(&stmt, &[&group_id.as_slice()])
        .await?
        .ok_or(StoreError::NotFound("group"))?;
    Ok(Locked {
        epoch: from_db(row.try_get(0)?)?,
        next_seq: from_db(row.try_get(1)?)?,
        state_version: from_db(row.try_get(2)?)?,
    })
}

/// Accepts a commit if the group is still at `from_epoch`, all in one
/// transaction: log entry, new state and GroupInfo, roster, Welcomes.
pub(super) async fn accept_commit(
    pool: &Pool,
    commit: &CommitRecord,
) -> StoreResult<CommitOutcome> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let group = lock(&tx, &commit.group_id).await?;
    if let Some(original) = find_entry(&tx, &commit.group_id, &commit.dedup_key).await? {
        return Ok(CommitOutcome::Duplicate(original));
    }
    if group.epoch != commit.from_epoch {
        return Err(StoreError::WrongEpoch {
            current: group.epoch,
        });
    }
    if group.state_version != commit.state_version {
        return Err(StoreError::StateChanged);
    }
    let entry = GroupEntry {
        group_id: commit.group_id.clone(),
        seq: group.next_seq,
        epoch: commit.from_epoch,
        kind: EntryKind::Commit,
        message: commit.commit.clone(),
    };
    insert_entry(&tx, &entry, &commit.dedup_key, &commit.dedup_key).await?;
    advance_epoch(&tx, &commit.group_id, &commit.new_state, &commit.group_info).await?;

    // Clients are locked (their inbox counters) in one global order, so two
    // commits adding the same clients to different groups cannot deadlock.
    let mut added = commit.added.clone();
    added.sort();
    added.dedup();
    let mut welcomes = Vec::new();
    for client in &added {
        add_member(&tx, &commit.group_id, client).await?;
        delivery::join(&tx, client, &commit.group_id, entry.seq).await?;
        if let Some(welcome) = &commit.welcome {
            let item = InboxItem::Welcome {
                group_id: commit.group_id.clone(),
                commit_seq: entry.seq,
                welcome: welcome.clone(),
                ratchet_tree: commit.ratchet_tree.clone(),
            };
            let inbox_entry = delivery::push_inbox(&tx, client, &item).await?;
            welcomes.push((client.clone(), inbox_entry));
        }
    }
    for client in &commit.removed {
        remove_member(&tx, &commit.group_id, client).await?;
        delivery::leave(&tx, client, &commit.group_id, entry.seq).await?;
    }
    tx.commit().await?;
    Ok(CommitOutcome::Accepted(CommitAccepted { entry, welcomes }))
}

/// Appends a proposal or application message from a current member whose
/// epoch is within the window.
pub(super) async fn append(pool: &Pool, message: &NewMessage) -> StoreResult<AppendOutcome> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let group = lock(&tx, &message.group_id).await?;
    if let Some(sender) = &message.sender
        && !is_member(&tx, &message.group_id, sender).await?
    {
        return Err(StoreError::NotMember);
    }
    // A retry finds its entry whatever the epoch is now.
    if let Some(original) = find_entry(&tx, &message.group_id, &message.dedup_key).await? {
        return Ok(AppendOutcome::Duplicate(original));
    }
    if !message.fits_epoch(group.epoch) {
        return Err(StoreError::WrongEpoch {
            current: group.epoch,
        });
    }
    // A replay of the same bytes under another idempotency key, from a
    // member, within the window: not appended again.
    if let Some(original) = find_by_content(&tx, &message.group_id, &message.content_key).await? {
        return Ok(AppendOutcome::Duplicate(original));
    }
    if let Some((_, version)) = &message.new_state
        && *version != group.state_version
    {
        return Err(StoreError::StateChanged);
    }
    let entry = GroupEntry {
        group_id: message.group_id.clone(),
        seq: group.next_seq,
        epoch: message.epoch,
        kind: message.kind,
        message: message.message.clone(),
    };
    insert_entry(&tx, &entry, &message.dedup_key, &message.content_key).await?;
    match &message.new_state {
        Some((state, _)) => advance_seq_with_state(&tx, &message.group_id, state).await?,
        None => advance_seq(&tx, &message.group_id).await?,
    }
    tx.commit().await?;
    Ok(AppendOutcome::Appended(entry))
}

/// Appends a batch of members' messages in one transaction (group commit),
/// answering each as [`append`] would, in the batch's order; or `None` when
/// the batch holds a retry or a replay (a unique key of the log already
/// taken), which the caller then appends one by one. A message outside its
/// group's epoch window is left `None` in the answer, for the same reason: a
/// retry must be found at any epoch, which only [`append`] looks up.
///
/// Four round trips however many messages: BEGIN, the groups' row locks
/// with the senders' roster check, the insert (`ON CONFLICT DO NOTHING`:
/// the log's unique indexes find retries, no lookup does) with the
/// sequence counters, COMMIT. Groups are locked in id order, so two batches
/// never deadlock, and sequence numbers are assigned under the locks: per
/// group they are gapless and in commit order, as for a single append.
/// (Pipelining BEGIN with the locks and the insert with COMMIT, two round
/// trips, measured slower: 2,882–3,394 sends/s against 3,227–4,877 in
/// alternating `confide-ingress` runs.)
pub(super) async fn append_batch(
    pool: &Pool,
    messages: &[NewMessage],
) -> StoreResult<Option<Vec<Option<StoreResult<AppendOutcome>>>>> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let mut group_ids: Vec<&[u8]> = messages.iter().map(|m| m.group_id.as_slice()).collect();
    group_ids.sort_unstable();
    group_ids.dedup();
    let lock = tx
        .prepare_cached(
            "SELECT group_id, epoch, next_seq FROM groups
             WHERE group_id = ANY($1) ORDER BY group_id FOR UPDATE",
        )
        .await?;
    let roster = tx
        .prepare_cached(
            "SELECT m.ord FROM unnest($1::bytea[], $2::text[], $3::text[])
                 WITH ORDINALITY AS m(group_id, user_name, device_name, ord)
             WHERE EXISTS (SELECT 1 FROM group_members r
                           WHERE r.group_id = m.group_id AND r.user_name = m.user_name
                             AND r.device_name = m.device_name)",
        )
        .await?;
    let (users, devices): (Vec<&str>, Vec<&str>) = messages
        .iter()
        .map(|m| {
            m.sender
                .as_ref()
                .map_or(("", ""), |sender| (sender.user(), sender.device()))
        })
        .unzip();
    let message_groups: Vec<&[u8]> = messages.iter().map(|m| m.group_id.as_slice()).collect();
    // Pipelined: the roster is read after the locks are held.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&group_ids];
    let roster_params: [&(dyn ToSql + Sync); 3] = [&message_groups, &users, &devices];
    let (locked, on_roster) = futures::try_join!(
        tx.query(&lock, &lock_params),
        tx.query(&roster, &roster_params),
    )?;
    // Each group's epoch, and its next seq as the batch advances it.
    let mut groups = std::collections::HashMap::with_capacity(locked.len());
    for row in &locked {
        let id: &[u8] = row.try_get(0)?;
        let epoch = from_db(row.try_get(1)?)?;
        let next_seq = from_db(row.try_get(2)?)?;
        groups.insert(id.to_vec(), (epoch, next_seq, next_seq));
    }
    let mut member = vec![false; messages.len()];
    for row in &on_roster {
        let ordinal: i64 = row.try_get(0)?;
        if let Some(slot) = usize::try_from(ordinal - 1)
            .ok()
            .and_then(|i| member.get_mut(i))
        {
            *slot = true;
        }
    }

    let mut outcomes = Vec::with_capacity(messages.len());
    let mut rows = BatchRows::default();
    for (message, member) in messages.iter().zip(member) {
        let Some((epoch, _, next_seq)) = groups.get_mut(message.group_id.as_slice()) else {
            outcomes.push(Some(Err(StoreError::NotFound("group"))));
            continue;
        };
        if message.sender.is_none() || !member {
            outcomes.push(Some(Err(StoreError::NotMember)));
            continue;
        }
        // A message with a new state is never batched: only `append` stores it.
        if message.new_state.is_some() || !message.fits_epoch(*epoch) {
            outcomes.push(None);
            continue;
        }
        let entry = GroupEntry {
            group_id: message.group_id.clone(),
            seq: *next_seq,
            epoch: message.epoch,
            kind: message.kind,
            message: message.message.clone(),
        };
        *next_seq += 1;
        rows.push(&entry, message)?;
        outcomes.push(Some(Ok(AppendOutcome::Appended(entry))));
    }
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(Some(outcomes));
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO group_log (group_id, seq, epoch, kind, dedup_key, content_key, message)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int2[],
                                  $5::bytea[], $6::bytea[], $7::bytea[])
             ON CONFLICT DO NOTHING",
        )
        .await?;
    let advance = tx
        .prepare_cached(
            "UPDATE groups SET next_seq = v.next_seq
             FROM unnest($1::bytea[], $2::int8[]) AS v(group_id, next_seq)
             WHERE groups.group_id = v.group_id",
        )
        .await?;
    let mut advanced_groups: Vec<&[u8]> = Vec::with_capacity(groups.len());
    let mut advanced_to = Vec::with_capacity(groups.len());
    for (id, (_, first_seq, next_seq)) in &groups {
        if next_seq != first_seq {
            advanced_groups.push(id);
            advanced_to.push(to_db(*next_seq, "seq")?);
        }
    }
    let insert_params: [&(dyn ToSql + Sync); 7] = [
        &rows.group_ids,
        &rows.seqs,
        &rows.epochs,
        &rows.kinds,
        &rows.dedup_keys,
        &rows.content_keys,
        &rows.messages,
    ];
    let advance_params: [&(dyn ToSql + Sync); 2] = [&advanced_groups, &advanced_to];
    let (inserted, _) = futures::try_join!(
        tx.execute(&insert, &insert_params),
        tx.execute(&advance, &advance_params),
    )?;
    if inserted != rows.len() as u64 {
        // A retry or a replay: its key is taken, so its seq would be a gap.
        tx.rollback().await?;
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// The columns of a batch's new log rows, as arrays for `unnest`.
#[derive(Default)]
struct BatchRows<'a> {
    group_ids: Vec<&'a [u8]>,
    seqs: Vec<i64>,
    epochs: Vec<i64>,
    kinds: Vec<i16>,
    dedup_keys: Vec<&'a [u8]>,
    content_keys: Vec<&'a [u8]>,
    messages: Vec<&'a [u8]>,
}

impl<'a> BatchRows<'a> {
    fn push(&mut self, entry: &GroupEntry, message: &'a NewMessage) -> StoreResult<()> {
        self.group_ids.push(message.group_id.as_slice());
        self.seqs.push(to_db(entry.seq, "seq")?);
        self.epochs.push(to_db(entry.epoch, "epoch")?);
        self.kinds.push(entry.kind.as_i16());
        self.dedup_keys.push(&message.dedup_key);
        self.content_keys.push(&message.content_key);
        self.messages.push(&message.message);
        Ok(())
    }

    fn len(&self) -> usize {
        self.seqs.len()
    }

    fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

/// The entry with this idempotency key.
pub(super) async fn find_entry(
    db: &impl GenericClient,
    group_id: &GroupId,
    dedup_key: &DedupKey,
) -> StoreResult<Option<GroupEntry>> {
    find_by(db, group_id, LogKey::Dedup, dedup_key).await
}

/// The entry with these MLS bytes (by their hash).
async fn find_by_content(
    db: &impl GenericClient,
    group_id: &GroupId,
    content_key: &DedupKey,
) -> StoreResult<Option<GroupEntry>> {
    find_by(db, group_id, LogKey::Content, content_key).await
}

/// The two unique keys of a log entry besides its seq.
enum LogKey {
    Dedup,
    Content,
}

async fn find_by(
    db: &impl GenericClient,
    group_id: &GroupId,
    column: LogKey,
    key: &DedupKey,
) -> StoreResult<Option<GroupEntry>> {
    let query = match column {
        LogKey::Dedup => {
            "SELECT seq, epoch, kind, message FROM group_log WHERE group_id = $1 AND dedup_key = $2"
        }
        LogKey::Content => {
            "SELECT seq, epoch, kind, message FROM group_log WHERE group_id = $1 AND content_key = $2"
        }
    };
    let stmt = db.prepare_cached(query).await?;
    let row = db
        .query_opt(&stmt, &[&group_id.as_slice(), &key.as_slice()])
        .await?;
    row.map(|row| entry_from_row(group_id, &row)).transpose()
}

/// Up to `limit` entries with `after < seq <= until`, in order.
pub(super) async fn read_log(
    db: &impl GenericClient,
    group_id: &GroupId,
    after: u64,
    until: Option<u64>,
    limit: u32,
) -> StoreResult<Vec<GroupEntry>> {
    let stmt = db
        .prepare_cached(
            "SELECT seq, epoch, kind, message FROM group_log
             WHERE group_id = $1 AND seq > $2 AND seq <= $3
             ORDER BY seq
             LIMIT $4",
        )
        .await?;
    let until = until.map_or(i64::MAX, bound);
    let rows = db
        .query(
            &stmt,
            &[
                &group_id.as_slice(),
                &bound(after),
                &until,
                &i64::from(limit),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| entry_from_row(group_id, row))
        .collect()
}

/// The seq the group's log was pruned up to (0 if never, or no group).
pub(super) async fn pruned_seq(db: &impl GenericClient, group_id: &GroupId) -> StoreResult<u64> {
    let stmt = db
        .prepare_cached("SELECT pruned_seq FROM groups WHERE group_id = $1")
        .await?;
    match db.query_opt(&stmt, &[&group_id.as_slice()]).await? {
        Some(row) => from_db(row.try_get(0)?),
        None => Ok(0),
    }
}

fn entry_from_row(group_id: &GroupId, row: &Row) -> StoreResult<GroupEntry> {
    let kind: i16 = row.try_get(2)?;
    let message: Vec<u8> = row.try_get(3)?;
    Ok(GroupEntry {
        group_id: group_id.clone(),
        seq: from_db(row.try_get(0)?)?,
        epoch: from_db(row.try_get(1)?)?,
        kind: EntryKind::from_i16(kind)
            .ok_or_else(|| StoreError::Backend(format!("unknown entry kind {kind}").into()))?,
        message: Bytes::from(message),
    })
}

async fn insert_entry(
    db: &impl GenericClient,
    entry: &GroupEntry,
    dedup_key: &DedupKey,
    content_key: &DedupKey,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO group_log (group_id, seq, epoch, kind, dedup_key, content_key, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    db.execute(
        &stmt,
        &[
            &entry.group_id.as_slice(),
            &to_db(entry.seq, "seq")?,
            &to_db(entry.epoch, "epoch")?,
            &entry.kind.as_i16(),
            &dedup_key.as_slice(),
            &content_key.as_slice(),
            &&entry.message[..],
        ],
    )
    .await?;
    Ok(())
}

async fn advance_epoch(
    db: &impl GenericClient,
    group_id: &GroupId,
    state: &[u8],
    group_info: &[u8],
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE groups
             SET epoch = epoch + 1, next_seq = next_seq + 1, state = $2, group_info = $3,
                 state_version = state_version + 1
             WHERE group_id = $1",
        )
        .await?;
    db.execute(&stmt, &[&group_id.as_slice(), &state, &group_info])
        .await?;
    Ok(())
}

async fn advance_seq(db: &impl GenericClient, group_id: &GroupId) -> StoreResult<()> {
    let stmt = db
        .prepare_cached("UPDATE groups SET next_seq = next_seq + 1 WHERE group_id = $1")
        .await?;
    db.execute(&stmt, &[&group_id.as_slice()]).await?;
    Ok(())
}

async fn advance_seq_with_state(
    db: &impl GenericClient,
    group_id: &GroupId,
    state: &[u8],
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE groups SET next_seq = next_seq + 1, state = $2,
                 state_version = state_version + 1
             WHERE group_id = $1",
        )
        .await?;
    db.execute(&stmt, &[&group_id.as_slice(), &state]).await?;
    Ok(())
}

/// Whether the roster has a device of `user` (a prefix of the roster's key).
pub(super) async fn user_in_group(
    db: &impl GenericClient,
    group_id: &GroupId,
    user: &str,
) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND user_name = $2)",
        )
        .await?;
    let row = db.query_one(&stmt, &[&group_id.as_slice(), &user]).await?;
    Ok(row.try_get(0)?)
}

async fn is_member(
    db: &impl GenericClient,
    group_id: &GroupId,
    client: &ClientId,
) -> StoreResult<bool> {
    let stmt = db
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM group_members
                            WHERE group_id = $1 AND user_name = $2 AND device_name = $3)",
        )
        .await?;
    let row = db
        .query_one(
            &stmt,
            &[&group_id.as_slice(), &client.user(), &client.device()],
        )
        .await?;
    Ok(row.try_get(0)?)
}

async fn add_member(
    db: &impl GenericClient,
    group_id: &GroupId,
    client: &ClientId,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "INSERT INTO group_members (group_id, user_name, device_name)
             VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .await?;
    db.execute(
        &stmt,
        &[&group_id.as_slice(), &client.user(), &client.device()],
    )
    .await?;
    Ok(())
}

async fn remove_member(
    db: &impl GenericClient,
    group_id: &GroupId,
    client: &ClientId,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "DELETE FROM group_members
             WHERE group_id = $1 AND user_name = $2 AND device_name = $3",
        )
        .await?;
    db.execute(
        &stmt,
        &[&group_id.as_slice(), &client.user(), &client.device()],
    )
    .await?;
    Ok(())
}
