//! The run's own PostgreSQL database, and what the benchmark reads from it
//! directly: server settings, the size of the group log, the stored entries.

use std::sync::Arc;

use bytes::Bytes;
use confide_ds::store::postgres::testing::with_database;
use rand::RngCore;
use serde::Serialize;
use tokio_postgres::{Client, NoTls};

use super::IngressError;
use super::load::{CallFuture, Caller};

/// Prefix of the databases this tool creates (and drops when it is done).
pub const DATABASE_PREFIX: &str = "confide_ingress_";

/// A database created for one run on the server named by the admin URL.
pub struct RunDatabase {
    admin_url: String,
    pub name: String,
    /// The new database's URL, for the DS.
    pub url: String,
    /// A connection of the benchmark's own to it, for measuring.
    pub inspector: Client,
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

impl RunDatabase {
    /// Creates `confide_ingress_<unix seconds>_<uuid>` (empty; the DS
    /// migrates it when it opens it).
    pub async fn create(admin_url: &str) -> Result<Self, IngressError> {
        let admin = connect(admin_url)
            .await
            .map_err(|source| IngressError::Unreachable {
                url: admin_url.to_owned(),
                source,
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = format!("{DATABASE_PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| IngressError::Database(format!("creating database {name}: {e}")))?;
        let url = with_database(admin_url, &name);
        let inspector = connect(&url)
            .await
            .map_err(|e| IngressError::Database(format!("connecting to {name}: {e}")))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
            inspector,
        })
    }

    /// Drops the database, closing whatever connections are left on it.
    pub async fn drop_database(self) -> Result<(), IngressError> {
        drop(self.inspector);
        let admin = connect(&self.admin_url).await.map_err(|e| {
            IngressError::Database(format!("connecting to drop {}: {e}", self.name))
        })?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(|e| IngressError::Database(format!("dropping {}: {e}", self.name)))
    }

    /// Callers that each insert one row of `payload_len` random bytes per
    /// call into a table of their own (`bench_insert`, not the DS's schema),
    /// one transaction per row, over `connections` connections: the most
    /// durable commits/s this server gives these callers, the floor under
    /// anything the DS does per message.
    pub async fn insert_callers(
        &self,
        connections: usize,
        concurrency: usize,
        payload_len: usize,
    ) -> Result<Vec<impl Caller + use<>>, IngressError> {
        let failed =
            |e: tokio_postgres::Error| IngressError::Database(format!("bench_insert: {e}"));
        self.inspector
            .batch_execute(
                "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload bytea NOT NULL)",
            )
            .await
            .map_err(failed)?;
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            let client = connect(&self.url).await.map_err(failed)?;
            let insert = client
                .prepare("INSERT INTO bench_insert (payload) VALUES ($1)")
                .await
                .map_err(failed)?;
            clients.push((Arc::new(client), insert));
        }
        Ok((0..concurrency)
            .map(|index| {
                let (client, insert) = clients[index % clients.len()].clone();
                let mut payload = vec![0u8; payload_len];
                rand::rng().fill_bytes(&mut payload);
                let payload = Bytes::from(payload);
                move || -> Option<CallFuture> {
                    let (client, insert, payload) =
                        (client.clone(), insert.clone(), payload.clone());
                    Some(Box::pin(async move {
                        client
                            .execute(&insert, &[&payload.as_ref()])
                            .await
                            .map(|_| None)
                            .map_err(|e| tonic::Status::internal(e.to_string()))
                    }))
                }
            })
            .collect())
    }

    /// What makes a commit durable on this server.
    pub async fn settings(&self) -> Result<ServerSettings, IngressError> {
        let show = |setting: &'static str| async move {
            self.inspector
                .query_one(&format!("SHOW {setting}"), &[])
                .await
                .map(|row| row.get::<_, String>(0))
                .map_err(|e| IngressError::Database(format!("SHOW {setting}: {e}")))
        };
        Ok(ServerSettings {
            server_version: show("server_version").await?,
            synchronous_commit: show("synchronous_commit").await?,
            fsync: show("fsync").await?,
            wal_sync_method: show("wal_sync_method").await?,
        })
    }

