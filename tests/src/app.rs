//! [`TestApp`]: one delivery service on port 0 against its own database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use confide_client::{Api, Client, ClientId, GroupId, StateLocation, TlsOptions, UserIdentity};
use confide_ds::bus::testing::on_test_nats;
use confide_ds::config::StoreKind;
use confide_ds::domain::GroupEntry;
use confide_ds::store::Store;
use confide_ds::store::postgres::testing::fresh_database;
use confide_ds::{App, RunningApp, Settings, domain};

use crate::member::Member;
use crate::{WAIT, logs};

/// The identity key of each user the harness registered, by database and
/// user, so that a user's later devices (on any replica, or after a restart)
/// are certified by it, as linking would have them.
static IDENTITIES: Mutex<Option<HashMap<UserKey, Vec<u8>>>> = Mutex::new(None);

/// A database URL and a user name.
type UserKey = (String, String);

/// Longest a group log read by the harness may be.
const LOG_LIMIT: u32 = 1000;

/// A running delivery service and the database behind it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`, for clients.
    pub endpoint: String,
    /// The test database, for tools such as `pg_dump` and for a restart.
    pub database_url: String,
    /// The DS's own store, to inspect what the server holds.
    pub store: Arc<dyn Store>,
    settings: Settings,
    /// Where the gRPC port listens, which a restart binds again.
    addr: std::net::SocketAddr,
    server: RunningApp,
    /// `127.0.0.1:<port>` of this DS's Prometheus endpoint.
    metrics_addr: std::net::SocketAddr,
    /// `http://127.0.0.1:<port>` of this DS's plaintext health port.
    pub health_endpoint: String,
    /// How [`TestApp::api`] connects: set the CA (and a client certificate)
    /// for a DS configured with TLS.
    pub client_tls: TlsOptions,
}

/// Creates a fresh, migrated database and serves a DS on it on port 0, on
/// the test NATS (`NATS_URL`) with a subject prefix of its own, which its
/// replicas ([`TestApp::spawn_replica`]) share: every test DS runs the bus
/// as a deployment of several replicas does. Fails, saying how to start it,
/// when NATS cannot be reached.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with settings changed by `configure` first.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    logs::capture();
    let (store, database_url) = fresh_database().await;
    let mut settings = Settings::for_tests();
    on_test_nats(&mut settings).await;
    configure(&mut settings);
    settings.store = StoreKind::Postgres;
    settings.database.url = database_url;
    TestApp::serve(store.into(), settings).await
}

/// A fresh, migrated database, as the URL a DS reaches it by through `proxy`.
pub async fn database_behind(proxy: &crate::DbProxy) -> String {
    let (_, database_url) = fresh_database().await;
    proxy.url(&database_url)
}

/// Starts a DS on an existing database `database_url` the way the
/// `confide-ds` binary does (it waits for an unreachable database), with
/// settings changed by `configure` first.
pub async fn spawn_app_on(database_url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    logs::capture();
    let mut settings = Settings::for_tests();
    on_test_nats(&mut settings).await;
    configure(&mut settings);
    settings.store = StoreKind::Postgres;
    settings.database.url = database_url;
    TestApp::open(settings).await
}

/// `settings` with the health and metrics ports on port 0: every test DS
/// serves both, whatever the test configured.
fn with_test_ports(mut settings: Settings) -> Settings {
    settings.health_listen = Some("127.0.0.1:0".to_owned());
    settings.metrics_listen = Some("127.0.0.1:0".to_owned());
    settings
}

impl TestApp {
    /// Serves a DS on `storage`, a store shared with the test.
    async fn serve(storage: confide_ds::Storage, settings: Settings) -> Self {
        let app = App::with_storage(with_test_ports(settings.clone()), storage)
            .await
            .expect("building the DS");
        Self::start(app, settings)
    }

    /// Starts a DS with `settings` on their existing database the way the
    /// `confide-ds` binary does (`App::build`, which waits for the database
    /// and migrates it).
    async fn open(settings: Settings) -> Self {
        let app = App::build(with_test_ports(settings.clone()))
            .await
            .expect("building the DS");
        Self::start(app, settings)
    }

    fn start(app: App, settings: Settings) -> Self {
        let addr = app.addr();
        let port = addr.port();
        // A TLS DS is reached by the name its test certificate carries.
        let endpoint = match settings.tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let health_addr = app.health_addr().expect("a health port on port 0");
        let metrics_addr = app.metrics_addr().expect("a metrics port on port 0");
        let store = app.state().store.clone();
        Self {
            metrics_addr,
            health_endpoint: format!("http://{health_addr}"),
            client_tls: TlsOptions::default(),
            endpoint,
            database_url: settings.database.url.clone(),
            store,
            settings,
            addr,
            server: app.spawn(),
        }
    }

    /// A new, unauthenticated connection to this DS.
    pub async fn api(&self) -> Api {
        Api::connect_with(&self.endpoint, &self.client_tls)
            .await
            .unwrap_or_else(|e| panic!("connecting to the DS at {}: {e}", self.endpoint))
    }

    /// Registers `user/device` on its own connection, in memory: it
    /// authenticates and uploads key packages and a last-resort one.
    pub async fn client(&self, user: &str, device: &str) -> Member {
        let client = self
            .register(user, device, &StateLocation::Memory)
            .await
            .unwrap_or_else(|e| panic!("registering {user}/{device}: {e}"));
        Member::new(client)
    }

