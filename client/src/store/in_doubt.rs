//! Commits in doubt: per group, the commit submitted for an epoch whose
//! verdict the client does not know yet (`confide_commits_in_doubt`).

use rusqlite::{OptionalExtension, params};

use super::StateDb;
use crate::error::ClientResult;

/// A commit submitted for a group's epoch whose verdict the client does not
/// know yet: what it sent, so it can recognise the commit in the log or
/// send the same bytes again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitInDoubt {
    pub epoch: u64,
    pub commit: Vec<u8>,
    /// Empty when the commit adds nobody.
    pub welcome: Vec<u8>,
    pub group_info: Vec<u8>,
}

impl StateDb {
    /// Records a commit about to be submitted, before it leaves: until
    /// [`StateDb::forget_commit_in_doubt`], the group's pending commit may
    /// have been accepted.
    pub fn set_commit_in_doubt(&self, group_id: &[u8], commit: &CommitInDoubt) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_commits_in_doubt (group_id, epoch, commit_message, welcome, group_info)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch,
                 commit_message = excluded.commit_message, welcome = excluded.welcome,
                 group_info = excluded.group_info",
            params![
                group_id,
                commit.epoch as i64,
                commit.commit,
                commit.welcome,
                commit.group_info
            ],
        )?;
        Ok(())
    }

    /// The group's commit whose verdict is unknown, if any.
    pub fn commit_in_doubt(&self, group_id: &[u8]) -> ClientResult<Option<CommitInDoubt>> {
        Ok(self
            .conn
            .query_row(
                "SELECT epoch, commit_message, welcome, group_info
                 FROM confide_commits_in_doubt WHERE group_id = ?1",
                [group_id],
                |row| {
                    Ok(CommitInDoubt {
                        epoch: row.get::<_, i64>(0)? as u64,
                        commit: row.get(1)?,
                        welcome: row.get(2)?,
                        group_info: row.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// The group's commit is settled: accepted, refused, or overtaken.
    pub fn forget_commit_in_doubt(&self, group_id: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "DELETE FROM confide_commits_in_doubt WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }
}
