//! [`App`]: the one place a delivery service is wired. The binary, the
//! tests, the demo and the tools all build it here, so a new listener,
//! background task or piece of state is added once.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Settings, StoreKind};
use crate::server::{run, serve_health, start};
use crate::state::{AppState, Ds, Storage};
use crate::store::StoreError;
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;
use crate::transport::ServeError;

/// Why a delivery service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("loading the external sender key: {0}")]
    ExternalSenderKey(#[source] std::io::Error),
}

/// A delivery service with its store open, its listeners bound (port 0
/// allowed: ask [`App::addr`] where it ended up) and its state built, not yet
/// serving.
pub struct App {
    listener: TcpListener,
    health: Option<TcpListener>,
    metrics: Option<TcpListener>,
    state: AppState,
}

impl App {
    /// Opens the configured store (see [`open_store`]: PostgreSQL is waited
    /// for and migrated), binds `listen` and, when configured,
    /// `health_listen` and `metrics_listen`, and builds the state.
    pub async fn build(settings: Settings) -> Result<Self, BuildError> {
        let storage = open_store(&settings).await?;
        Self::with_storage(settings, storage).await
    }

    /// Like [`App::build`] on a store the caller already has (an in-memory
    /// store it inspects, a database shared with another DS); the configured
    /// store is not opened.
    pub async fn with_storage(
        settings: Settings,
        storage: impl Into<Storage>,
    ) -> Result<Self, BuildError> {
        let listener = bind(&settings.listen).await?;
        let health = bind_optional(settings.health_listen.as_deref()).await?;
        let metrics = bind_optional(settings.metrics_listen.as_deref()).await?;
        // The state's token ends streams and background tasks; `run` cancels
        // it after health went NOT_SERVING, or when serving fails.
        let state = Ds::new(storage.into(), settings, CancellationToken::new())
            .map_err(BuildError::ExternalSenderKey)?;
        Ok(Self {
            listener,
            health,
            metrics,
            state,
        })
    }

    /// Where the gRPC port listens.
    pub fn addr(&self) -> SocketAddr {
        local_addr(&self.listener)
    }

    /// Where the plaintext health port listens, if configured.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().map(local_addr)
    }

    /// Where `/metrics` is served, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(local_addr)
    }

    /// The state the server will serve, for callers that look inside (the
    /// store, the settings).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled and the server has stopped (see
    /// [`run`]); the health and metrics ports stop with it.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let stopped = self.state.shutdown.clone();
        start(&self.state).await;
        if let Some(listener) = self.health {
            let serving = serve_health(listener, self.state.clone(), stopped.clone());
            tokio::spawn(log_failure(serving, "the health port failed"));
        }
        if let Some(listener) = self.metrics {
            let serving = crate::telemetry::serve(listener, stopped.clone());
            tokio::spawn(log_failure(serving, "the metrics port failed"));
        }
        let served = run(self.listener, self.state, shutdown).await;
        // `run` may fail before it serves (a TLS file it cannot read): the
        // health and metrics ports stop then too.
        stopped.cancel();
        served
    }

    /// Serves in a task of its own until the returned handle stops it.
    pub fn spawn(self) -> RunningApp {
        let stop = CancellationToken::new();
        let task = tokio::spawn(self.run_until_stopped(stop.clone()));
        RunningApp { stop, task }
    }
}

/// A delivery service serving in its own task ([`App::spawn`]).
pub struct RunningApp {
    stop: CancellationToken,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningApp {
    /// The token that stops it, for whoever decides when (a drop guard, a
    /// signal handler).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Stops it gracefully and waits until it has stopped.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.stop.cancel();
        self.stopped().await
    }

    /// Waits until it has stopped (serving failed, or its token was
    /// cancelled); a panic in the server is resumed here.
    pub async fn stopped(self) -> Result<(), ServeError> {
        match self.task.await {
            Ok(served) => served,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
}

/// Opens the configured store; PostgreSQL is migrated before use. While
/// PostgreSQL cannot be reached (down, starting up, recovering) it logs why
/// and retries with back-off, for at most `database.startup_wait_secs` if set.
pub async fn open_store(settings: &Settings) -> Result<Storage, StoreError> {
    Ok(match settings.store {
        StoreKind::Memory => MemoryStore::new().into(),
        StoreKind::Postgres => open_postgres(settings).await?.into(),
    })
}

const STARTUP_MIN_BACKOFF: Duration = Duration::from_millis(200);
const STARTUP_MAX_BACKOFF: Duration = Duration::from_secs(5);

async fn open_postgres(settings: &Settings) -> Result<PostgresStore, StoreError> {
    let database = &settings.database;
    let deadline = database
        .startup_wait_secs
        .map(|secs| tokio::time::Instant::now() + Duration::from_secs(secs));
    let mut backoff = STARTUP_MIN_BACKOFF;
    loop {
        let opened = async {
            let store = PostgresStore::connect(&database.url, database.max_connections).await?;
            store.migrate().await?;
            Ok::<_, StoreError>(store)
        };
        match opened.await {
            Err(StoreError::Unavailable(cause))
                if deadline
                    .is_none_or(|deadline| tokio::time::Instant::now() + backoff < deadline) =>
            {
                tracing::warn!(%cause, retry_in = ?backoff, "waiting for PostgreSQL");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(STARTUP_MAX_BACKOFF);
            }
            opened => return opened,
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, BuildError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BuildError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

async fn bind_optional(addr: Option<&str>) -> Result<Option<TcpListener>, BuildError> {
    match addr {
        Some(addr) => Ok(Some(bind(addr).await?)),
        None => Ok(None),
    }
}

async fn log_failure(serving: impl Future<Output = Result<(), ServeError>>, what: &str) {
    if let Err(error) = serving.await {
        tracing::error!(%error, "{what}");
    }
}

fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound TCP listener has a local address")
}
