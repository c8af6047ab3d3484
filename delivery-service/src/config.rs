//! Layered, typed configuration: defaults, then an optional YAML file, then
//! `CONFIDE__`-prefixed environment variables (`CONFIDE__DATABASE__URL`).

use std::fmt;
use std::path::Path;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// PostgreSQL, for deployments.
    Postgres,
    /// In-process memory: nothing survives a restart.
    Memory,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: usize,
}

#[derive(Clone, Deserialize)]
pub struct Settings {
    /// gRPC listen address.
    pub listen: String,
    pub store: StoreKind,
    pub database: DatabaseSettings,
    pub log_format: LogFormat,
    /// When set, registering a client requires this token (organisation deployments).
    pub registration_token: Option<String>,
    pub session_ttl_secs: u64,
    pub challenge_ttl_secs: u64,
    /// Application messages are accepted for the current epoch and this many before it.
    pub max_epoch_lag: u64,
    /// A client is told to replenish when its key package pool falls below this.
    pub key_package_low_watermark: u32,
    /// Largest MLS message (commit, Welcome, GroupInfo, application message) accepted.
    pub max_message_bytes: usize,
    /// Most key packages in one publish.
    pub max_key_packages_per_publish: usize,
    /// Live entries queued per subscription in the hub; beyond that a slow
    /// subscriber is marked lagged and re-reads from the store.
    pub live_queue_depth: usize,
    /// Envelopes buffered per Subscribe stream before its subscriber waits.
    pub stream_buffer: usize,
}

impl Settings {
    /// Defaults, then `file` (YAML) if given, then `CONFIDE__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("listen", "127.0.0.1:7420")?
            .set_default("store", "postgres")?
            .set_default("database.url", "postgres://postgres@127.0.0.1:5432/confide")?
            .set_default("database.max_connections", 16)?
            .set_default("log_format", "text")?
            .set_default("session_ttl_secs", 3600)?
            .set_default("challenge_ttl_secs", 60)?
            .set_default("max_epoch_lag", 2)?
            .set_default("key_package_low_watermark", 10)?
            .set_default("max_message_bytes", 1024 * 1024)?
            .set_default("max_key_packages_per_publish", 500)?
            .set_default("live_queue_depth", 1024)?
            .set_default("stream_buffer", 256)?;
        if let Some(file) = file {
            builder = builder.add_source(config::File::from(file).format(config::FileFormat::Yaml));
        }
        let settings: Self = builder
            .add_source(
                config::Environment::with_prefix("CONFIDE")
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), config::ConfigError> {
        let at_least_one = [
            ("live_queue_depth", self.live_queue_depth),
            ("stream_buffer", self.stream_buffer),
            ("database.max_connections", self.database.max_connections),
            ("max_message_bytes", self.max_message_bytes),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(config::ConfigError::Message(format!(
                    "{key} must be at least 1"
                )));
            }
        }
        Ok(())
    }

    /// Settings for tests and the in-process demo: memory store, port 0.
    pub fn for_tests() -> Self {
        Self::load(None)
            .map(|mut s| {
                s.listen = "127.0.0.1:0".into();
                s.store = StoreKind::Memory;
                s
            })
            .expect("the built-in defaults are valid")
    }
}

/// Secrets (the registration token, a database password) are never printed.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("database.url", &redact_url(&self.database.url))
            .field("database.max_connections", &self.database.max_connections)
            .field("log_format", &self.log_format)
            .field(
                "registration_token",
                &self.registration_token.as_ref().map(|_| "<redacted>"),
            )
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("max_epoch_lag", &self.max_epoch_lag)
            .field("key_package_low_watermark", &self.key_package_low_watermark)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:<redacted>@host/db`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_file_overrides_defaults() {
        let path = std::env::temp_dir().join(format!("confide-ds-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "store: memory\nlisten: \"0.0.0.0:9000\"\ndatabase:\n  max_connections: 4\nregistration_token: tok\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(settings.store, StoreKind::Memory);
        assert_eq!(settings.listen, "0.0.0.0:9000");
        assert_eq!(settings.database.max_connections, 4);
        assert_eq!(settings.registration_token.as_deref(), Some("tok"));
        // Untouched keys keep their defaults.
        assert_eq!(settings.max_epoch_lag, 2);
    }

    #[test]
    fn unknown_store_kind_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("confide-ds-bad-{}.yaml", std::process::id()));
        std::fs::write(&path, "store: cassandra\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(error.to_string().contains("cassandra"), "{error}");
    }

    #[test]
    fn zero_sized_buffers_are_refused() {
        let path =
            std::env::temp_dir().join(format!("confide-ds-zero-{}.yaml", std::process::id()));
        std::fs::write(&path, "stream_buffer: 0\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(
            error
                .to_string()
                .contains("stream_buffer must be at least 1"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let mut settings = Settings::for_tests();
        settings.registration_token = Some("org-secret-token".into());
        settings.database.url = "postgres://confide:hunter2@db:5432/confide".into();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("org-secret-token"));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("postgres://confide:<redacted>@db:5432/confide"));
    }
}
