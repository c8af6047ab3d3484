//! The PostgreSQL [`Store`]: deadpool-postgres connections, the schema from
//! `migrations/`, and one module per concern with each query next to the
//! function that runs it.
//!
//! Query functions take `&impl GenericClient`, so the same function runs on a
//! pooled connection or inside a transaction. Every change to a group happens
//! in one transaction that first takes the group's row lock
//! (`SELECT ... FOR UPDATE` on `groups`), which is what makes sequence numbers
//! gap-free and the order of visible rows equal to sequence order.

pub mod availability;
mod clients;
mod delivery;
mod devices;
mod groups;
mod key_packages;
mod links;
mod retention;
/// Scratch databases, for the tests and the tools (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::{
    AppendOutcome, ClaimedKeyPackage, ClientRecord, CommitOutcome, CommitRecord, DedupKey,
    KeyPackageCount, KeyPackageRecord, LinkAnswer, LinkAnswered, LinkOffer, LinkPosted, Membership,
    NewDevice, NewGroup, NewMessage, PruneReport, RegisteredClient, Registration, SessionRecord,
    Store, StoreError, StoreResult, StoredGroupState, UserDevices,
};
use crate::domain::{ClientId, GroupEntry, GroupId, InboxEntry, InboxItem, StreamRef};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Key of the advisory lock that serialises migrations when several replicas
/// start at once (an arbitrary constant: "confide" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_6f_6e_66_69_64_65;

/// The deployment store: one PostgreSQL database shared by every DS replica.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    availability: Arc<availability::Availability>,
}

