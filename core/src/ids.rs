//! Clients (`user/device`), their names, and MLS group ids, with the rules
//! every side checks them by.

use std::fmt;

/// Longest user or device name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest MLS group id the DS accepts.
pub const MAX_GROUP_ID_LEN: usize = 255;

/// Longest message id (the idempotency key a sender picks for each message).
pub const MAX_MESSAGE_ID_LEN: usize = 64;

/// Whether `id` can be a message id: 1 to [`MAX_MESSAGE_ID_LEN`] bytes.
pub fn valid_message_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_MESSAGE_ID_LEN
}

/// One client: a device of a user. Its MLS credential identity is `user/device`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ClientId {
    user: String,
    device: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidClientId {
    #[error("{0} must be 1 to 64 characters of A-Z a-z 0-9 . _ -")]
    BadName(&'static str),
    #[error("credential identity is not `user/device`")]
    BadIdentity,
}

/// Whether `name` is a valid user or device name.
pub fn valid_user(name: &str) -> bool {
    valid_name(name)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ClientId {
    pub fn new(
        user: impl Into<String>,
        device: impl Into<String>,
    ) -> Result<Self, InvalidClientId> {
        let (user, device) = (user.into(), device.into());
        if !valid_name(&user) {
            return Err(InvalidClientId::BadName("user"));
        }
        if !valid_name(&device) {
            return Err(InvalidClientId::BadName("device"));
        }
        Ok(Self { user, device })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self) -> &str {
        &self.device
    }

    /// The MLS credential identity naming this client.
    pub fn identity(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// Parses an MLS credential identity.
    pub fn from_identity(identity: &[u8]) -> Result<Self, InvalidClientId> {
        let text = std::str::from_utf8(identity).map_err(|_| InvalidClientId::BadIdentity)?;
        let (user, device) = text.split_once('/').ok_or(InvalidClientId::BadIdentity)?;
        Self::new(user, device)
    }
}

/// As its identity string `user/device` (checked when read back).
impl TryFrom<String> for ClientId {
    type Error = InvalidClientId;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::from_identity(text.as_bytes())
    }
}

impl From<ClientId> for String {
    fn from(client: ClientId) -> Self {
        client.to_string()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, for tables.
        f.pad(&format!("{}/{}", self.user, self.device))
    }
}

/// An MLS group id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("group id must be 1 to 255 bytes")]
pub struct InvalidGroupId;

impl GroupId {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, InvalidGroupId> {
        let bytes = bytes.into();
        if bytes.is_empty() || bytes.len() > MAX_GROUP_ID_LEN {
            return Err(InvalidGroupId);
        }
        Ok(Self(bytes))
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", hex::encode(&self.0))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_64_characters_of_letters_digits_dot_underscore_and_dash() {
        assert!(ClientId::new("alice.b_c-1", "Phone2").is_ok());
        assert!(ClientId::new("a".repeat(64), "d").is_ok());
        assert_eq!(
            ClientId::new("a".repeat(65), "d"),
            Err(InvalidClientId::BadName("user"))
        );
        assert_eq!(
            ClientId::new("alice", ""),
            Err(InvalidClientId::BadName("device"))
        );
        for bad in ["al ice", "alice/x", "ålice", "a\u{202e}"] {
            assert!(!valid_user(bad), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_client_is_named_user_slash_device_in_its_credential() {
        let alice = ClientId::new("alice", "phone").unwrap();
        assert_eq!(alice.identity(), b"alice/phone");
        assert_eq!(ClientId::from_identity(b"alice/phone"), Ok(alice));
        assert_eq!(
            ClientId::from_identity(b"alice"),
            Err(InvalidClientId::BadIdentity)
        );
        assert_eq!(
            ClientId::from_identity(b"alice/phone/2"),
            Err(InvalidClientId::BadName("device"))
        );
    }

    #[test]
    fn group_ids_are_1_to_255_bytes() {
        assert!(GroupId::new(vec![7; 255]).is_ok());
        assert_eq!(GroupId::new(Vec::new()), Err(InvalidGroupId));
        assert_eq!(GroupId::new(vec![7; 256]), Err(InvalidGroupId));
        assert_eq!(GroupId::new(vec![0xab, 0x01]).unwrap().to_string(), "ab01");
    }
}
