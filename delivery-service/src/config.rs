//! Layered, typed configuration: defaults, then an optional YAML file, then
//! `CONFIDE__`-prefixed environment variables (`CONFIDE__DATABASE__URL`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use confide_core::profile::LifetimeRules;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// PostgreSQL, for deployments.
    Postgres,
    /// In-process memory: nothing survives a restart.
    Memory,
}

/// How replicas sharing one database wake each other up (`crate::bus`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// No bus: one replica alone. A second replica on the same database
    /// would not deliver live what the first one accepts.
    None,
    /// NATS: every replica announces what it appends (ids only) and reads
    /// what the others announce from PostgreSQL. Needed by several replicas.
    Nats,
}

/// The cross-replica bus.
#[derive(Clone, Deserialize)]
pub struct BusSettings {
    pub kind: BusKind,
    /// The NATS server (`nats://host:port`; credentials may be in it).
    pub url: String,
    /// Subjects are `<subject_prefix>.wake`: replicas of one deployment share
    /// it; deployments (or tests) on one NATS use different ones.
    pub subject_prefix: String,
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
    /// At start-up, how long to wait for an unreachable PostgreSQL (retrying
    /// with back-off) before giving up; unset: wait as long as it takes.
    pub startup_wait_secs: Option<u64>,
}

/// TLS on the gRPC port (rustls). PEM files.
#[derive(Clone, Debug, Deserialize)]
pub struct TlsSettings {
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Connection-level limits of the gRPC server.
#[derive(Clone, Debug, Deserialize)]
pub struct TransportSettings {
    /// Open connections per DS; a connection beyond it is closed at once.
    pub max_connections: usize,
    /// HTTP/2 streams (concurrent calls) per connection.
    pub max_concurrent_streams: u32,
    /// Longest a unary call (or the start of a stream) may take.
    pub request_timeout_secs: u64,
    /// HTTP/2 pings on idle connections, and how long an answer may take.
    pub keepalive_interval_secs: u64,
    pub keepalive_timeout_secs: u64,
}

impl TransportSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Request-level limits, answered with RESOURCE_EXHAUSTED.
#[derive(Clone, Debug, Deserialize)]
pub struct LimitSettings {
    /// Largest encoded request. tonic's own decode limit (OUT_OF_RANGE) is
    /// set well above it, so the DS answers every request up to that with
    /// RESOURCE_EXHAUSTED itself.
    pub max_request_bytes: usize,
    /// Sustained authenticated calls per second per client, and the burst.
    pub requests_per_second: u32,
    pub request_burst: u32,
    /// Sustained request bytes per second per client, and the burst (at
    /// least `max_request_bytes`, so any allowed request can pass).
    pub bytes_per_second: u32,
    pub byte_burst: u32,
    /// Registration and authentication calls per minute per peer address.
    pub unauthenticated_per_minute: u32,
    /// Key package claims per minute per claimer, and per claimer and
    /// claimed user.
    pub claims_per_minute: u32,
    pub claims_per_target_per_minute: u32,
}

#[derive(Clone, Deserialize)]
pub struct Settings {
    /// gRPC listen address.
    pub listen: String,
    /// TLS on `listen`. Without it the DS starts only if `plaintext` is set.
    pub tls: Option<TlsSettings>,
    /// Serve gRPC without TLS (local development, tests, a TLS-terminating
    /// proxy on the same host).
    pub plaintext: bool,
    /// Optional plaintext port serving only gRPC health (for probes).
    pub health_listen: Option<String>,
    /// Optional port serving Prometheus metrics at `/metrics`.
    pub metrics_listen: Option<String>,
    pub transport: TransportSettings,
    pub limits: LimitSettings,
    pub store: StoreKind,
    pub database: DatabaseSettings,
    /// How replicas sharing the database learn what the others append.
    pub bus: BusSettings,
    pub log_format: LogFormat,
    /// When set, registering a client requires this token (organisation deployments).
    pub registration_token: Option<String>,
    /// When set, an operator presenting it may deprovision any client.
    pub admin_token: Option<String>,
    /// The DS's external sender key (created there on first start; share it
    /// between replicas). When set, clients list the DS as an external sender
    /// in new groups and deprovisioning removes a device from its groups.
    pub external_sender_key_file: Option<PathBuf>,
    pub session_ttl_secs: u64,
    pub challenge_ttl_secs: u64,
    /// How long a device link (a new device's offer, then the answer) is
    /// kept for the devices to complete it.
    pub link_ttl_secs: u64,
    /// Application messages are accepted for the current epoch and this many before it.
    pub max_epoch_lag: u64,
    /// A client is told to replenish when its key package pool falls below this.
    pub key_package_low_watermark: u32,
    /// Longest key package lifetime (`not_after - not_before`) accepted.
    pub key_package_max_lifetime_secs: u64,
    /// How far in the future a key package's `not_before` may be, for
    /// clients whose clock is ahead. An expired one is refused at once.
    pub key_package_clock_skew_secs: u64,
    /// Largest MLS message (commit, Welcome, GroupInfo, application message) accepted.
    pub max_message_bytes: usize,
    /// Most key packages in one publish.
    pub max_key_packages_per_publish: usize,
    /// Live entries queued per subscription in the hub; beyond that a slow
    /// subscriber is marked lagged and re-reads from the store.
    pub live_queue_depth: usize,
    /// Bytes of live entries queued per subscription in the hub (MLS
    /// payloads plus a little per entry); beyond that, as beyond the depth,
    /// the subscriber is marked lagged and re-reads from the store. One
    /// entry always fits, however large.
    pub live_queue_bytes: usize,
    /// Envelopes buffered per Subscribe stream before its subscriber waits.
    pub stream_buffer: usize,
    /// On shutdown, how long in-flight calls may take to finish before the
    /// connections still open are closed.
    pub shutdown_grace_secs: u64,
    /// How long group log entries and inbox entries are kept when not every
    /// reader acknowledged them; entries every reader acknowledged go at the
    /// next purge. A member away longer is told ENTRIES_PRUNED and re-syncs.
    pub retention_secs: u64,
    /// How often the purge runs: expired sessions, challenges and links,
    /// and pruning (acknowledged and old entries, expired key packages).
    pub purge_interval_secs: u64,
}

impl Settings {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    pub fn purge_interval(&self) -> Duration {
        Duration::from_secs(self.purge_interval_secs)
    }

