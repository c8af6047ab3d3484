//! The domain's behaviour with real MLS, on the in-memory store: who may
//! register, publish and commit under a user's identity key, external
//! commits, the devices list and the linking mailbox, revocations. Each
//! refusal is checked for its status, its reason, and that nothing changed.

mod commits;
mod external_commits;
mod fixture;
mod key_packages;
mod links;
mod registration;
mod revocation;
