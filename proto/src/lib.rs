//! The `confide.v1` gRPC API: generated prost types and tonic services, the
//! file descriptor set for server reflection, and the one place where proto
//! input is checked for missing fields ([`validation`]), and conversions both
//! ways between proto messages and the core types ([`convert`]).
//!
//! Only this crate and the delivery service's thin gRPC adapters know about
//! prost types; the domain works on its own types.

pub mod convert;
pub mod validation;

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("confide.v1");
}

/// `confide.bench.v1`: the trivial echo service `confide-ingress` measures
/// the delivery service against. Not part of the API; no server serves it.
pub mod bench {
    #[allow(clippy::all, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("confide.bench.v1");
    }
}

/// Encoded `FileDescriptorSet` of `confide.v1`, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("confide_v1_descriptor");

/// gRPC metadata key carrying `Bearer <session token>`.
pub const AUTHORIZATION_HEADER: &str = "authorization";

/// gRPC metadata key carrying the operator's admin token (RemoveClient).
pub const ADMIN_TOKEN_HEADER: &str = "x-confide-admin-token";

/// `google.rpc.ErrorInfo` domain of every typed error detail Confide sends.
pub const ERROR_DOMAIN: &str = "confide.v1";

/// ErrorInfo reason: the message's epoch is not the one the DS accepts.
/// Metadata `current_epoch` carries the group's epoch.
pub const REASON_WRONG_EPOCH: &str = "WRONG_EPOCH";

/// ErrorInfo reason: a rate limit was hit; a `google.rpc.RetryInfo` detail
/// says when to try again. Metadata `limit` names the limit.
pub const REASON_RATE_LIMITED: &str = "RATE_LIMITED";

/// ErrorInfo reason: the request or one of its fields is larger than the
/// DS accepts; retrying the same request cannot succeed.
pub const REASON_TOO_LARGE: &str = "TOO_LARGE";

/// ErrorInfo reason (with ALREADY_EXISTS): the sender used this message id
/// before for a different message; the original was kept, this one was not
/// stored. A retry must resend the original bytes, a new message needs a new
/// id.
pub const REASON_IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";

/// ErrorInfo reason (with FAILED_PRECONDITION, from Subscribe and Fetch):
/// entries of a group after the caller's cursor were pruned (past the DS's
/// retention) before it read them, so it cannot go on from there. Metadata
/// `group_id` (hex) names the group and `first_seq` the first entry still
/// held; the client re-syncs the group (external commit) and goes on.
pub const REASON_ENTRIES_PRUNED: &str = "ENTRIES_PRUNED";

/// ErrorInfo metadata key with a group id, in lowercase hex.
pub const META_GROUP_ID: &str = "group_id";

/// ErrorInfo metadata key with the first seq a group's log still holds.
pub const META_FIRST_SEQ: &str = "first_seq";

/// ErrorInfo metadata key naming the limit that was hit.
pub const META_LIMIT: &str = "limit";

/// ErrorInfo metadata key with the group's current epoch.
pub const META_CURRENT_EPOCH: &str = "current_epoch";

/// The bytes a client signs to answer an authentication challenge (defined,
/// with its test vector, in [`confide_core::auth`]).
pub use confide_core::auth::challenge_signing_payload;
