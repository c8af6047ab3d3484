//! `confide-ds`: the Confide delivery service.
//!
//! It authenticates clients, keeps their key packages, validates MLS
//! handshakes with openmls `PublicGroup`, orders commits (exactly one per
//! epoch) and fans out handshake and application messages to every member,
//! live and from a durable log. It never holds a key that opens a message.
//!
//! Layout: [`grpc`] adapters → domain operations on [`state::Ds`] (in
//! [`auth`], [`devices`], [`deprovision`], [`key_packages`], [`groups`],
//! [`delivery`]) → [`store`], members' messages through the group commit of
//! [`appender`]. MLS parsing and validation live in [`mls`]; live fan-out in
//! [`hub`], across replicas in [`bus`]. A
//! server is wired in one place, [`App`] ([`startup`]).

pub mod appender;
pub mod auth;
pub mod bus;
pub mod config;
pub mod delivery;
pub mod deprovision;
pub mod devices;
pub mod domain;
#[cfg(test)]
mod domain_tests;
pub mod error;
pub mod group_list;
pub mod groups;
pub mod grpc;
pub mod health;
pub mod hub;
pub mod key_packages;
pub mod limits;
pub mod log_limit;
pub mod mls;
pub mod server;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transport;

pub use config::Settings;
pub use server::state;
pub use startup::{App, BuildError, RunningApp, open_store};
pub use state::Storage;
pub use transport::ServeError;