    /// Defaults, then `file` (YAML) if given, then `CONFIDE__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        Self::load_from(config::Config::builder(), file)
    }

    fn load_from(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        file: Option<&Path>,
    ) -> Result<Self, config::ConfigError> {
        let mut builder = builder
            .set_default("listen", "127.0.0.1:7420")?
            .set_default("store", "postgres")?
            .set_default("database.url", "postgres://postgres@127.0.0.1:5432/confide")?
            .set_default("database.max_connections", 16)?
            .set_default("bus.kind", "none")?
            .set_default("bus.url", "nats://127.0.0.1:4222")?
            .set_default("bus.subject_prefix", "confide")?
            .set_default("log_format", "text")?
            .set_default("session_ttl_secs", 3600)?
            .set_default("challenge_ttl_secs", 60)?
            .set_default("link_ttl_secs", 600)?
            .set_default("max_epoch_lag", 2)?
            .set_default("key_package_low_watermark", 10)?
            .set_default(
                "key_package_max_lifetime_secs",
                LifetimeRules::default().max_lifetime.as_secs(),
            )?
            .set_default(
                "key_package_clock_skew_secs",
                LifetimeRules::default().clock_skew.as_secs(),
            )?
            .set_default("max_message_bytes", 1024 * 1024)?
            .set_default("max_key_packages_per_publish", 500)?
            .set_default("live_queue_depth", 1024)?
            .set_default("live_queue_bytes", 4 * 1024 * 1024)?
            .set_default("stream_buffer", 256)?
            .set_default("shutdown_grace_secs", 10)?
            .set_default("retention_secs", 30 * 24 * 3600)?
            .set_default("purge_interval_secs", 600)?
            .set_default("plaintext", false)?
            .set_default("transport.max_connections", 10_000)?
            .set_default("transport.max_concurrent_streams", 256)?
            .set_default("transport.request_timeout_secs", 30)?
            .set_default("transport.keepalive_interval_secs", 30)?
            .set_default("transport.keepalive_timeout_secs", 10)?
            .set_default("limits.max_request_bytes", 4 * 1024 * 1024)?
            .set_default("limits.requests_per_second", 50)?
            .set_default("limits.request_burst", 200)?
            .set_default("limits.bytes_per_second", 2 * 1024 * 1024)?
            .set_default("limits.byte_burst", 16 * 1024 * 1024)?
            .set_default("limits.unauthenticated_per_minute", 600)?
            .set_default("limits.claims_per_minute", 600)?
            .set_default("limits.claims_per_target_per_minute", 60)?;
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
            ("live_queue_bytes", self.live_queue_bytes),
            ("stream_buffer", self.stream_buffer),
            ("purge_interval_secs", self.purge_interval_secs as usize),
            ("database.max_connections", self.database.max_connections),
            ("max_message_bytes", self.max_message_bytes),
            ("transport.max_connections", self.transport.max_connections),
            (
                "transport.max_concurrent_streams",
                self.transport.max_concurrent_streams as usize,
            ),
            (
                "transport.request_timeout_secs",
                self.transport.request_timeout_secs as usize,
            ),
            ("limits.max_request_bytes", self.limits.max_request_bytes),
            (
                "limits.requests_per_second",
                self.limits.requests_per_second as usize,
            ),
            ("limits.request_burst", self.limits.request_burst as usize),
            (
                "limits.bytes_per_second",
                self.limits.bytes_per_second as usize,
            ),
            (
                "limits.unauthenticated_per_minute",
                self.limits.unauthenticated_per_minute as usize,
            ),
            (
                "limits.claims_per_minute",
                self.limits.claims_per_minute as usize,
            ),
            (
                "limits.claims_per_target_per_minute",
                self.limits.claims_per_target_per_minute as usize,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(config::ConfigError::Message(format!(
                    "{key} must be at least 1"
                )));
            }
        }
        if (self.limits.byte_burst as usize) < self.limits.max_request_bytes {
            return Err(config::ConfigError::Message(
                "limits.byte_burst must be at least limits.max_request_bytes".into(),
            ));
        }
        if self.limits.max_request_bytes < self.max_message_bytes {
            return Err(config::ConfigError::Message(
                "limits.max_request_bytes must be at least max_message_bytes".into(),
            ));
        }
        if self.bus.kind == BusKind::Nats && self.store == StoreKind::Memory {
            return Err(config::ConfigError::Message(
                "bus.kind nats needs store: postgres (replicas share one database; a memory \
                 store is one process's own)"
                    .into(),
            ));
        }
        if self.bus.kind == BusKind::Nats
            && let Err(error) = self.bus.url.parse::<async_nats::ServerAddr>()
        {
            return Err(config::ConfigError::Message(format!(
                "bus.url {}: {error}",
                redact_url(&self.bus.url)
            )));
        }
        if !valid_subject_prefix(&self.bus.subject_prefix) {
            return Err(config::ConfigError::Message(format!(
                "bus.subject_prefix {:?} is not a NATS subject: dot-separated tokens of \
                 letters, digits, '-' and '_'",
                self.bus.subject_prefix
            )));
        }
        if self.tls.is_none() && !self.plaintext {
            return Err(config::ConfigError::Message(
                "no TLS configured: set tls.cert and tls.key, or plaintext: true for local \
                 development (CONFIDE__PLAINTEXT=true)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Settings for tests and the in-process demo: memory store, port 0,
    /// plaintext on loopback.
    pub fn for_tests() -> Self {
        let builder = config::Config::builder()
            .set_override("plaintext", true)
            .and_then(|b| b.set_override("listen", "127.0.0.1:0"))
            .and_then(|b| b.set_override("store", "memory"))
            .expect("static overrides");
        Self::load_from(builder, None).expect("the built-in defaults are valid")
    }

    /// Lifts the per-client rate and connection limits, for a load test in
    /// which the simulator is the only client (the limits are there to stop
    /// a hostile client, not to shape a benchmark). Size limits stay.
    pub fn lift_limits(&mut self) {
        let limits = &mut self.limits;
        limits.requests_per_second = 10_000_000;
        limits.request_burst = 10_000_000;
        limits.bytes_per_second = u32::MAX;
        limits.byte_burst = u32::MAX;
        limits.unauthenticated_per_minute = u32::MAX;
        limits.claims_per_minute = u32::MAX;
        limits.claims_per_target_per_minute = u32::MAX;
        self.transport.max_concurrent_streams = 1 << 20;
        self.transport.max_connections = 1 << 20;
    }
}

/// Secrets (the registration token, a database password) are never printed.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("tls", &self.tls)
            .field("plaintext", &self.plaintext)
            .field("health_listen", &self.health_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("transport", &self.transport)
            .field("limits", &self.limits)
            .field("store", &self.store)
            .field("database.url", &redact_url(&self.database.url))
            .field("database.max_connections", &self.database.max_connections)
            .field(
                "database.startup_wait_secs",
                &self.database.startup_wait_secs,
            )
            .field("bus.kind", &self.bus.kind)
            .field("bus.url", &redact_url(&self.bus.url))
            .field("bus.subject_prefix", &self.bus.subject_prefix)
            .field("log_format", &self.log_format)
            .field(
                "registration_token",
                &self.registration_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("external_sender_key_file", &self.external_sender_key_file)
            .field("session_ttl_secs", &self.session_ttl_secs)
            .field("link_ttl_secs", &self.link_ttl_secs)
            .field("max_epoch_lag", &self.max_epoch_lag)
            .field("key_package_low_watermark", &self.key_package_low_watermark)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .finish_non_exhaustive()
    }
}

/// Dot-separated tokens of `[A-Za-z0-9_-]`: no wildcard, no empty token.
fn valid_subject_prefix(prefix: &str) -> bool {
    prefix.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
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
            "store: memory\nplaintext: true\nlisten: \"0.0.0.0:9000\"\ndatabase:\n  max_connections: 4\nregistration_token: tok\nlimits:\n  requests_per_second: 7\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(settings.store, StoreKind::Memory);
        assert_eq!(settings.listen, "0.0.0.0:9000");
        assert_eq!(settings.database.max_connections, 4);
        assert_eq!(settings.registration_token.as_deref(), Some("tok"));
        assert_eq!(settings.limits.requests_per_second, 7);
        // Untouched keys keep their defaults, nested ones too.
        assert_eq!(settings.max_epoch_lag, 2);
        assert_eq!(settings.limits.request_burst, 200);
    }

    #[test]
    fn starting_without_tls_or_an_explicit_plaintext_opt_in_is_refused() {
        let path = std::env::temp_dir().join(format!("confide-ds-tls-{}.yaml", std::process::id()));
        std::fs::write(&path, "store: memory\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        std::fs::write(
            &path,
            "tls:\n  cert: /etc/confide/cert.pem\n  key: /etc/confide/key.pem\n",
        )
        .unwrap();
        let with_tls = Settings::load(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(error.to_string().contains("no TLS configured"), "{error}");
        let tls = with_tls.tls.expect("tls settings");
        assert_eq!(tls.cert, PathBuf::from("/etc/confide/cert.pem"));
        assert!(tls.client_ca.is_none());
    }

    #[test]
    fn a_byte_burst_below_the_largest_request_is_refused() {
        let path =
            std::env::temp_dir().join(format!("confide-ds-burst-{}.yaml", std::process::id()));
        std::fs::write(&path, "plaintext: true\nlimits:\n  byte_burst: 1024\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(error.to_string().contains("limits.byte_burst"), "{error}");
    }

    #[test]
    fn unknown_store_kind_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("confide-ds-bad-{}.yaml", std::process::id()));
        std::fs::write(&path, "plaintext: true\nstore: cassandra\n").unwrap();
        let error = Settings::load(Some(&path)).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(error.to_string().contains("cassandra"), "{error}");
    }

    #[test]
    fn zero_sized_buffers_are_refused() {
        let path =
            std::env::temp_dir().join(format!("confide-ds-zero-{}.yaml", std::process::id()));
        std::fs::write(&path, "plaintext: true\nstream_buffer: 0\n").unwrap();
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
    fn the_bus_kind_url_and_subject_prefix_are_configured_and_checked() {
        let path = std::env::temp_dir().join(format!("confide-ds-bus-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "plaintext: true\nbus:\n  kind: nats\n  subject_prefix: prod.eu-1\n",
        )
        .unwrap();
        let settings = Settings::load(Some(&path)).unwrap();
        assert_eq!(settings.bus.kind, BusKind::Nats);
        assert_eq!(settings.bus.url, "nats://127.0.0.1:4222");
        assert_eq!(settings.bus.subject_prefix, "prod.eu-1");
        for (yaml, says) in [
            (
                "bus:\n  kind: nats\n  subject_prefix: a.>\n",
                "bus.subject_prefix",
            ),
            (
                "bus:\n  kind: nats\n  subject_prefix: a..b\n",
                "bus.subject_prefix",
            ),
            (
                "store: memory\nbus:\n  kind: nats\n",
                "needs store: postgres",
            ),
            ("bus:\n  kind: kafka\n", "kafka"),
            ("bus:\n  kind: nats\n  url: http://nats:4222\n", "bus.url"),
        ] {
            std::fs::write(&path, format!("plaintext: true\n{yaml}")).unwrap();
            let error = Settings::load(Some(&path)).unwrap_err();
            assert!(error.to_string().contains(says), "{yaml}: {error}");
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(Settings::for_tests().bus.kind, BusKind::None);
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let mut settings = Settings::for_tests();
        settings.registration_token = Some("org-secret-token".into());
        settings.admin_token = Some("operator-secret".into());
        settings.database.url = "postgres://confide:hunter2@db:5432/confide".into();
        settings.bus.url = "nats://confide:natspass@nats:4222".into();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("natspass"));
        assert!(!printed.contains("org-secret-token"));
        assert!(!printed.contains("operator-secret"));
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("postgres://confide:<redacted>@db:5432/confide"));
    }
}
