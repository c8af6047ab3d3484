//! The delivery service's shared state, handed to every gRPC adapter.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::appender::Appender;
use crate::bus::Bus;
use crate::config::{BusKind, Settings};
use crate::groups::GroupLocks;
use crate::hub::Hub;
use crate::limits::RateLimits;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;

/// A store, and when it is PostgreSQL the handle that live delivery across
/// replicas needs (`crate::bus`). Built from the concrete
/// store, so a PostgreSQL store cannot lose that handle on the way.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn Store>,
    postgres: Option<PostgresStore>,
}

impl Storage {
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl From<PostgresStore> for Storage {
    fn from(store: PostgresStore) -> Self {
        Self {
            store: Arc::new(store.clone()),
            postgres: Some(store),
        }
    }
}

impl From<Arc<MemoryStore>> for Storage {
    fn from(store: Arc<MemoryStore>) -> Self {
        Self {
            store,
            postgres: None,
        }
    }
}

impl From<MemoryStore> for Storage {
    fn from(store: MemoryStore) -> Self {
        Arc::new(store).into()
    }
}

pub struct Ds {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub hub: Arc<Hub>,
    /// Group commit of members' application messages.
    pub appender: Arc<Appender>,
    pub groups: GroupLocks,
    pub limits: RateLimits,
    /// The DS's external sender key, when configured.
    pub external_sender: Option<crate::mls::ExternalSenderKey>,
    /// The statuses served by gRPC health on the gRPC port and the health port.
    pub health: tonic_health::server::HealthReporter,
    /// Cancelled on shutdown; live streams end when it is.
    pub shutdown: CancellationToken,
    /// PostgreSQL only: where the bus relay reads the entries other
    /// replicas announce.
    pub(crate) postgres: Option<PostgresStore>,
    /// With `bus: nats` and PostgreSQL: where this replica announces what it
    /// commits (`crate::bus`).
    pub bus: Option<Arc<Bus>>,
}

pub type AppState = Arc<Ds>;

impl Ds {
    /// Fails only if the configured external sender key cannot be read or
    /// created.
    pub fn new(
        storage: Storage,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> std::io::Result<AppState> {
        let external_sender = settings
            .external_sender_key_file
            .as_deref()
            .map(crate::mls::ExternalSenderKey::load_or_create)
            .transpose()?;
        let hub = Hub::with_queue_limits(settings.live_queue_depth, settings.live_queue_bytes);
        let bus = (settings.bus.kind == BusKind::Nats && storage.postgres.is_some())
            .then(|| Arc::new(Bus::new()));
        Ok(Arc::new(Self {
            external_sender,
            // Half the pool: the other half stays free for reads and commits.
            appender: Appender::new(
                storage.store.clone(),
                hub.clone(),
                bus.clone(),
                settings.database.max_connections / 2,
            ),
            bus,
            store: storage.store,
            hub,
            limits: RateLimits::new(&settings.limits),
            health: tonic_health::server::HealthReporter::new(),
            settings,
            groups: GroupLocks::default(),
            shutdown,
            postgres: storage.postgres,
        }))
    }
}
