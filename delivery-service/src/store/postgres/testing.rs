//! A fresh, migrated database per test, shared by this crate's tests and the
//! end-to-end tests. Public (not `cfg(test)`) so other crates can use it.

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
    let admin_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let (admin, connection) = match tokio_postgres::connect(&admin_url, NoTls).await {
        Ok(connected) => connected,
        Err(err) => panic!(
            "PostgreSQL is not reachable at {admin_url}: start it with \
             `pg_ctlcluster --skip-systemctl-redirect 15 main start` or set DATABASE_URL ({err})"
        ),
    };
    let connection = tokio::spawn(connection);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    drop_stale_databases(&admin, now).await;
    let name = format!(
        "{TEST_DATABASE_PREFIX}{now}_{}",
        uuid::Uuid::new_v4().simple()
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
    drop(admin);
    let _ = connection.await;

    let url = with_database(&admin_url, &name);
    let store = PostgresStore::connect(&url, TEST_POOL_SIZE)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to test database {name}: {err}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("cannot migrate test database {name}: {err}"));
    (store, url)
}

/// Drops test databases created more than [`KEEP_TEST_DATABASES_SECS`] ago
/// (and ones from before names carried a time). Best effort: a database
/// another run is dropping at the same moment is simply skipped.
async fn drop_stale_databases(admin: &tokio_postgres::Client, now: u64) {
    let Ok(rows) = admin
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&TEST_DATABASE_PREFIX],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        if is_stale(&name, now) {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

fn is_stale(name: &str, now: u64) -> bool {
    let created = name
        .strip_prefix(TEST_DATABASE_PREFIX)
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
    use super::{is_stale, with_database};

    #[test]
    fn only_test_databases_older_than_an_hour_are_stale() {
        let now = 1_800_000_000;
        assert!(!is_stale("confide_test_1799999000_abc", now));
        assert!(is_stale("confide_test_1790000000_abc", now));
        // Names from before they carried a time.
        assert!(is_stale(
            "confide_test_0123456789abcdef0123456789abcdef",
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
    }
}
