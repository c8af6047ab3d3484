//! The delivery service's shared state, handed to every gRPC adapter.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::groups::GroupLocks;
use crate::hub::Hub;
use crate::store::Store;

pub struct Ds {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub hub: Arc<Hub>,
    pub groups: GroupLocks,
    /// Cancelled on shutdown; live streams end when it is.
    pub shutdown: CancellationToken,
}

pub type AppState = Arc<Ds>;

impl Ds {
    pub fn new(store: Arc<dyn Store>, settings: Settings, shutdown: CancellationToken) -> AppState {
        Arc::new(Self {
            store,
            settings,
            hub: Hub::new(),
            groups: GroupLocks::default(),
            shutdown,
        })
    }
}
