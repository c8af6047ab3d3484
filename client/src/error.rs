//! Client errors.

use confide_proto::{
    META_CURRENT_EPOCH, META_FIRST_SEQ, META_GROUP_ID, REASON_ENTRIES_PRUNED, REASON_WRONG_EPOCH,
};
use tonic_types::StatusExt;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not `#[from]`: that would make the status the error's source, and
    /// an error chain would print tonic's description of the code again.
    #[error("the delivery service refused: {} ({})", .0.message(), code_name(.0.code()))]
    Rpc(tonic::Status),
    #[error("cannot reach the delivery service: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("MLS: {0}")]
    Mls(String),
    #[error("client storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("no state file at {}; run `confide register` first", .0.display())]
    NoStateFile(std::path::PathBuf),
    #[error(
        "this device is in no group with that id: `confide groups` lists its groups; if you were just added, `confide sync` first; a removed device is out for good"
    )]
    UnknownGroup,
    #[error(
        "the group kept changing under this device: {0} tries in a row were overtaken by other members' commits; nothing of yours was committed, try again"
    )]
    TooManyRetries(u32),
    #[error("the event stream ended")]
    StreamEnded,
    /// The DS refused to sign this device in: it no longer knows the
    /// device with this signature key (removed by its user or the operator,
    /// or registered again with another key). Signing in again cannot help.
    #[error(
        "the delivery service refused to sign this device in ({0}): it was removed from the server or registered again with another key"
    )]
    SignInRefused(String),
    #[error("nothing is pending to commit")]
    NothingToCommit,
    /// A proposal to remove this device waits in the group (it is leaving,
    /// or the DS deprovisioned it): a commit of its own would have to carry
    /// that proposal, and nobody may commit their own removal.
    #[error(
        "this device is on its way out of the group (its removal is proposed, for another member to commit): it can change nothing there"
    )]
    RemovalPending,
    /// Every device of the users asked for is in the group already.
    #[error("every device of {} is in the group already", .0.join(", "))]
    NothingToAdd(Vec<String>),
    /// Every device the DS offered that was not in the group already was
    /// refused: none is certified by the identity key pinned for its user.
    #[error("refused every device offered, none is certified by its user: {}", refused(.0))]
    DevicesRefused(Vec<crate::verify::Ghost>),
    /// Linking a device failed; nothing was linked.
    #[error("{0}")]
    Link(#[from] confide_core::link::LinkError),
    /// The authentication string the person read on the new device is not
    /// the one this device computed: someone else's offer may have been
    /// swapped in. Nothing was certified.
    #[error(
        "the authentication string does not match ({computed} here, {entered} entered): nothing was linked"
    )]
    SasMismatch { computed: String, entered: String },
    /// No answer came before the deadline; the link expired unanswered.
    #[error("no device approved the link in time; nothing was linked")]
    LinkTimedOut,
    /// The DS never answered the commit, so whether the group took it is
    /// unknown; the client keeps it and settles it from the group's log at
    /// the next sync (or before its next commit or send in the group).
    #[error(
        "the delivery service did not answer the commit: whether the group took it is unknown until the next sync settles it"
    )]
    CommitInDoubt,
    /// Another client (in this process or another) holds the state file;
    /// one process at a time may, or MLS state would be written back from
    /// a stale copy. `pid` and `holder` (its command line) are what the
    /// holder wrote into the lock file.
    #[error("{} is in use by {}", path.display(), crate::lock::describe(*pid, holder.as_deref()))]
    StateLocked {
        path: std::path::PathBuf,
        pid: Option<u32>,
        holder: Option<String>,
    },
}

pub type ClientResult<T> = Result<T, ClientError>;

fn refused(ghosts: &[crate::verify::Ghost]) -> String {
    ghosts
        .iter()
        .map(|g| {
            crate::display::safe(&format!(
                "{} (key {}): {}",
                g.client, g.fingerprint, g.reason
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// Whether the DS gave no verdict (see [`in_doubt`]): the same call may be
    /// made again, with the same idempotency key.
    pub fn is_in_doubt(&self) -> bool {
        match self {
            Self::Rpc(status) => in_doubt(status),
            Self::Transport(_) | Self::StreamEnded | Self::CommitInDoubt => true,
            _ => false,
        }
    }

    /// Whether the connection to the DS is gone or the DS gave no verdict
    /// (it restarted, the network dropped, its database failed): a
    /// long-running caller pauses, connects again
    /// ([`crate::Client::reconnect`]) and catches up. The same errors as
    /// [`ClientError::is_in_doubt`], asked for another reason: not whether
    /// to repeat one call, but whether to wait for the DS rather than give
    /// up.
    pub fn is_connection_lost(&self) -> bool {
        self.is_in_doubt()
    }

    /// Whether the DS refused the session token (expired, say after the
    /// computer slept past [`crate::Client::session_renew_at`], or revoked):
    /// [`crate::Client::authenticate`] again and go on. A refused sign-in
    /// itself is [`ClientError::SignInRefused`], not this.
    pub fn needs_new_session(&self) -> bool {
        matches!(self, Self::Rpc(status) if status.code() == tonic::Code::Unauthenticated)
    }
}

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

/// The group and the first seq its log still holds, if the DS refused a
/// read (Subscribe, Fetch) because entries after this client's position
/// were pruned before it read them (`ENTRIES_PRUNED`).
pub fn entries_pruned(status: &tonic::Status) -> Option<(Vec<u8>, u64)> {
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    let info = status.get_details_error_info()?;
    if info.reason != REASON_ENTRIES_PRUNED {
        return None;
    }
    let group = hex::decode(info.metadata.get(META_GROUP_ID)?).ok()?;
    let first_seq = info.metadata.get(META_FIRST_SEQ)?.parse().ok()?;
    Some((group, first_seq))
}

/// Whether a call failed without a verdict from the DS (it restarted, the
/// connection was lost, its database failed): the call may or may not have
/// been carried out.
pub fn in_doubt(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::Internal
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::DeadlineExceeded
    )
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Rpc(status)
    }
}

/// A gRPC status code as its name in the API (`NOT_FOUND`), for people
/// reading an error and for searching the README's table of them.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
