//! The outbox (`confide_outbox`): application messages kept from before
//! they are first sent until the DS answers them, and the last answered
//! ones, for retries with the same idempotency key.

use rusqlite::params;

use super::StateDb;
use crate::error::ClientResult;

/// An application message on its way out, kept until the DS answers it.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Its place in the outbox: messages go out in this order.
    pub id: i64,
    pub group_id: Vec<u8>,
    /// The idempotency key the DS knows it by.
    pub message_id: Vec<u8>,
    /// The MLS PrivateMessage exactly as sent: a resend must carry the same
    /// bytes, which the DS may already have stored under `message_id`.
    pub message: Vec<u8>,
    /// The epoch `message` was encrypted in.
    pub epoch: u64,
    /// The plaintext (MIMI content), to encrypt again if the DS refused
    /// `message` for its epoch (it then never stored it).
    pub body: Vec<u8>,
    /// Where it is in the group's log, once it was found there unanswered
    /// or the DS answered.
    pub seq: Option<u64>,
    /// The DS answered it with `seq`: kept a while so that a caller's retry
    /// with the same id sends the same bytes and gets that seq again.
    pub answered: bool,
}

/// Answered messages kept, per client, for retries with the same id.
const ANSWERED_KEPT: i64 = 1024;

/// The outbox: messages sent but not yet answered, and the last answered
/// ones.
impl StateDb {
    /// Keeps a message before it is first sent; returns its place.
    pub fn push_outgoing(
        &self,
        group_id: &[u8],
        message_id: &[u8],
        message: &[u8],
        epoch: u64,
        body: &[u8],
    ) -> ClientResult<i64> {
        self.conn.execute(
            "INSERT INTO confide_outbox (group_id, message_id, message, epoch, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![group_id, message_id, message, epoch as i64, body],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The oldest unanswered message kept after place `after`.
    pub fn next_outgoing(&self, after: i64) -> ClientResult<Option<Outgoing>> {
        Ok(self
            .outgoing_where("answered = 0 AND id > ?1", params![after])?
            .into_iter()
            .next())
    }

    /// The message of the group with this idempotency key, answered or not.
    pub fn outgoing_by_id(
        &self,
        group_id: &[u8],
        message_id: &[u8],
    ) -> ClientResult<Option<Outgoing>> {
        Ok(self
            .outgoing_where(
                "group_id = ?1 AND message_id = ?2",
                params![group_id, message_id],
            )?
            .pop())
    }

    /// The group's unanswered messages, oldest first.
    pub fn unanswered_outgoing(&self, group_id: &[u8]) -> ClientResult<Vec<Outgoing>> {
        self.outgoing_where("answered = 0 AND group_id = ?1", params![group_id])
    }

    fn outgoing_where(
        &self,
        condition: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> ClientResult<Vec<Outgoing>> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT id, group_id, message_id, message, epoch, body, seq, answered FROM confide_outbox
             WHERE {condition} ORDER BY id"
        ))?;
        let rows = statement.query_map(values, |row| {
            Ok(Outgoing {
                id: row.get(0)?,
                group_id: row.get(1)?,
                message_id: row.get(2)?,
                message: row.get(3)?,
                epoch: row.get::<_, i64>(4)? as u64,
                body: row.get(5)?,
                seq: row.get::<_, Option<i64>>(6)?.map(|seq| seq as u64),
                answered: row.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces a message's bytes after encrypting it again.
    pub fn reencrypted(&self, id: i64, message: &[u8], epoch: u64) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_outbox SET message = ?2, epoch = ?3 WHERE id = ?1",
            params![id, message, epoch as i64],
        )?;
        Ok(())
    }

    /// The DS answered the message with `seq`; it stays among the last
    /// answered ones.
    pub fn outgoing_answered(&self, id: i64, seq: u64) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_outbox SET answered = 1, seq = ?2 WHERE id = ?1",
            params![id, seq as i64],
        )?;
        self.conn.execute(
            "DELETE FROM confide_outbox WHERE answered = 1 AND id NOT IN
                 (SELECT id FROM confide_outbox WHERE answered = 1 ORDER BY id DESC LIMIT ?1)",
            [ANSWERED_KEPT],
        )?;
        Ok(())
    }

    /// Forgets a message the DS refused for good.
    pub fn outgoing_done(&self, id: i64) -> ClientResult<()> {
        self.conn
            .execute("DELETE FROM confide_outbox WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Notes that the unanswered message with exactly these bytes is entry
    /// `seq` of the group's log (the DS stored it; its answer was lost).
    /// Returns whether there was one.
    pub fn outgoing_in_log(&self, group_id: &[u8], message: &[u8], seq: u64) -> ClientResult<bool> {
        let found = self.conn.execute(
            "UPDATE confide_outbox SET seq = ?3
             WHERE group_id = ?1 AND message = ?2 AND seq IS NULL AND answered = 0",
            params![group_id, message, seq as i64],
        )?;
        Ok(found > 0)
    }
}