    /// The on-disk size of `group_log`, by part.
    pub async fn log_size(&self) -> Result<LogSize, IngressError> {
        let row = self
            .inspector
            .query_one(
                "SELECT pg_total_relation_size(c.oid),
                        pg_relation_size(c.oid, 'main'),
                        pg_indexes_size(c.oid),
                        coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
                 FROM pg_class c WHERE c.oid = 'group_log'::regclass",
                &[],
            )
            .await
            .map_err(|e| IngressError::Database(format!("measuring group_log: {e}")))?;
        Ok(LogSize {
            total: row.get(0),
            heap: row.get(1),
            indexes: row.get(2),
            toast: row.get(3),
        })
    }

    /// How `group_log` grew since `before` by part, its heap counted as the
    /// pages that hold the groups' application messages
    /// ([`Self::heap_bytes_holding`]).
    pub async fn log_growth(
        &self,
        before: LogSize,
        group_ids: &[&[u8]],
    ) -> Result<LogSize, IngressError> {
        let grown = self.log_size().await?.growth_since(before);
        Ok(grown.with_heap(self.heap_bytes_holding(group_ids).await?))
    }

    /// Bytes of the heap pages that hold the groups' application messages:
    /// what those messages occupy, whatever the table's size did. Growth of
    /// the heap's file is no measure of a batch: PostgreSQL extends a table
    /// by many pages at once while callers contend for it, so one batch
    /// grows it by more than it needs and the next fits into those pages
    /// and seems to cost nothing.
    async fn heap_bytes_holding(&self, group_ids: &[&[u8]]) -> Result<i64, IngressError> {
        let row = self
            .inspector
            .query_one(
                "SELECT count(DISTINCT (ctid::text::point)[0])::int8
                        * current_setting('block_size')::int8
                 FROM group_log WHERE group_id = ANY($1) AND kind = 3",
                &[&group_ids],
            )
            .await
            .map_err(|e| IngressError::Database(format!("finding the log's pages: {e}")))?;
        Ok(row.get(0))
    }

    /// The sequence numbers of the group's application messages, in order.
    pub async fn application_seqs(&self, group_id: &[u8]) -> Result<Vec<u64>, IngressError> {
        let rows = self
            .inspector
            .query(
                "SELECT seq FROM group_log WHERE group_id = $1 AND kind = 3 ORDER BY seq",
                &[&group_id],
            )
            .await
            .map_err(|e| IngressError::Database(format!("reading the group log: {e}")))?;
        Ok(rows
            .iter()
            .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
            .collect())
    }

    /// Average stored row and message sizes of the group's application
    /// messages, as PostgreSQL counts them (`pg_column_size`).
    pub async fn row_sizes(&self, group_id: &[u8]) -> Result<RowSizes, IngressError> {
        let row = self
            .inspector
            .query_one(
                "SELECT avg(pg_column_size(l.*))::float8, avg(pg_column_size(l.message))::float8
                 FROM group_log l WHERE group_id = $1 AND kind = 3",
                &[&group_id],
            )
            .await
            .map_err(|e| IngressError::Database(format!("measuring rows: {e}")))?;
        Ok(RowSizes {
            row_bytes: row.get::<_, Option<f64>>(0).unwrap_or_default(),
            message_column_bytes: row.get::<_, Option<f64>>(1).unwrap_or_default(),
        })
    }
}

/// PostgreSQL's durability settings during the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerSettings {
    pub server_version: String,
    /// `on` for the durable figure the target is about.
    pub synchronous_commit: String,
    pub fsync: String,
    pub wal_sync_method: String,
}

/// Bytes of `group_log` on disk; `total` = heap (all forks) + indexes + TOAST.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSize {
    pub total: i64,
    pub heap: i64,
    pub indexes: i64,
    pub toast: i64,
}

impl LogSize {
    /// This growth with the heap's share replaced by the bytes of the pages
    /// that hold the rows measured (`RunDatabase::heap_bytes_holding`).
    fn with_heap(self, heap: i64) -> LogSize {
        LogSize {
            total: heap + self.indexes + self.toast,
            heap,
            ..self
        }
    }

    fn growth_since(self, before: LogSize) -> LogSize {
        LogSize {
            total: self.total - before.total,
            heap: self.heap - before.heap,
            indexes: self.indexes - before.indexes,
            toast: self.toast - before.toast,
        }
    }
}

/// Average sizes of stored log rows.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowSizes {
    /// The whole row's data (without the 4-byte line pointer).
    pub row_bytes: f64,
    /// The `message` column, with its varlena header.
    pub message_column_bytes: f64,
}