    /// Registers `user/device` at `state`: the first device of a user makes
    /// its identity key; a later one is certified by that key, as if an
    /// earlier device had linked it (the linking exchange itself is tested
    /// on its own).
    pub async fn register(
        &self,
        user: &str,
        device: &str,
        state: &StateLocation,
    ) -> confide_client::ClientResult<Client> {
        let id = ClientId::new(user, device).expect("a valid client name");
        let key = (self.database_url.clone(), user.to_string());
        let known = IDENTITIES
            .lock()
            .expect("the identities")
            .get_or_insert_default()
            .get(&key)
            .cloned();
        let identity = match known {
            Some(secret) => UserIdentity::from_secret_bytes(&secret)?,
            None => UserIdentity::generate()?,
        };
        let secret = identity.to_secret_bytes()?;
        let client = Client::register_with(self.api().await, id, state, "", identity).await?;
        IDENTITIES
            .lock()
            .expect("the identities")
            .get_or_insert_default()
            .entry(key)
            .or_insert(secret);
        Ok(client)
    }

    /// Registers one device per user; the first creates a group and adds the
    /// others, and every member waits until it has joined.
    pub async fn conversation<const N: usize>(&self, users: [&str; N]) -> (GroupId, [Member; N]) {
        assert!(N > 0, "a conversation needs somebody");
        let mut members = Vec::with_capacity(N);
        for user in users {
            members.push(self.client(user, "phone").await);
        }
        let group = members[0].create_group().await.expect("creating the group");
        if N > 1 {
            members[0]
                .add_users(&group, &users[1..])
                .await
                .expect("adding the other members");
        }
        for member in &mut members[1..] {
            member.expect_joined(&group).await;
        }
        let members = members
            .try_into()
            .unwrap_or_else(|_| unreachable!("N members were registered"));
        (group, members)
    }

    /// Removes (deprovisions) `client` as the operator, with the DS's
    /// configured `admin_token`.
    pub async fn remove_as_operator(
        &self,
        admin_token: &str,
        client: &ClientId,
    ) -> Result<(), tonic::Status> {
        let mut request = tonic::Request::new(confide_proto::v1::RemoveClientRequest {
            client: Some(client.into()),
            ..Default::default()
        });
        request.metadata_mut().insert(
            confide_proto::ADMIN_TOKEN_HEADER,
            admin_token.parse().expect("an ASCII admin token"),
        );
        self.api().await.auth().remove_client(request).await?;
        Ok(())
    }

    /// The group's log as the DS stored it, read as `reader` may see it.
    pub async fn group_log(&self, reader: &ClientId, group: &[u8]) -> Vec<GroupEntry> {
        let group_id = domain::GroupId::new(group.to_vec()).expect("a valid group id");
        self.store
            .read_group(reader, &group_id, 0, LOG_LIMIT)
            .await
            .expect("reading the group log from the store")
    }

    /// The epoch each commit in the group's log was made for, in log order:
    /// one commit per epoch means consecutive, distinct epochs.
    pub async fn commit_epochs(&self, reader: &ClientId, group: &[u8]) -> Vec<u64> {
        self.group_log(reader, group)
            .await
            .iter()
            .filter(|e| e.kind == domain::EntryKind::Commit)
            .map(|e| e.epoch)
            .collect()
    }

    /// What this DS's Prometheus endpoint serves (`GET /metrics`).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut connection = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .expect("connecting to the metrics endpoint");
        connection
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .expect("asking for the metrics");
        let mut response = String::new();
        connection
            .read_to_string(&mut response)
            .await
            .expect("reading the metrics");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "the metrics endpoint answered {response}"
        );
        response
    }

    /// Starts another DS on the same database, beside this one, as a second
    /// replica of a deployment: its own pool, caches and live subscribers,
    /// on the same NATS subjects.
    pub async fn spawn_replica(&self) -> Self {
        Self::open(self.settings.clone()).await
    }

    /// Like [`TestApp::spawn_replica`], with the replica's settings changed
    /// by `configure` first (a replica that issues short sessions, say).
    pub async fn spawn_replica_with(&self, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.settings.clone();
        configure(&mut settings);
        Self::open(settings).await
    }

    /// Shuts the DS down gracefully and waits for it to stop.
    pub async fn stop(self) {
        tokio::time::timeout(WAIT, self.server.stop())
            .await
            .expect("the DS did not stop in time")
            .expect("the DS failed while serving");
    }

    /// Stops this DS and starts a new one on the same database and port,
    /// the way a restarted process does: a new connection pool, empty
    /// caches and no live subscribers, at the endpoint clients already have.
    pub async fn restart(self) -> Self {
        self.stop_for_restart().await.start().await
    }

    /// Stops this DS, to start it again later ([`StoppedApp::start`]) on
    /// the same database and port: clients meanwhile find nobody there.
    pub async fn stop_for_restart(self) -> StoppedApp {
        let stopped = StoppedApp {
            settings: self.settings.clone(),
            addr: self.addr,
        };
        self.stop().await;
        stopped
    }
}

/// A DS that was stopped, with what starting it again needs.
pub struct StoppedApp {
    settings: Settings,
    addr: std::net::SocketAddr,
}

impl StoppedApp {
    /// Starts the DS again on its database and port (its replicas still
    /// take ports of their own).
    pub async fn start(self) -> TestApp {
        let mut bound = with_test_ports(self.settings.clone());
        bound.listen = self.addr.to_string();
        let app = App::build(bound).await.expect("building the DS");
        TestApp::start(app, self.settings)
    }
}
