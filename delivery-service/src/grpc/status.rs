//! The one mapping from domain errors to gRPC statuses, with typed details
//! for what a client must act on. Internal causes are logged here, where they
//! are mapped; the client gets a short reason.

use std::collections::HashMap;
use std::time::Duration;

use confide_proto::{
    ERROR_DOMAIN, META_CURRENT_EPOCH, META_FIRST_SEQ, META_GROUP_ID, META_LIMIT,
    REASON_ENTRIES_PRUNED, REASON_IDEMPOTENCY_KEY_REUSED, REASON_RATE_LIMITED, REASON_TOO_LARGE,
    REASON_WRONG_EPOCH,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::ApiError;
use crate::log_limit::LogLimit;

/// At most one log line per period for calls refused while the database is
/// unavailable (they all share one cause, which the watchdog logs too).
static UNAVAILABLE_LOG: LogLimit = LogLimit::new(Duration::from_secs(10));

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
            ApiError::Exhausted(m) => Status::resource_exhausted(m),
            ApiError::WrongEpoch { current, reason } => Status::with_error_details(
                Code::FailedPrecondition,
                reason,
                ErrorDetails::with_error_info(
                    REASON_WRONG_EPOCH,
                    ERROR_DOMAIN,
                    HashMap::from([(META_CURRENT_EPOCH.to_string(), current.to_string())]),
                ),
            ),
            ApiError::EntriesPruned {
                ref group_id,
                first_seq,
            } => Status::with_error_details(
                Code::FailedPrecondition,
                error.to_string(),
                ErrorDetails::with_error_info(
                    REASON_ENTRIES_PRUNED,
                    ERROR_DOMAIN,
                    HashMap::from([
                        (META_GROUP_ID.to_string(), hex::encode(group_id.as_slice())),
                        (META_FIRST_SEQ.to_string(), first_seq.to_string()),
                    ]),
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