/// Longest a new connection to PostgreSQL may take, unless the URL says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a call waits for a free pooled connection, or for a new one.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password, so only the pool's shape is shown.
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PostgresStore {
    /// Builds a pool of at most `max_connections` connections to `url` (a
    /// `postgres://` URL or a libpq key-value string) and checks that the
    /// database answers, so a wrong URL fails at start-up rather than on the
    /// first request. An unreachable database is `StoreError::Unavailable`.
    pub async fn connect(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let availability = availability::Availability::new(config.clone());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|err| StoreError::Backend(Box::new(err)))?;
        drop(pool.get().await?);
        Ok(Self { pool, availability })
    }

    /// Whether PostgreSQL can be reached, as its watchdog
    /// ([`availability::watch`]) finds.
    pub fn availability(&self) -> Arc<availability::Availability> {
        self.availability.clone()
    }

    /// Applies the migrations in `migrations/` that this database lacks. Safe
    /// to call from several replicas at once: an advisory lock makes them take
    /// turns.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await?;
        conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let report = embedded::migrations::runner()
            .run_async(&mut **conn)
            .await
            .map_err(|err| StoreError::Backend(Box::new(err)));
        conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        report.map(drop)
    }

    /// The connection pool, for callers that need PostgreSQL itself (the
    /// tests' and tools' own queries).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// What other replicas announced on the bus (`crate::bus`), on one
    /// pooled connection: for each group its log entries in `runs` (each an
    /// inclusive range of seqs), and for each client its inbox entries from
    /// the start of each run on, as many as the run is long; in sequence
    /// order per stream.
    pub(crate) async fn read_runs(
        &self,
        group_runs: Vec<(GroupId, Vec<RangeInclusive<u64>>)>,
        inbox_runs: Vec<(ClientId, Vec<RangeInclusive<u64>>)>,
    ) -> StoreResult<(Vec<GroupEntry>, Vec<(ClientId, InboxEntry)>)> {
        /// A run as a read: after, up to and including, and how many.
        fn bounds(run: &RangeInclusive<u64>) -> (u64, u64, u32) {
            let len = run.end() - run.start() + 1;
            (
                run.start() - 1,
                *run.end(),
                u32::try_from(len).unwrap_or(u32::MAX),
            )
        }
        let conn = self.pool.get().await?;
        let mut group_entries = Vec::new();
        for (group_id, runs) in group_runs {
            for run in runs {
                let (after, until, limit) = bounds(&run);
                group_entries
                    .extend(groups::read_log(&conn, &group_id, after, Some(until), limit).await?);
            }
        }
        let mut inbox_entries = Vec::new();
        for (client, runs) in inbox_runs {
            for run in runs {
                let (after, _, limit) = bounds(&run);
                for entry in delivery::read_inbox(&conn, &client, after, limit).await? {
                    inbox_entries.push((client.clone(), entry));
                }
            }
        }
        Ok((group_entries, inbox_entries))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn register_client(&self, device: &NewDevice) -> StoreResult<Registration> {
        self.availability
            .guard(async { devices::register(&self.pool, device).await })
            .await
    }

    async fn client(&self, id: &ClientId) -> StoreResult<Option<ClientRecord>> {
        Ok(self
            .registered_client(id)
            .await?
            .filter(|client| !client.removed)
            .map(|client| client.record))
    }

    async fn registered_client(&self, id: &ClientId) -> StoreResult<Option<RegisteredClient>> {
        self.availability
            .guard(async { clients::registered(&self.pool.get().await?, id).await })
            .await
    }

    async fn devices(&self, user: &str) -> StoreResult<Vec<ClientId>> {
        self.availability
            .guard(async { clients::devices(&self.pool.get().await?, user).await })
            .await
    }

    async fn identity_key(&self, user: &str) -> StoreResult<Option<Vec<u8>>> {
        self.availability
            .guard(async { devices::identity_key(&self.pool.get().await?, user).await })
            .await
    }

    async fn user_devices(&self, user: &str) -> StoreResult<UserDevices> {
        self.availability
            .guard(async { devices::user_devices(&self.pool.get().await?, user).await })
            .await
    }

    async fn remove_client(&self, id: &ClientId, revocation: Option<&[u8]>) -> StoreResult<bool> {
        self.availability
            .guard(async {
                let mut conn = self.pool.get().await?;
                let tx = conn.transaction().await?;
                let removed = clients::remove(&tx, id, revocation).await?;
                tx.commit().await?;
                Ok(removed)
            })
            .await
    }

    async fn revoke_session(&self, token_hash: &DedupKey) -> StoreResult<()> {
        self.availability
            .guard(async { clients::revoke_session(&self.pool.get().await?, token_hash).await })
            .await
    }

    async fn put_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        expires_at: SystemTime,
    ) -> StoreResult<()> {
        self.availability
            .guard(async {
                clients::put_challenge(&self.pool.get().await?, client, challenge, expires_at).await
            })
            .await
    }

    async fn take_challenge(
        &self,
        client: &ClientId,
        challenge: &[u8],
        now: SystemTime,
    ) -> StoreResult<bool> {
        self.availability
            .guard(async {
                let expires_at =
                    clients::take_challenge(&self.pool.get().await?, client, challenge).await?;
                Ok(expires_at.is_some_and(|expires_at| expires_at > now))
            })
            .await
    }

    async fn put_session(
        &self,
        token_hash: &DedupKey,
        client: &ClientId,
        expires_at: SystemTime,
    ) -> StoreResult<()> {
        self.availability
            .guard(async {
                clients::put_session(&self.pool.get().await?, token_hash, client, expires_at).await
            })
            .await
    }

    async fn session(
        &self,
        token_hash: &DedupKey,
        now: SystemTime,
    ) -> StoreResult<Option<SessionRecord>> {
        self.availability
            .guard(async { clients::session(&self.pool.get().await?, token_hash, now).await })
            .await
    }

    async fn purge_expired(&self, now: SystemTime) -> StoreResult<u64> {
        self.availability
            .guard(async {
                let conn = self.pool.get().await?;
                Ok(clients::purge_expired(&conn, now).await?
                    + links::purge_expired(&conn, now).await?)
            })
            .await
    }

    async fn prune(&self, now: SystemTime, retention: Duration) -> StoreResult<PruneReport> {
        self.availability
            .guard(async {
                let cutoff = now.checked_sub(retention).unwrap_or(UNIX_EPOCH);
                let (log_entries, memberships) =
                    retention::prune_groups(&self.pool, cutoff).await?;
                let conn = self.pool.get().await?;
                Ok(PruneReport {
                    log_entries,
                    memberships,
                    inbox_entries: retention::prune_inbox(&conn, cutoff).await?,
                    key_packages: key_packages::prune_expired(&conn, now).await?,
                })
            })
            .await
    }

    async fn post_link_offer(
        &self,
        offer: &LinkOffer,
        max_pending: usize,
        now: SystemTime,
    ) -> StoreResult<LinkPosted> {
        self.availability
            .guard(async { links::post_offer(&self.pool, offer, max_pending, now).await })
            .await
    }

    async fn link_offer(
        &self,
        link_id: &[u8],
        now: SystemTime,
    ) -> StoreResult<Option<(String, Bytes)>> {
        self.availability
            .guard(async { links::offer(&self.pool.get().await?, link_id, now).await })
            .await
    }

    async fn post_link_answer(
        &self,
        link_id: &[u8],
        user: &str,
        sealed_answer: &Bytes,
        now: SystemTime,
    ) -> StoreResult<LinkAnswered> {
        self.availability
            .guard(async {
                links::post_answer(&self.pool.get().await?, link_id, user, sealed_answer, now).await
            })
            .await
    }

    async fn take_link_answer(&self, link_id: &[u8], now: SystemTime) -> StoreResult<LinkAnswer> {
        self.availability
            .guard(async { links::take_answer(&self.pool.get().await?, link_id, now).await })
            .await
    }

    async fn publish_key_packages(
        &self,
        client: &ClientId,
        key_packages: Vec<KeyPackageRecord>,
        last_resort: Option<KeyPackageRecord>,
    ) -> StoreResult<u32> {
        self.availability
            .guard(async {
                key_packages::publish(&self.pool, client, &key_packages, last_resort.as_ref()).await
            })
            .await
    }

    async fn claim_key_package(&self, client: &ClientId) -> StoreResult<Option<ClaimedKeyPackage>> {
        self.availability
            .guard(async { key_packages::claim(&self.pool.get().await?, client).await })
            .await
    }

    async fn take_low_pool_notice(&self, client: &ClientId) -> StoreResult<bool> {
        key_packages::take_low_pool_notice(&self.pool.get().await?, client).await
    }

    async fn count_key_packages(&self, client: &ClientId) -> StoreResult<KeyPackageCount> {
        self.availability
            .guard(async { key_packages::count(&self.pool.get().await?, client).await })
            .await
    }

    async fn create_group(&self, group: NewGroup) -> StoreResult<()> {
        self.availability
            .guard(async { groups::create(&self.pool, &group).await })
            .await
    }

    async fn group_state(&self, group_id: &GroupId) -> StoreResult<Option<StoredGroupState>> {
        self.availability
            .guard(async { groups::state(&self.pool.get().await?, group_id).await })
            .await
    }

    async fn group_state_version(&self, group_id: &GroupId) -> StoreResult<Option<u64>> {
        self.availability
            .guard(async { groups::state_version(&self.pool.get().await?, group_id).await })
            .await
    }

    async fn group_info(&self, group_id: &GroupId) -> StoreResult<Option<(u64, Bytes)>> {
        self.availability
            .guard(async { groups::group_info(&self.pool.get().await?, group_id).await })
            .await
    }

    async fn find_entry(
        &self,
        group_id: &GroupId,
        dedup_key: &DedupKey,
    ) -> StoreResult<Option<GroupEntry>> {
        self.availability
            .guard(async { groups::find_entry(&self.pool.get().await?, group_id, dedup_key).await })
            .await
    }

    async fn accept_commit(&self, commit: CommitRecord) -> StoreResult<CommitOutcome> {
        self.availability
            .guard(async { groups::accept_commit(&self.pool, &commit).await })
            .await
    }

    async fn append(&self, message: NewMessage) -> StoreResult<AppendOutcome> {
        self.availability
            .guard(async { groups::append(&self.pool, &message).await })
            .await
    }

    async fn append_batch(&self, messages: Vec<NewMessage>) -> Vec<StoreResult<AppendOutcome>> {
        let batch = self
            .availability
            .guard(async { groups::append_batch(&self.pool, &messages).await })
            .await;
        // A batch that could not be decided at once (a retry, a replay, a
        // message outside its epoch window, a failed transaction) is taken
        // message by message where it was left undecided; nothing of a
        // failed transaction was written.
        let decided = match batch {
            Ok(Some(decided)) => decided,
            Ok(None) => messages.iter().map(|_| None).collect(),
            Err(error) => {
                if !matches!(error, StoreError::Unavailable(_)) {
                    tracing::warn!(%error, messages = messages.len(), "an append batch failed; appending its messages one by one");
                }
                messages.iter().map(|_| None).collect()
            }
        };
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, decided) in messages.into_iter().zip(decided) {
            outcomes.push(match decided {
                Some(outcome) => outcome,
                None => self.append(message).await,
            });
        }
        outcomes
    }

    async fn user_in_group(&self, group_id: &GroupId, user: &str) -> StoreResult<bool> {
        self.availability
            .guard(async { groups::user_in_group(&self.pool.get().await?, group_id, user).await })
            .await
    }

    async fn membership(
        &self,
        client: &ClientId,
        group_id: &GroupId,
    ) -> StoreResult<Option<Membership>> {
        self.availability
            .guard(async { delivery::membership(&self.pool.get().await?, client, group_id).await })
            .await
    }

    async fn memberships(&self, client: &ClientId) -> StoreResult<Vec<Membership>> {
        self.availability
            .guard(async { delivery::memberships(&self.pool.get().await?, client).await })
            .await
    }

    async fn read_group(
        &self,
        client: &ClientId,
        group_id: &GroupId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<GroupEntry>> {
        self.availability
            .guard(async {
                delivery::read_group(&self.pool, client, group_id, after_seq, limit).await
            })
            .await
    }

    async fn read_inbox(
        &self,
        client: &ClientId,
        after_seq: u64,
        limit: u32,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.availability
            .guard(async {
                delivery::read_inbox(&self.pool.get().await?, client, after_seq, limit).await
            })
            .await
    }

    async fn push_inbox(&self, client: &ClientId, item: InboxItem) -> StoreResult<InboxEntry> {
        self.availability
            .guard(async {
                let mut conn = self.pool.get().await?;
                let tx = conn.transaction().await?;
                let entry = delivery::push_inbox(&tx, client, &item).await?;
                tx.commit().await?;
                Ok(entry)
            })
            .await
    }

    async fn ack(&self, client: &ClientId, stream: &StreamRef, seq: u64) -> StoreResult<()> {
        self.availability
            .guard(async {
                let conn = self.pool.get().await?;
                match stream {
                    StreamRef::Group(group_id) => {
                        delivery::ack_group(&conn, client, group_id, seq).await
                    }
                    StreamRef::Inbox => delivery::ack_inbox(&conn, client, seq).await,
                }
            })
            .await
    }

    async fn inbox_cursor(&self, client: &ClientId) -> StoreResult<u64> {
        self.availability
            .guard(async { delivery::inbox_cursor(&self.pool.get().await?, client).await })
            .await
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        if availability::unreachable(&err) {
            StoreError::Unavailable(Box::new(err))
        } else {
            StoreError::Backend(Box::new(err))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    /// Waiting for a connection too long, failing to make one (a refused or
    /// dropped connection, a server starting up) or a closed pool: the
    /// database is unavailable. A refused login, say, is not.
    fn from(err: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(inner) => inner.into(),
            PoolError::Timeout(_) | PoolError::Closed => StoreError::Unavailable(Box::new(err)),
            PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
                StoreError::Backend(Box::new(err))
            }
        }
    }
}

