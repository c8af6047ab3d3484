//! `confide-core`: what the delivery service, the client library and any
//! other implementation of Confide must agree on, defined once. No I/O.
//!
//! - [`ids`]: clients (`user/device`), names and group ids, and their rules.
//! - [`profile`]: the one MLS profile: ciphersuite, wire-format policy,
//!   group and join configuration, key package capabilities and lifetimes.
//! - [`auth`]: the bytes a client signs to answer a sign-in challenge.
//! - [`certificate`]: device certificates and revocations by a user's
//!   identity key, carried in every leaf.
//! - [`link`]: the linking code, the keys and SAS derived from it, and
//!   the sealed offer and answer of linking a new device.
//! - [`fingerprint`]: key fingerprints and the group safety code that
//!   members compare out of band.
//! - [`content`]: what an application message carries inside its
//!   ciphertext (MIMI content: type, sending time, text, a group's name).
//!
//! The byte-level definitions ([`auth::challenge_signing_payload`],
//! [`certificate::certificate_signing_payload`],
//! [`certificate::revocation_signing_payload`],
//! [`fingerprint::fingerprint`], [`fingerprint::safety_code`],
//! [`content::Content::to_bytes`]) each have a
//! test vector: another implementation must produce the same bytes.

pub mod auth;
pub mod certificate;
pub mod content;
pub mod fingerprint;
pub mod ids;
pub mod link;
pub mod profile;

pub use ids::{ClientId, GroupId};
