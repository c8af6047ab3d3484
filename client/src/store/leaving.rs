//! Groups this client is leaving (`confide_leaving`): it proposed its own
//! removal and waits for another member to commit it. Proposals live for
//! one epoch, so the row keeps the epoch they were made for: a group that
//! moved past it without removing this client gets them again, after a
//! restart too.

use rusqlite::params;

use super::StateDb;
use crate::error::ClientResult;

impl StateDb {
    /// Records that this client is leaving the group, with the epoch its
    /// removal was proposed in (`None`: not proposed yet, or without a
    /// verdict from the DS).
    pub fn set_leaving(&self, group_id: &[u8], proposed_in: Option<u64>) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_leaving (group_id, proposed_in) VALUES (?1, ?2)
             ON CONFLICT (group_id) DO UPDATE SET proposed_in = excluded.proposed_in",
            params![group_id, proposed_in.map(|e| e as i64)],
        )?;
        Ok(())
    }

    /// The groups this client is leaving, each with the epoch its removal
    /// was last proposed in.
    pub fn leaving(&self) -> ClientResult<Vec<(Vec<u8>, Option<u64>)>> {
        let mut statement = self
            .conn
            .prepare("SELECT group_id, proposed_in FROM confide_leaving ORDER BY group_id")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.map(|e| e as u64)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The client is out of the group, or gave up leaving it.
    pub fn forget_leaving(&self, group_id: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "DELETE FROM confide_leaving WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }
}
