//! The client's durable state: openmls's own SQLite storage for keys and group
//! state, plus Confide's tables (identity and per-stream progress) in the same
//! database file, so a client restarted from its file resumes every group.
//! The schema is made here ([`StateDb`]); the tables for commits in doubt,
//! the outbox, re-syncs, pinned identity keys, revoked devices and each
//! group's history, name and read position have their queries in
//! `in_doubt.rs`, `outbox.rs`, `resync.rs`, `contacts.rs`, `revoked.rs` and
//! `history.rs`.

use std::path::{Path, PathBuf};

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::{ClientError, ClientResult};
use crate::events::Event;

mod contacts;
mod history;
mod in_doubt;
mod outbox;
mod resync;
mod revoked;

pub use contacts::Contact;
pub(crate) use history::now_ms;
pub use history::{GroupProfileRecord, HistoryEntry};
pub use in_doubt::CommitInDoubt;
pub use outbox::Outgoing;

/// Where a client keeps its state.
#[derive(Clone, Debug)]
pub enum StateLocation {
    /// A SQLite file; the client can be restarted from it.
    File(PathBuf),
    /// Process memory, for tests and the demo.
    Memory,
}

#[derive(Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// openmls provider: RustCrypto for crypto and randomness, SQLite for storage.
pub struct Provider {
    crypto: RustCrypto,
    storage: SqliteStorageProvider<JsonCodec, Connection>,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = SqliteStorageProvider<JsonCodec, Connection>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

/// Which ordered stream a cursor belongs to: a group's log or the inbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Group(Vec<u8>),
    Inbox,
}

impl Stream {
    fn key(&self) -> &[u8] {
        match self {
            Stream::Group(id) => id,
            Stream::Inbox => b"",
        }
    }
}

/// Confide's own tables.
pub struct StateDb {
    conn: Connection,
}

pub struct StoredIdentity {
    pub user: String,
    pub device: String,
    pub signature_public_key: Vec<u8>,
    /// The user's identity public key (its private half is in openmls's
    /// key store, like the signature key).
    pub identity_public_key: Vec<u8>,
    /// The identity key's certificate for this device and signature key.
    pub certificate: Vec<u8>,
}

fn open_connection(location: &StateLocation, memory_name: &str) -> rusqlite::Result<Connection> {
    match location {
        StateLocation::File(path) => {
            let conn = Connection::open(path)?;
            // Write-ahead logging: one fsync per transaction instead of the
            // rollback journal's several; still synchronous = FULL, so what
            // was processed (and acknowledged to the DS) survives a crash.
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            Ok(conn)
        }
        // A named shared-cache memory database, so the openmls connection and
        // ours see the same data.
        StateLocation::Memory => Connection::open_with_flags(
            format!("file:{memory_name}?mode=memory&cache=shared"),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI,
        ),
    }
}

/// Opens the provider and Confide's tables at `location`. A state file must
/// exist already ([`create`] makes one): a mistyped path is an error, not a
/// new empty client.
pub fn open(location: &StateLocation) -> ClientResult<(Provider, StateDb)> {
    if let StateLocation::File(path) = location
        && !path.exists()
    {
        return Err(ClientError::NoStateFile(path.clone()));
    }
    open_existing(location)
}

/// Like [`open`], making the state file first if there is none. Returns
/// whether it made the file, so a registration that fails can [`remove`] it.
pub fn create(location: &StateLocation) -> ClientResult<(Provider, StateDb, bool)> {
    let created = match location {
        StateLocation::File(path) => create_private_file(path)
            .map_err(|e| ClientError::Invalid(format!("creating {}: {e}", path.display())))?,
        StateLocation::Memory => false,
    };
    let (provider, db) = open_existing(location)?;
    Ok((provider, db, created))
}

fn open_existing(location: &StateLocation) -> ClientResult<(Provider, StateDb)> {
    let memory_name = format!("confide-{}", uuid::Uuid::new_v4().simple());
    let db = StateDb::open(open_connection(location, &memory_name)?)?;
    let mut storage = SqliteStorageProvider::<JsonCodec, Connection>::new(open_connection(
        location,
        &memory_name,
    )?);
    storage
        .run_migrations()
        .map_err(|e| ClientError::Invalid(format!("client storage migration failed: {e}")))?;
    Ok((
        Provider {
            crypto: RustCrypto::default(),
            storage,
        },
        db,
    ))
}

/// Makes an empty state file readable by its owner only (it holds private
/// keys), in a directory made 0700 if it has to be made. SQLite gives the
/// `-wal` and `-shm` files it adds the mode of the database file. Returns
/// false if the file was there already.
fn create_private_file(path: &Path) -> std::io::Result<bool> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;

    create_private_parent(path)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes the directory `path` goes in, 0700, if it is not there: it will
