//! Everything the DS knows about MLS: parsing client bytes, validating
//! handshakes with openmls [`PublicGroup`], and the group's public state as
//! one blob.
//!
//! The DS never holds a private key or a group secret. It sees what RFC 9420
//! §16.4.1 says a delivery service sees: group ids, epochs, the public ratchet
//! tree (credentials and public keys) and sizes. Application messages stay
//! PrivateMessages it cannot open.

mod commit;
mod external_commit;
mod external_sender;
mod group;
mod group_info;
mod key_package;
mod proposal;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use sha2::{Digest, Sha256};

use crate::domain::{ClientId, GroupId};
use crate::store::DedupKey;

pub use commit::{CommitMessage, StagedGroupCommit};
pub use confide_core::profile::{CIPHERSUITE, LifetimeRules};
pub use external_sender::ExternalSenderKey;
pub use group::{GroupHandle, LeafIdentity};
pub use key_package::{ValidKeyPackage, validate_key_package};

/// Why client-supplied MLS input was refused. Each maps to INVALID_ARGUMENT
/// except where noted at the mapping in `crate::error` (`From<MlsError>`).
#[derive(Debug, thiserror::Error)]
pub enum MlsError {
    #[error("{what} is not a valid TLS-encoded MLS message")]
    Malformed { what: &'static str },
    #[error("{what} must be {expected}")]
    WrongType {
        what: &'static str,
        expected: &'static str,
    },
    #[error("the message is for another group")]
    GroupMismatch,
    #[error("the message is for epoch {got}, the group is at epoch {current}")]
    WrongEpoch { got: u64, current: u64 },
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error("the sender is not the authenticated client")]
    SenderMismatch,
    /// Something the caller may not do (PERMISSION_DENIED), such as an
    /// external commit that brings in or removes another client.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Rejected(String),
    #[error("the stored group state is unreadable")]
    CorruptState,
}

fn invalid(what: &'static str, reason: impl std::fmt::Display) -> MlsError {
    MlsError::Invalid {
        what,
        reason: reason.to_string(),
    }
}

fn parse_message(bytes: &[u8], what: &'static str) -> Result<MlsMessageBodyIn, MlsError> {
    let mut slice = bytes;
    let message =
        MlsMessageIn::tls_deserialize(&mut slice).map_err(|_| MlsError::Malformed { what })?;
    if !slice.is_empty() {
        return Err(MlsError::Malformed { what });
    }
    Ok(message.extract())
}

/// The client a credential names ([`confide_core::profile::client_of`]).
pub fn client_of(credential: &Credential) -> Result<ClientId, MlsError> {
    confide_core::profile::client_of(credential).map_err(|e| invalid("credential", e))
}

/// SHA-256 over a domain label and the parts, as an idempotency key.
pub fn dedup_key(label: &str, parts: &[&[u8]]) -> DedupKey {
    let mut hasher = Sha256::new();
    hasher.update(label.as_bytes());
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// An application message that may be appended to a group log.
pub struct ApplicationMessage {
    pub epoch: u64,
}

/// Checks that bytes are a PrivateMessage with application content for `group_id`.
pub fn parse_application_message(
    bytes: &[u8],
    group_id: &GroupId,
) -> Result<ApplicationMessage, MlsError> {
    let message = match parse_message(bytes, "message")? {
        MlsMessageBodyIn::PrivateMessage(message) => message,
        MlsMessageBodyIn::PublicMessage(_) => {
            return Err(MlsError::WrongType {
                what: "an application message",
                expected: "a PrivateMessage (application messages are always encrypted)",
            });
        }
        _ => {
            return Err(MlsError::WrongType {
                what: "message",
                expected: "a PrivateMessage",
            });
        }
    };
    if message.group_id().as_slice() != group_id.as_slice() {
        return Err(MlsError::GroupMismatch);
    }
    if message.content_type() != ContentType::Application {
        return Err(MlsError::WrongType {
            what: "a handshake message",
            expected: "a PublicMessage submitted as a commit or proposal",
        });
    }
    Ok(ApplicationMessage {
        epoch: message.epoch().as_u64(),
    })
}

fn parse_public_message(
    bytes: &[u8],
    what: &'static str,
    group_id: &GroupId,
    content: ContentType,
) -> Result<PublicMessageIn, MlsError> {
    let message = match parse_message(bytes, what)? {
        MlsMessageBodyIn::PublicMessage(message) => message,
        MlsMessageBodyIn::PrivateMessage(_) => {
            return Err(MlsError::WrongType {
                what,
                expected: "a PublicMessage (groups use the pure-plaintext handshake policy)",
            });
        }
        _ => {
            return Err(MlsError::WrongType {
                what,
                expected: "a PublicMessage",
            });
        }
    };
    if message.group_id().as_slice() != group_id.as_slice() {
        return Err(MlsError::GroupMismatch);
    }
    if message.content_type() != content {
        return Err(MlsError::WrongType {
            what,
            expected: match content {
                ContentType::Commit => "a PublicMessage with a Commit",
                _ => "a PublicMessage with a Proposal",
            },
        });
    }
    Ok(message)
}

/// The epoch a handshake message claims, read before full validation so a
/// stale resubmission can be answered from the log.
pub fn handshake_epoch(bytes: &[u8]) -> Option<u64> {
    match parse_message(bytes, "message").ok()? {
        MlsMessageBodyIn::PublicMessage(message) => Some(message.epoch().as_u64()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_an_application_message() {
        let group = GroupId::new(b"g".to_vec()).unwrap();
        assert!(matches!(
            parse_application_message(b"\x00\x01garbage", &group),
            Err(MlsError::Malformed { .. })
        ));
    }
}
