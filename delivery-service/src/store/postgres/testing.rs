//! A fresh, migrated database per test, shared by this crate's tests and the
//! end-to-end tests. Public (not `cfg(test)`) so other crates can use it.

use tokio_postgres::NoTls;

use super::PostgresStore;

/// Where the test PostgreSQL listens unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Connections each test store may open.
const TEST_POOL_SIZE: usize = 8;

/// Creates an empty database `confide_test_<uuid>` on the server named by
/// `DATABASE_URL` (default [`DEFAULT_DATABASE_URL`]), applies the migrations
/// and returns a store connected to it with the new database's URL. Test
/// databases are left behind; they are cheap and help a post-mortem.
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

    let name = format!("confide_test_{}", uuid::Uuid::new_v4().simple());
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

/// `url` with its database replaced by `database`, for both URL
/// (`postgres://host/db?opts`) and key-value (`host=... dbname=...`) forms.
fn with_database(url: &str, database: &str) -> String {
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
    use super::with_database;

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
