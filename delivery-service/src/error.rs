//! The domain's errors, and what each store and MLS error means to a caller.
//! Their one mapping to gRPC statuses is `grpc/status.rs`.

use std::time::Duration;

use crate::domain::{InvalidClientId, InvalidGroupId};
use crate::mls::MlsError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// The message is not for the group's current epoch; the client catches
    /// up to `current` and retries.
    #[error("{reason}")]
    WrongEpoch { current: u64, reason: String },
    /// The caller's cursor on the group is below what the log still holds
    /// (entries were pruned past retention): it re-syncs the group.
    #[error(
        "entries of this group before {first_seq} were pruned (past the retention period) before this client read them; re-sync the group"
    )]
    EntriesPruned {
        group_id: crate::domain::GroupId,
        first_seq: u64,
    },
    /// A rate limit was hit: the same request succeeds after `retry_after`.
    #[error("{reason}")]
    RateLimited {
        limit: &'static str,
        retry_after: Duration,
        reason: String,
    },
    /// The request or a field of it is larger than allowed; retrying the
    /// same request cannot succeed.
    #[error("{0}")]
    TooLarge(String),
    /// A quota is used up until something completes or expires (no fixed
    /// retry delay, unlike a rate limit).
    #[error("{0}")]
    Exhausted(String),
    /// A concurrent change won; the same request may succeed if retried.
    #[error("{0}")]
    Aborted(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The sender used this message id before for other bytes; nothing was
    /// stored. Not retryable with these bytes.
    #[error("this message id was used before for a different message")]
    IdempotencyKeyReused,
    /// The database cannot be reached: the same request may succeed after
    /// `retry_after`. The cause is logged where it is mapped, rate-limited.
    #[error("the service is temporarily unavailable")]
    Unavailable {
        retry_after: Duration,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The delay an UNAVAILABLE answer suggests: about how long the database
/// watchdog's back-off takes to notice it is back.
pub const UNAVAILABLE_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What a client learns when it asks about a group it may not see: the same
/// answer whether or not the group exists.
pub fn not_a_member() -> ApiError {
    ApiError::PermissionDenied("not a member of this group".into())
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::WrongEpoch { current } => ApiError::WrongEpoch {
                current,
                reason: format!("wrong epoch: the group is at epoch {current}"),
            },
            StoreError::NotMember => not_a_member(),
            StoreError::Pruned {
                group_id,
                first_seq,
            } => ApiError::EntriesPruned {
                group_id,
                first_seq,
            },
            StoreError::BeyondEnd { last } => ApiError::InvalidArgument(format!(
                "cannot acknowledge past the end of the stream (its last entry is {last})"
            )),
            StoreError::StateChanged => {
                ApiError::Aborted("the group changed concurrently; retry".into())
            }
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::Backend(source) => ApiError::Internal(source),
            StoreError::Unavailable(cause) => ApiError::Unavailable {
                retry_after: UNAVAILABLE_RETRY_AFTER,
                cause,
            },
        }
    }
}

impl From<MlsError> for ApiError {
    fn from(error: MlsError) -> Self {
        match error {
            MlsError::WrongEpoch { current, .. } => ApiError::WrongEpoch {
                current,
                reason: format!("wrong epoch: {error}"),
            },
            MlsError::SenderMismatch | MlsError::Forbidden(_) => {
                ApiError::PermissionDenied(error.to_string())
            }
            MlsError::CorruptState => ApiError::Internal(Box::new(error)),
            MlsError::Rejected(_) => ApiError::FailedPrecondition(error.to_string()),
            MlsError::Malformed { .. }
            | MlsError::WrongType { .. }
            | MlsError::GroupMismatch
            | MlsError::Invalid { .. } => ApiError::InvalidArgument(error.to_string()),
        }
    }
}

impl From<InvalidClientId> for ApiError {
    fn from(error: InvalidClientId) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}

impl From<InvalidGroupId> for ApiError {
    fn from(error: InvalidGroupId) -> Self {
        ApiError::InvalidArgument(error.to_string())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
