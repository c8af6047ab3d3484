//! Sessions the DS looked up recently, so an authenticated call costs no
//! database round trip.
//!
//! The store stays the truth, and nothing cached outlives what would end it:
//! - expiry is checked on every use, against the session's own end;
//! - a revoked session, and every session of a removed or re-keyed client,
//!   is forgotten when its [`Ending`] is applied here, which happens where
//!   live streams end ([`crate::hub::Hub::end`]): at once on the replica
//!   that ended it, and on the others when they hear of it;
//! - when this replica may have missed such news (its relay lost the
//!   connection the others announce on), everything is forgotten
//!   ([`crate::hub::Hub::mark_all_lagged`]);
//! - an entry is used for at most [`MAX_AGE`], a bound on staleness should
//!   news be lost without the relay noticing.
//!
//! A lookup that raced an ending (read from the store before the ending,
//! cached after it) must not bring the session back: every forgetting bumps
//! a generation, and a lookup caches its result only if the generation is
//! the one it started with.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::hub::{Ending, SessionHash};
use crate::store::SessionRecord;

/// Longest an entry is used before the store is asked again.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// Most sessions kept; past it, the cache starts over.
const MAX_ENTRIES: usize = 200_000;

struct Cached {
    record: SessionRecord,
    cached_at: Instant,
}

#[derive(Default)]
struct Entries {
    sessions: HashMap<SessionHash, Cached>,
    generation: u64,
}

/// See the module documentation.
#[derive(Default)]
pub struct SessionCache {
    entries: Mutex<Entries>,
}

/// Where the cache stood when a lookup started; see [`SessionCache::insert`].
#[derive(Clone, Copy, Debug)]
pub struct Generation(u64);

impl SessionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached session, if it is cached, young enough and not expired by
    /// `now`; otherwise the generation to hand to [`SessionCache::insert`]
    /// with what the store says.
    pub fn get(&self, session: &SessionHash, now: SystemTime) -> Result<SessionRecord, Generation> {
        let entries = self.lock();
        match entries.sessions.get(session) {
            Some(cached)
                if cached.cached_at.elapsed() < MAX_AGE && cached.record.expires_at > now =>
            {
                Ok(cached.record.clone())
            }
            _ => Err(Generation(entries.generation)),
        }
    }

    /// Caches what the store said of a session, unless something was
    /// forgotten since `generation` (the lookup may predate an ending).
    pub fn insert(&self, session: SessionHash, record: SessionRecord, generation: Generation) {
        let mut entries = self.lock();
        if entries.generation != generation.0 {
            return;
        }
        if entries.sessions.len() >= MAX_ENTRIES {
            entries.sessions.clear();
        }
        entries.sessions.insert(
            session,
            Cached {
                record,
                cached_at: Instant::now(),
            },
        );
    }

    /// Forgets the sessions `ending` ends.
    pub fn forget(&self, ending: &Ending) {
        let mut entries = self.lock();
        entries.generation += 1;
        match ending {
            Ending::SessionRevoked { session, .. } => {
                entries.sessions.remove(session);
            }
            Ending::ClientRemoved { client } | Ending::ClientRekeyed { client } => entries
                .sessions
                .retain(|_, cached| &cached.record.client != client),
        }
    }

    /// Forgets every session.
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.generation += 1;
        entries.sessions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClientId;

    fn record(user: &str, expires_in: Duration) -> SessionRecord {
        SessionRecord {
            client: ClientId::new(user, "phone").unwrap(),
            expires_at: SystemTime::now() + expires_in,
        }
    }

    fn cached(cache: &SessionCache, session: &SessionHash) -> Option<SessionRecord> {
        cache.get(session, SystemTime::now()).ok()
    }

    #[test]
    fn an_ended_session_is_forgotten_and_a_lookup_from_before_cannot_bring_it_back() {
        let cache = SessionCache::default();
        let session = [1; 32];
        let alice = record("alice", Duration::from_secs(600));
        let Err(generation) = cache.get(&session, SystemTime::now()) else {
            panic!("nothing is cached yet");
        };
        cache.insert(session, alice.clone(), generation);
        assert_eq!(cached(&cache, &session), Some(alice.clone()));

        let Err(before) = cache.get(&[2; 32], SystemTime::now()) else {
            panic!("not cached");
        };
        cache.forget(&Ending::SessionRevoked {
            client: alice.client.clone(),
            session,
        });
        assert_eq!(cached(&cache, &session), None);
        // Read from the store before the revocation, cached after it.
        cache.insert(session, alice, before);
        assert_eq!(cached(&cache, &session), None);
    }

    #[test]
    fn a_removed_clients_sessions_are_all_forgotten_and_others_kept() {
        let cache = SessionCache::default();
        let alice = record("alice", Duration::from_secs(600));
        let bob = record("bob", Duration::from_secs(600));
        for (session, record) in [([1; 32], &alice), ([2; 32], &alice), ([3; 32], &bob)] {
            let Err(generation) = cache.get(&session, SystemTime::now()) else {
                panic!("not cached");
            };
            cache.insert(session, record.clone(), generation);
        }
        cache.forget(&Ending::ClientRemoved {
            client: alice.client.clone(),
        });
        assert_eq!(cached(&cache, &[1; 32]), None);
        assert_eq!(cached(&cache, &[2; 32]), None);
        assert_eq!(cached(&cache, &[3; 32]), Some(bob));
        cache.clear();
        assert_eq!(cached(&cache, &[3; 32]), None);
    }

    #[test]
    fn an_expired_session_is_not_served_from_the_cache() {
        let cache = SessionCache::default();
        let session = [1; 32];
        let Err(generation) = cache.get(&session, SystemTime::now()) else {
            panic!("not cached");
        };
        cache.insert(session, record("alice", Duration::from_secs(5)), generation);
        assert!(cache.get(&session, SystemTime::now()).is_ok());
        assert!(
            cache
                .get(&session, SystemTime::now() + Duration::from_secs(6))
                .is_err()
        );
    }
}
