//! The simulator's own delivery service, in this process (on the in-memory
//! store or a database made for the run), which a fault can restart on the
//! same address; and the run's scratch directory.

use std::path::{Path, PathBuf};

use confide_ds::store::postgres::testing;
use confide_ds::{App, RunningApp};

use super::{SimError, Target};

/// A DS started for the run, stopped when dropped; it can be restarted on
/// the same address (its store is kept).
pub struct LocalDs {
    pub endpoint: String,
    /// Its settings, listening on the address it got at start.
    settings: confide_ds::Settings,
    /// `None` only while it restarts.
    running: Option<RunningApp>,
    /// The database made for the run (admin URL, its URL), dropped at the end.
    database: Option<(String, String)>,
}

impl Drop for LocalDs {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.stop_token().cancel();
        }
    }
}

impl LocalDs {
    pub async fn start(target: &Target, scratch: &Path) -> Result<Self, SimError> {
        let mut settings = confide_ds::Settings::for_tests();
        settings.lift_limits();
        // Kept across restarts, like a deployment's.
        settings.external_sender_key_file = Some(scratch.join("external-sender.key"));
        let mut database = None;
        if let Target::Postgres { database_url } = target {
            let url = testing::create_database(database_url, SIM_DATABASE_PREFIX)
                .await
                .map_err(SimError::Ds)?;
            settings.store = confide_ds::config::StoreKind::Postgres;
            settings.database.url = url.clone();
            database = Some((database_url.clone(), url));
        }
        let app = build(&settings).await?;
        let address = app.addr();
        // A restart listens where the clients already connect.
        settings.listen = address.to_string();
        Ok(Self {
            endpoint: format!("http://{address}"),
            settings,
            running: Some(app.spawn()),
            database,
        })
    }

    /// Stops the DS (live streams end, calls fail) and starts it again on
    /// the same address and store.
    pub async fn restart(&mut self) -> Result<(), SimError> {
        self.stop().await;
        self.running = Some(build(&self.settings).await?.spawn());
        Ok(())
    }

    /// Stops the DS and drops the database made for the run.
    pub async fn finish(mut self) {
        self.stop().await;
        if let Some((admin, url)) = self.database.take()
            && let Err(error) = testing::drop_database(&admin, &url).await
        {
            tracing::warn!(%error, "the simulator's database was left behind");
        }
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take()
            && let Err(error) = running.stop().await
        {
            tracing::error!(%error, "the in-process DS failed");
        }
    }
}

/// Databases the simulator makes are named `confide_sim_<time>_<uuid>`.
const SIM_DATABASE_PREFIX: &str = "confide_sim_";

/// The DS on `settings` (its store opened, its port bound), not yet serving.
async fn build(settings: &confide_ds::Settings) -> Result<App, SimError> {
    App::build(settings.clone())
        .await
        .map_err(|e| SimError::Ds(e.to_string()))
}

/// A directory for the run's files (state files of restartable members,
/// the DS's key), removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Result<Self, SimError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("confide-sim-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| SimError::Ds(format!("creating {}: {e}", path.display())))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
