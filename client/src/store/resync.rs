//! Re-syncs by external commit (`confide_resyncs`), per group: the epoch this
//! client last rejoined at (it rejoins at most once per epoch), a resync it
//! decided on but has not done yet (so a stop does not forget it), and the
//! external commit it submitted whose verdict it does not know yet.

use rusqlite::{OptionalExtension, params};

use super::{CommitInDoubt, StateDb};
use crate::error::ClientResult;

/// A `confide_resyncs` row's external commit in doubt: epoch, commit and
/// GroupInfo, all NULL when there is none.
type InDoubtRow = (Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>);

impl StateDb {
    /// The epoch this client last rejoined the group at by external commit.
    pub fn resynced_at(&self, group_id: &[u8]) -> ClientResult<Option<u64>> {
        let epoch: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT resynced_at FROM confide_resyncs WHERE group_id = ?1",
                [group_id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(epoch.flatten().map(|e| e as u64))
    }

    /// Records that this client is stuck in the group and must rejoin it.
    pub fn want_resync(&self, group_id: &[u8], reason: &str) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_resyncs (group_id, wanted) VALUES (?1, ?2)
             ON CONFLICT (group_id) DO UPDATE SET wanted = excluded.wanted",
            params![group_id, reason],
        )?;
        Ok(())
    }

    /// The groups this client decided to rejoin, with why.
    pub fn wanted_resyncs(&self) -> ClientResult<Vec<(Vec<u8>, String)>> {
        let mut statement = self.conn.prepare(
            "SELECT group_id, wanted FROM confide_resyncs WHERE wanted IS NOT NULL ORDER BY group_id",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the external commit about to be submitted, before it leaves.
    pub fn set_resync_in_doubt(&self, group_id: &[u8], commit: &CommitInDoubt) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_resyncs (group_id, in_doubt_epoch, commit_message, group_info)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id) DO UPDATE SET in_doubt_epoch = excluded.in_doubt_epoch,
                 commit_message = excluded.commit_message, group_info = excluded.group_info",
            params![
                group_id,
                commit.epoch as i64,
                commit.commit,
                commit.group_info
            ],
        )?;
        Ok(())
    }

    /// The external commit submitted for the group whose verdict is unknown.
    pub fn resync_in_doubt(&self, group_id: &[u8]) -> ClientResult<Option<CommitInDoubt>> {
        let row: Option<InDoubtRow> = self
            .conn
            .query_row(
                "SELECT in_doubt_epoch, commit_message, group_info
                 FROM confide_resyncs WHERE group_id = ?1",
                [group_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()?;
        Ok(match row {
            Some((Some(epoch), Some(commit), Some(group_info))) => Some(CommitInDoubt {
                epoch: epoch as u64,
                commit,
                welcome: Vec::new(),
                group_info,
            }),
            _ => None,
        })
    }

    /// The external commit was refused: nothing of it stays.
    pub fn forget_resync_in_doubt(&self, group_id: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_resyncs SET in_doubt_epoch = NULL, commit_message = NULL,
                 group_info = NULL WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }

    /// The group took the external commit: this client rejoined at `epoch`.
    pub fn resynced(&self, group_id: &[u8], epoch: u64) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_resyncs (group_id, resynced_at) VALUES (?1, ?2)
             ON CONFLICT (group_id) DO UPDATE SET resynced_at = excluded.resynced_at,
                 wanted = NULL, in_doubt_epoch = NULL, commit_message = NULL, group_info = NULL",
            params![group_id, epoch as i64],
        )?;
        Ok(())
    }

    /// The client no longer rejoins the group (it left it, or gave up).
    pub fn forget_resync(&self, group_id: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_resyncs SET wanted = NULL, in_doubt_epoch = NULL,
                 commit_message = NULL, group_info = NULL WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }
}