/// hold private keys (the state file, and the lock file beside it).
pub(crate) fn create_private_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    use std::os::unix::fs::DirBuilderExt;

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.exists()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(parent)?;
    }
    Ok(())
}

/// Deletes a state file and SQLite's side files (after a failed
/// registration: a file without a registered client is of no use).
pub fn remove(path: &Path) {
    // The lock file beside it (`lock.rs`) too: it was made for this state.
    for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        if let Err(error) = std::fs::remove_file(&file)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %file.display(), %error, "could not delete");
        }
    }
}

impl StateDb {
    fn open(conn: Connection) -> ClientResult<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS confide_identity (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 user TEXT NOT NULL,
                 device TEXT NOT NULL,
                 signature_public_key BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_user_identity (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 identity_public_key BLOB NOT NULL,
                 certificate BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_streams (
                 stream BLOB PRIMARY KEY,
                 processed INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_own_entries (
                 group_id BLOB NOT NULL,
                 seq INTEGER NOT NULL,
                 PRIMARY KEY (group_id, seq));
             CREATE TABLE IF NOT EXISTS confide_joined (
                 group_id BLOB PRIMARY KEY,
                 epoch INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_events (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 event TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_commits_in_doubt (
                 group_id BLOB PRIMARY KEY,
                 epoch INTEGER NOT NULL,
                 commit_message BLOB NOT NULL,
                 welcome BLOB NOT NULL,
                 group_info BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_revoked (
                 signature_public_key BLOB PRIMARY KEY,
                 client TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS confide_outbox (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 group_id BLOB NOT NULL,
                 message_id BLOB NOT NULL,
                 message BLOB NOT NULL,
                 epoch INTEGER NOT NULL,
                 body BLOB NOT NULL,
                 seq INTEGER,
                 answered INTEGER NOT NULL DEFAULT 0,
                 UNIQUE (group_id, message_id));
             CREATE TABLE IF NOT EXISTS confide_resyncs (
                 group_id BLOB PRIMARY KEY,
                 resynced_at INTEGER,
                 wanted TEXT,
                 in_doubt_epoch INTEGER,
                 commit_message BLOB,
                 group_info BLOB);
             CREATE TABLE IF NOT EXISTS confide_contacts (
                 user TEXT PRIMARY KEY,
                 identity_key BLOB NOT NULL,
                 first_seen INTEGER NOT NULL,
                 verified INTEGER NOT NULL DEFAULT 0,
                 changed_to BLOB);
             CREATE TABLE IF NOT EXISTS confide_history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 group_id BLOB NOT NULL,
                 position INTEGER NOT NULL,
                 at_ms INTEGER NOT NULL,
                 counts_unread INTEGER NOT NULL,
                 event TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS confide_history_by_group
                 ON confide_history (group_id, position, id);
             CREATE TABLE IF NOT EXISTS confide_group_profiles (
                 group_id BLOB PRIMARY KEY,
                 name TEXT,
                 topic TEXT,
                 read_up_to INTEGER NOT NULL DEFAULT 0);",
        )?;
        Ok(Self { conn })
    }

    /// The client this state holds. A state made before devices carried
    /// certificates has none, and is refused: its device must be linked
    /// again.
    pub fn identity(&self) -> ClientResult<Option<StoredIdentity>> {
        let identity = self
            .conn
            .query_row(
                "SELECT user, device, signature_public_key, identity_public_key, certificate
                 FROM confide_identity LEFT JOIN confide_user_identity USING (id)
                 WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Vec<u8>>(2)?,
                        row.get::<_, Option<Vec<u8>>>(3)?,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((user, device, signature_public_key, identity_key, certificate)) = identity else {
            return Ok(None);
        };
        let (Some(identity_public_key), Some(certificate)) = (identity_key, certificate) else {
            return Err(ClientError::Invalid(
                "this state file predates device certificates; register the device again under a new name"
                    .into(),
            ));
        };
        Ok(Some(StoredIdentity {
            user,
            device,
            signature_public_key,
            identity_public_key,
            certificate,
        }))
    }

    pub fn save_identity(&self, identity: &StoredIdentity) -> ClientResult<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO confide_identity (id, user, device, signature_public_key)
             VALUES (1, ?1, ?2, ?3)",
            params![
                identity.user,
                identity.device,
                identity.signature_public_key
            ],
        )?;
        tx.execute(
            "INSERT INTO confide_user_identity (id, identity_public_key, certificate)
             VALUES (1, ?1, ?2)",
            params![identity.identity_public_key, identity.certificate],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Highest sequence number of the stream this client has processed.
    pub fn processed(&self, stream: &Stream) -> ClientResult<u64> {
        let seq: Option<i64> = self
            .conn
            .query_row(
                "SELECT processed FROM confide_streams WHERE stream = ?1",
                [stream.key()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(seq.unwrap_or(0) as u64)
    }

    pub fn set_processed(&self, stream: &Stream, seq: u64) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_streams (stream, processed) VALUES (?1, ?2)
             ON CONFLICT (stream) DO UPDATE SET processed = max(processed, excluded.processed)",
            params![stream.key(), seq as i64],
        )?;
        Ok(())
    }

    /// Keeps an event until the application takes it; returns its number.
    pub fn push_event(&self, event: &Event) -> ClientResult<i64> {
        let json = serde_json::to_string(event)
            .map_err(|e| ClientError::Invalid(format!("storing an event: {e}")))?;
        self.conn
            .execute("INSERT INTO confide_events (event) VALUES (?1)", [json])?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Events not yet taken by the application, oldest first.
    pub fn events(&self) -> ClientResult<Vec<(i64, Event)>> {
        let mut statement = self
            .conn
            .prepare("SELECT id, event FROM confide_events ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (id, json) = row?;
            let event = serde_json::from_str(&json)
                .map_err(|e| ClientError::Invalid(format!("a stored event: {e}")))?;
            Ok((id, event))
        })
        .collect()
    }

    /// Forgets the events up to `id`: the application has them.
    pub fn events_taken(&self, id: i64) -> ClientResult<()> {
        self.conn
            .execute("DELETE FROM confide_events WHERE id <= ?1", [id])?;
        Ok(())
    }

    pub fn forget_stream(&self, stream: &Stream) -> ClientResult<()> {
        self.conn.execute(
            "DELETE FROM confide_streams WHERE stream = ?1",
            [stream.key()],
        )?;
        Ok(())
    }

    /// Groups this client tracks.
    pub fn groups(&self) -> ClientResult<Vec<Vec<u8>>> {
        let mut statement = self
            .conn
            .prepare("SELECT stream FROM confide_streams WHERE stream <> x''")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the epoch this client joined a group at (by a Welcome).
    pub fn set_joined_epoch(&self, group_id: &[u8], epoch: u64) -> ClientResult<()> {
        self.conn.execute(
            "INSERT INTO confide_joined (group_id, epoch) VALUES (?1, ?2)
             ON CONFLICT (group_id) DO UPDATE SET epoch = excluded.epoch",
            params![group_id, epoch as i64],
        )?;
        Ok(())
    }

    /// The epoch this client joined the group at; 0 for a group it created.
    pub fn joined_epoch(&self, group_id: &[u8]) -> ClientResult<u64> {
        let epoch: Option<i64> = self
            .conn
            .query_row(
                "SELECT epoch FROM confide_joined WHERE group_id = ?1",
                [group_id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(epoch.unwrap_or(0) as u64)
    }

    /// Records that `seq` of a group is this client's own entry, already applied.
    pub fn mark_own(&self, group_id: &[u8], seq: u64) -> ClientResult<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO confide_own_entries (group_id, seq) VALUES (?1, ?2)",
            params![group_id, seq as i64],
        )?;
        Ok(())
    }

    /// Whether `seq` is this client's own entry; forgets it once asked.
    pub fn take_own(&self, group_id: &[u8], seq: u64) -> ClientResult<bool> {
        let removed = self.conn.execute(
            "DELETE FROM confide_own_entries WHERE group_id = ?1 AND seq = ?2",
            params![group_id, seq as i64],
        )?;
        Ok(removed > 0)
    }
}

/// Path of a client's state file inside a directory.
pub fn default_state_file(dir: &Path, user: &str, device: &str) -> PathBuf {
    dir.join(format!("{user}-{device}.sqlite"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_missing_state_file_says_to_register_and_creates_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("typo").join("alice.db");
        let error = open(&StateLocation::File(path.clone()))
            .err()
            .expect("no state file to open");
        assert!(matches!(error, ClientError::NoStateFile(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "no state file at {}; run `confide register` first",
                path.display()
            )
        );
        assert!(!path.parent().expect("a parent").exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_new_state_file_its_side_files_and_its_new_directory_are_private() {
        use std::os::unix::fs::PermissionsExt;

        let mode = |path: &Path| {
            std::fs::metadata(path)
                .unwrap_or_else(|e| panic!("{path:?}: {e}"))
                .permissions()
                .mode()
                & 0o777
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("confide").join("alice.db");
        let location = StateLocation::File(path.clone());
        let (_provider, db, created) = create(&location).expect("creating the state");
        assert!(created);
        db.set_processed(&Stream::Inbox, 1).expect("a write");
        assert_eq!(mode(&dir.path().join("confide")), 0o700);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            assert_eq!(mode(&file), 0o600, "{file:?}");
        }
        let (_, _, created) = create(&location).expect("opening it again");
        assert!(!created, "the file was there already");
    }
}
