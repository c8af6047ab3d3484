//! `confide-tests`: the end-to-end harness and, in `tests/e2e/`, the
//! end-to-end tests (one binary).
//!
//! [`spawn_app`] starts a real delivery service on port 0 against a fresh
//! PostgreSQL database. [`Member`] is a registered client with a small
//! scenario language on top (`conversation`, `expect_joined`,
//! `expect_messages`, `expect_live_messages`, `expect_epoch`). [`RawMember`]
//! speaks MLS without the client library, so a test can craft what the
//! library never sends (a commit that arrives late, a commit under another
//! member's name). [`HostileDs`] stands between clients and a real DS and
//! lies to them, for tests that the client library notices.
//! [`DbProxy`] stands between a DS and PostgreSQL and can play a dead
//! database. [`PrivateNats`] is a `nats-server` of a test's own that it can
//! kill and restart. [`rpc`] has the helpers for raw gRPC calls.
//!
//! Waiting polls the DS or reads a live stream, always under a deadline
//! ([`WAIT`]); no test sleeps to synchronise.

mod app;
mod db_proxy;
pub mod hostile;
mod logs;
mod member;
mod nats_server;
mod raw_member;
pub mod rpc;

use std::time::Duration;

pub use app::{StoppedApp, TestApp, database_behind, spawn_app, spawn_app_on, spawn_app_with};
pub use db_proxy::DbProxy;
pub use hostile::{HostileDs, Lost, Via};
pub use logs::captured_ds_logs;
pub use member::{Member, Received};
pub use nats_server::PrivateNats;
pub use raw_member::{CraftedCommit, RawMember};

/// The longest a test waits for something to arrive before it fails.
pub const WAIT: Duration = Duration::from_secs(10);
