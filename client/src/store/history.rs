//! What a person reads back: every event of each group this device saw,
//! its own messages included (`confide_history`), and per group the name
//! and topic its members set and how far the person has read
//! (`confide_group_profiles`). Kept after the device leaves a group, so its
//! conversation can still be read.

use rusqlite::{OptionalExtension, params};

use super::StateDb;
use crate::error::{ClientError, ClientResult};
use crate::events::Event;

/// One event of a group's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When this device recorded it, among its other entries (increasing).
    pub id: i64,
    /// Its place in the group's order (the log entry it came from; an
    /// event of no entry takes the place of the last one before it).
    pub position: u64,
    /// When this device recorded it (ms since 1970, this device's clock).
    pub at_ms: u64,
    pub event: Event,
}

/// A group's name and topic, as its members last set them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupProfileRecord {
    pub name: Option<String>,
    pub topic: Option<String>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn entry(id: i64, position: i64, at_ms: i64, json: &str) -> ClientResult<HistoryEntry> {
    let event = serde_json::from_str(json)
        .map_err(|e| ClientError::Invalid(format!("a stored history entry: {e}")))?;
    Ok(HistoryEntry {
        id,
        position: position as u64,
        at_ms: at_ms as u64,
        event,
    })
}

impl StateDb {
    /// Adds an event to its group's history; `unread` if it is a message
    /// from another member (what unread counts count). History is in the
    /// group's order: an event of log entry `seq` goes at that place (this
    /// device's own message, recorded when sent, may be followed by an
    /// earlier entry that arrives after it); one without goes last.
    pub fn record_history(
        &self,
        group_id: &[u8],
        event: &Event,
        seq: Option<u64>,
        unread: bool,
    ) -> ClientResult<()> {
        let json = serde_json::to_string(event)
            .map_err(|e| ClientError::Invalid(format!("storing history: {e}")))?;
        self.conn.execute(
            "INSERT INTO confide_history (group_id, position, at_ms, counts_unread, event)
             VALUES (?1, coalesce(?2,
                 (SELECT max(position) FROM confide_history WHERE group_id = ?1), 0),
                 ?3, ?4, ?5)",
            params![
                group_id,
                seq.map(|s| s as i64),
                now_ms() as i64,
                unread,
                json
            ],
        )?;
        Ok(())
    }

    /// The last `limit` entries of the group's history, oldest first.
    pub fn history(&self, group_id: &[u8], limit: usize) -> ClientResult<Vec<HistoryEntry>> {
        let mut statement = self.conn.prepare(
            "SELECT id, position, at_ms, event FROM (
                 SELECT id, position, at_ms, event FROM confide_history WHERE group_id = ?1
                 ORDER BY position DESC, id DESC LIMIT ?2)
             ORDER BY position, id",
        )?;
        let rows = statement.query_map(params![group_id, limit as i64], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|row| {
            let (id, position, at_ms, json) = row?;
            entry(id, position, at_ms, &json)
        })
        .collect()
    }

    /// Every group's entries recorded after entry `after` (by
    /// [`HistoryEntry::id`]), in the order they were recorded: what a live
    /// view shows next. At most `limit`.
    pub fn history_since(
        &self,
        after: i64,
        limit: usize,
    ) -> ClientResult<Vec<(Vec<u8>, HistoryEntry)>> {
        let mut statement = self.conn.prepare(
            "SELECT group_id, id, position, at_ms, event FROM confide_history WHERE id > ?1
             ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![after, limit as i64], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        rows.map(|row| {
            let (group, id, position, at_ms, json) = row?;
            Ok((group, entry(id, position, at_ms, &json)?))
        })
        .collect()
    }

    /// Groups with a history, whether or not this device is still in them.
    pub fn groups_with_history(&self) -> ClientResult<Vec<Vec<u8>>> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT group_id FROM confide_history")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Messages from other members after what was marked read.
    pub fn unread(&self, group_id: &[u8]) -> ClientResult<u64> {
        let count: i64 = self.conn.query_row(
            "SELECT count(*) FROM confide_history
             WHERE group_id = ?1 AND counts_unread AND id > coalesce(
                 (SELECT read_up_to FROM confide_group_profiles WHERE group_id = ?1), 0)",
            [group_id],
            |row| row.get(0),
        )?;
        Ok(count as u64)
    }

    /// Marks everything in the group's history read.
    pub fn mark_read(&self, group_id: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_group_profiles (group_id, read_up_to)
             VALUES (?1, coalesce((SELECT max(id) FROM confide_history WHERE group_id = ?1), 0))
             ON CONFLICT (group_id) DO UPDATE SET read_up_to = excluded.read_up_to",
            [group_id],
        )?;
        Ok(())
    }

    pub fn group_profile(&self, group_id: &[u8]) -> ClientResult<GroupProfileRecord> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, topic FROM confide_group_profiles WHERE group_id = ?1",
                [group_id],
                |row| {
                    Ok(GroupProfileRecord {
                        name: row.get(0)?,
                        topic: row.get(1)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    pub fn set_group_profile(
        &self,
        group_id: &[u8],
        name: &str,
        topic: Option<&str>,
    ) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_group_profiles (group_id, name, topic) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, topic = excluded.topic",
            params![group_id, name, topic],
        )?;
        Ok(())
    }
}
