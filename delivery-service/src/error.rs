//! The one mapping from domain errors to gRPC statuses. Internal causes are
//! logged here, where they are mapped; the client gets a short reason.

use std::collections::HashMap;
use std::time::Duration;

use confide_proto::{
    ERROR_DOMAIN, META_CURRENT_EPOCH, META_LIMIT, REASON_IDEMPOTENCY_KEY_REUSED,
    REASON_RATE_LIMITED, REASON_TOO_LARGE, REASON_WRONG_EPOCH,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{InvalidClientId, InvalidGroupId};
use crate::log_limit::LogLimit;
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

/// At most one log line per period for calls refused while the database is
/// unavailable (they all share one cause, which the watchdog logs too).
static UNAVAILABLE_LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

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
            MlsError::SenderMismatch => ApiError::PermissionDenied(error.to_string()),
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

impl From<Status> for ApiError {
    /// Statuses from field validation in `confide_proto::validation`.
    fn from(status: Status) -> Self {
        match status.code() {
            Code::ResourceExhausted => ApiError::TooLarge(status.message().to_string()),
            _ => ApiError::InvalidArgument(status.message().to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Aborted(m) => Status::aborted(m),
            ApiError::WrongEpoch { current, reason } => Status::with_error_details(
                Code::FailedPrecondition,
                reason,
                ErrorDetails::with_error_info(
                    REASON_WRONG_EPOCH,
                    ERROR_DOMAIN,
                    HashMap::from([(META_CURRENT_EPOCH.to_string(), current.to_string())]),
                ),
            ),
            ApiError::RateLimited {
                limit,
                retry_after,
                reason,
            } => {
                let mut details = ErrorDetails::with_retry_info(Some(retry_after));
                details.set_error_info(
                    REASON_RATE_LIMITED,
                    ERROR_DOMAIN,
                    HashMap::from([(META_LIMIT.to_string(), limit.to_string())]),
                );
                Status::with_error_details(Code::ResourceExhausted, reason, details)
            }
            ApiError::TooLarge(reason) => Status::with_error_details(
                Code::ResourceExhausted,
                reason,
                ErrorDetails::with_error_info(REASON_TOO_LARGE, ERROR_DOMAIN, HashMap::new()),
            ),
            ApiError::Internal(source) => {
                tracing::error!(error = %source, "internal error");
                Status::internal("internal error")
            }
            ApiError::IdempotencyKeyReused => Status::with_error_details(
                Code::AlreadyExists,
                error.to_string(),
                ErrorDetails::with_error_info(
                    REASON_IDEMPOTENCY_KEY_REUSED,
                    ERROR_DOMAIN,
                    HashMap::new(),
                ),
            ),
            ApiError::Unavailable { retry_after, cause } => {
                if let Some(not_logged) = UNAVAILABLE_LOG.admit() {
                    tracing::warn!(%cause, similar_calls_not_logged = not_logged,
                        "a call was refused: the database is unavailable");
                }
                Status::with_error_details(
                    Code::Unavailable,
                    "the database is unavailable; retry later",
                    ErrorDetails::with_retry_info(Some(retry_after)),
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
