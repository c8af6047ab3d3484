//! Client errors.

use confide_proto::{META_CURRENT_EPOCH, REASON_WRONG_EPOCH};
use tonic_types::StatusExt;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the delivery service refused the call: {}: {}", .0.code(), .0.message())]
    Rpc(#[from] tonic::Status),
    #[error("cannot reach the delivery service: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("MLS: {0}")]
    Mls(String),
    #[error("client storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("this client is not in that group")]
    UnknownGroup,
    #[error("gave up after losing {0} commit races in a row")]
    TooManyRetries(u32),
    #[error("the event stream ended")]
    StreamEnded,
    #[error("nothing is pending to commit")]
    NothingToCommit,
}

pub type ClientResult<T> = Result<T, ClientError>;

/// Wraps any openmls error.
pub fn mls<E: std::fmt::Display>(error: E) -> ClientError {
    ClientError::Mls(error.to_string())
}

/// The group's current epoch, if the status says the message was for the wrong one.
pub fn wrong_epoch(status: &tonic::Status) -> Option<u64> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    let info = status.get_details_error_info()?;
    if info.reason != REASON_WRONG_EPOCH {
        return None;
    }
    info.metadata.get(META_CURRENT_EPOCH)?.parse().ok()
}
