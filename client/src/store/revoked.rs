//! Devices this client knows are revoked (it revoked them, or saw their
//! user's revocation): their signature keys are never added to a group
//! again, whatever the DS hands out.

use rusqlite::{OptionalExtension, params};

use super::StateDb;
use crate::error::ClientResult;

impl StateDb {
    pub fn save_revoked(&self, client: &str, signature_public_key: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO confide_revoked (signature_public_key, client) VALUES (?1, ?2)",
            params![signature_public_key, client],
        )?;
        Ok(())
    }

    pub fn is_revoked(&self, signature_public_key: &[u8]) -> ClientResult<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM confide_revoked WHERE signature_public_key = ?1",
                params![signature_public_key],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
