//! End-to-end tests: real delivery services on port 0 against a fresh
//! PostgreSQL database per test, driven by real clients. One binary; the
//! harness is the `confide_tests` library.

mod authorization;
mod conversation;
mod database;
mod delivery;
mod deprovision;
mod devices;
mod epochs;
mod ghost;
mod handshakes;
mod history;
mod hostile;
mod in_doubt;
mod ingress;
mod key_packages;
mod limits;
mod linking;
mod malformed;
mod membership;
mod outbox;
mod privacy;
mod replay;
mod replicas;
mod restart;
mod resync;
mod retention;
mod sessions;
mod shutdown;
mod simulator;
mod state_file;
mod subscriptions;
mod tls;
