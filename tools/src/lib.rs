//! `confide-tools`: what measures a Confide delivery service from outside,
//! through the client library and the real RPCs.
//!
//! - [`sim`] (`confide-sim`): virtual MLS clients under an open-loop load,
//!   with churn and faults, checking every promise the DS makes.
//! - [`ingress`] (`confide-ingress`): the DS's durable `SendMessage` ingress
//!   against a trivial tonic echo server, and the bytes stored per message.
//! - [`subscriptions`] (`confide-subscriptions`): how many live streams one
//!   DS process holds, and their memory.
//!
//! What they share: [`error::ClientFailed`], the one error-context type;
//! [`binary::main`], the one `main` of the binaries in `src/bin/` (which
//! only parse flags and call these); [`latency`], the histograms; and
//! [`register::register_all`]. The criterion MLS benchmarks are in
//! `benches/`. None of this is part of the client library, so an
//! application embedding `confide-client` builds none of it.

pub mod binary;
pub mod error;
pub mod ingress;
pub mod latency;
pub mod register;
pub mod sim;
pub mod subscriptions;
