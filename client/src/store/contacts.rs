//! Pinned identity keys (`confide_contacts`): per user, the identity key
//! first seen certifying its devices (trust on first use), whether the user
//! compared the safety number, and a different key seen since, which stays
//! unaccepted (its devices ghosts) until the user accepts it.

use rusqlite::{OptionalExtension, params};

use super::StateDb;
use crate::error::ClientResult;

/// One user's pinned identity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    pub user: String,
    /// The identity key its devices must be certified by.
    pub identity_key: Vec<u8>,
    /// When it was pinned, in seconds since the Unix epoch.
    pub first_seen: u64,
    /// Whether the safety number was compared and accepted
    /// (`confide verify USER --accept`).
    pub verified: bool,
    /// Another identity key seen certifying devices of the user since: an
    /// identity change, not accepted yet.
    pub changed_to: Option<Vec<u8>>,
}

impl StateDb {
    pub fn contact(&self, user: &str) -> ClientResult<Option<Contact>> {
        Ok(self
            .conn
            .query_row(
                "SELECT user, identity_key, first_seen, verified, changed_to
                 FROM confide_contacts WHERE user = ?1",
                [user],
                contact,
            )
            .optional()?)
    }

    /// Every pinned user, by name.
    pub fn contacts(&self) -> ClientResult<Vec<Contact>> {
        let mut statement = self.conn.prepare(
            "SELECT user, identity_key, first_seen, verified, changed_to
             FROM confide_contacts ORDER BY user",
        )?;
        let rows = statement.query_map([], contact)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Pins `identity_key` for `user` unless a key is pinned already.
    pub fn pin_contact(&self, user: &str, identity_key: &[u8], now: u64) -> ClientResult<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO confide_contacts (user, identity_key, first_seen, verified)
             VALUES (?1, ?2, ?3, 0)",
            params![user, identity_key, now as i64],
        )?;
        Ok(())
    }

    /// Records another identity key seen for `user`, not accepted.
    pub fn set_contact_changed(&self, user: &str, identity_key: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_contacts SET changed_to = ?2 WHERE user = ?1",
            params![user, identity_key],
        )?;
        Ok(())
    }

    /// The user compared the safety number for `identity_key`: it is pinned
    /// (replacing the old key, if it was a change) and verified.
    pub fn accept_contact(&self, user: &str, identity_key: &[u8]) -> ClientResult<()> {
        self.conn.execute(
            "UPDATE confide_contacts SET identity_key = ?2, verified = 1, changed_to = NULL
             WHERE user = ?1",
            params![user, identity_key],
        )?;
        Ok(())
    }
}

fn contact(row: &rusqlite::Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        user: row.get(0)?,
        identity_key: row.get(1)?,
        first_seen: row.get::<_, i64>(2)? as u64,
        verified: row.get(3)?,
        changed_to: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::store::{self, StateLocation};

    #[test]
    fn the_first_key_seen_stays_pinned_until_a_change_is_accepted() {
        let (_provider, db) = store::open(&StateLocation::Memory).expect("a state");
        db.pin_contact("bob", b"first", 10).expect("pinning");
        db.pin_contact("bob", b"second", 20).expect("pinning again");
        let bob = db.contact("bob").expect("reading").expect("pinned");
        assert_eq!(
            (bob.identity_key.as_slice(), bob.first_seen),
            (&b"first"[..], 10)
        );
        assert!(!bob.verified);
        db.set_contact_changed("bob", b"second").expect("a change");
        let bob = db.contact("bob").expect("reading").expect("pinned");
        assert_eq!(bob.identity_key, b"first");
        assert_eq!(bob.changed_to.as_deref(), Some(&b"second"[..]));
        db.accept_contact("bob", b"second").expect("accepting");
        let bob = db.contact("bob").expect("reading").expect("pinned");
        assert_eq!(
            (bob.identity_key.as_slice(), bob.verified),
            (&b"second"[..], true)
        );
        assert_eq!(bob.changed_to, None);
        assert_eq!(db.contacts().expect("listing").len(), 1);
        assert_eq!(db.contact("carol").expect("reading"), None);
    }
}
