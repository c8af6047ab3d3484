//! A fresh, migrated database per test, shared by this crate's tests, the
//! end-to-end tests and the tools that make scratch databases. Behind the
//! `testing` feature, so a production build does not carry it.

use tokio_postgres::NoTls;

use super::PostgresStore;

/// Where the test PostgreSQL listens unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections each test store may open.
const TEST_POOL_SIZE: usize = 8;

/// Test databases older than this are dropped by the next test that starts,
/// so a long-lived machine does not accumulate them; younger ones stay for a
/// post-mortem (and may belong to tests running right now).
const KEEP_TEST_DATABASES_SECS: u64 = 3600;

const TEST_DATABASE_PREFIX: &str = "confide_test_";

/// Creates an empty database `confide_test_<unix seconds>_<uuid>` on the
/// server named by `DATABASE_URL` (default [`DEFAULT_DATABASE_URL`]), applies
/// the migrations and returns a store connected to it with the new database's
/// URL. Test databases are left behind for a post-mortem and dropped after
/// an hour by a later test.
///
/// # Panics
///
/// If PostgreSQL cannot be reached, with a message saying how to start it,
/// and if creating or migrating the database fails.
pub async fn fresh_database() -> (PostgresStore, String) {
    let admin_url = admin_url();
    let url = create_database(&admin_url, TEST_DATABASE_PREFIX)
        .await
        .unwrap_or_else(|reason| panic!("{reason}"));
    let store = PostgresStore::connect(&url, TEST_POOL_SIZE)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to test database {url}: {err}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("cannot migrate test database {url}: {err}"));
    (store, url)
}

/// `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// Creates an empty database `<prefix><unix seconds>_<uuid>` on the server
/// `admin_url` names and returns its URL. Databases with the same prefix
/// older than an hour are dropped first. The error says how to start
/// PostgreSQL if it cannot be reached.
pub async fn create_database(admin_url: &str, prefix: &str) -> Result<String, String> {
    let (admin, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(|err| {
            format!(
                "PostgreSQL is not reachable at {admin_url}: start it with \
                 `pg_ctlcluster --skip-systemctl-redirect 15 main start` or set DATABASE_URL ({err})"
            )
        })?;
    let connection = tokio::spawn(connection);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    drop_stale_databases(&admin, prefix, now).await;
    let name = format!("{prefix}{now}_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|err| format!("cannot create database {name}: {err}"))?;
    drop(admin);
    let _ = connection.await;
    Ok(with_database(admin_url, &name))
}

/// Drops the database `url` names, connecting through `admin_url`.
pub async fn drop_database(admin_url: &str, url: &str) -> Result<(), String> {
    let name = database_of(url).ok_or_else(|| format!("no database named in {url}"))?;
    let (admin, connection) = tokio_postgres::connect(admin_url, NoTls)
        .await
        .map_err(|err| format!("PostgreSQL is not reachable at {admin_url}: {err}"))?;
    let connection = tokio::spawn(connection);
    let dropped = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(|err| format!("cannot drop database {name}: {err}"));
    drop(admin);
    let _ = connection.await;
    dropped
}

/// The database of a URL made by [`with_database`] (URL form only).
fn database_of(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let path = &rest[rest.find('/')? + 1..];
    let name = path.split('?').next()?;
    (!name.is_empty()).then_some(name)
}

/// Drops test databases created more than [`KEEP_TEST_DATABASES_SECS`] ago
/// (and ones from before names carried a time). Best effort: a database
/// another run is dropping at the same moment is simply skipped.
async fn drop_stale_databases(admin: &tokio_postgres::Client, prefix: &str, now: u64) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&prefix],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        if is_stale(&name, prefix, now) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

fn is_stale(name: &str, prefix: &str, now: u64) -> bool {
    let created = name
        .strip_prefix(prefix)
        .and_then(|rest| rest.split_once('_'))
        .and_then(|(secs, _)| secs.parse::<u64>().ok());
    created.is_none_or(|created| now.saturating_sub(created) > KEEP_TEST_DATABASES_SECS)
}

/// `url` with its database replaced by `database`, for both URL
/// (`postgres://host/db?opts`) and key-value (`host=... dbname=...`) forms.
pub fn with_database(url: &str, database: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // In key-value form a later key overrides an earlier one.
        return format!("{url} dbname={database}");
    };
    let (base, query) = match url.find('?') {
        Some(at) => url.split_at(at),
        None => (url, ""),
    };
    let authority_start = scheme_end + "://".len();
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |at| authority_start + at);
    format!("{}/{database}{query}", &base[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::{TEST_DATABASE_PREFIX, database_of, is_stale, with_database};

    #[test]
    fn only_test_databases_older_than_an_hour_are_stale() {
        let now = 1_800_000_000;
        let prefix = TEST_DATABASE_PREFIX;
        assert!(!is_stale("confide_test_1799999000_abc", prefix, now));
        assert!(is_stale("confide_test_1790000000_abc", prefix, now));
        // Names from before they carried a time.
        assert!(is_stale(
            "confide_test_0123456789abcdef0123456789abcdef",
            prefix,
            now
        ));
    }

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t"),
            "postgres://postgres@127.0.0.1:5432/t"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "t"),
            "postgresql://u:p@h/t?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "t"),
            "postgres://h:5432/t"
        );
        assert_eq!(
            with_database("postgres://h?application_name=x", "t"),
            "postgres://h/t?application_name=x"
        );
        assert_eq!(
            with_database("host=h user=u dbname=db", "t"),
            "host=h user=u dbname=db dbname=t"
        );
        assert_eq!(
            database_of("postgresql://u:p@h/t?sslmode=disable"),
            Some("t")
        );
        assert_eq!(database_of("postgres://h:5432"), None);
    }
}