/// Turns a foreign-key violation (a row naming a client that is not
/// registered) into `NotFound("client")`; every other error is a backend one.
fn unknown_client(err: tokio_postgres::Error) -> StoreError {
    if err.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound("client")
    } else {
        err.into()
    }
}

/// A u64 to be stored in a bigint column; larger values cannot be stored.
fn to_db(value: u64, what: &'static str) -> StoreResult<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("{what} {value} is out of range").into()))
}

/// A u64 used only as a bound in a comparison: anything past the bigint range
/// compares like the largest bigint, which no stored value reaches.
fn bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A bigint column holding a u64 (the schema's CHECKs keep them non-negative).
fn from_db(value: i64) -> StoreResult<u64> {
    u64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("negative value {value} in the database").into()))
}

fn client_id(user: String, device: String) -> StoreResult<ClientId> {
    ClientId::new(user, device).map_err(|err| StoreError::Backend(Box::new(err)))
}

fn group_id(bytes: Vec<u8>) -> StoreResult<GroupId> {
    GroupId::new(bytes).map_err(|err| StoreError::Backend(Box::new(err)))
}

#[cfg(test)]
mod tests {
    crate::store::conformance::conformance_tests!(super::testing::fresh_database().await.0);

    /// `pg_notify` in a write transaction takes a database-wide lock that
    /// serialises every commit; replicas wake each other up on the bus.
    #[tokio::test]
    async fn nothing_in_the_schema_notifies_on_a_write() {
        let (store, _) = super::testing::fresh_database().await;
        let conn = store.pool.get().await.unwrap();
        let triggers: Vec<String> = conn
            .query(
                "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let notifying: Vec<String> = conn
            .query(
                "SELECT proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public' AND p.prosrc ILIKE '%notify%'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(triggers, Vec::<String>::new());
        assert_eq!(notifying, Vec::<String>::new());
    }
}
