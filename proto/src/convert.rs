//! Conversions both ways between `confide.v1` messages and the core types
//! ([`confide_core::ids`]), checking every field by the core rules: a
//! missing or invalid one is INVALID_ARGUMENT naming it.

use confide_core::{ClientId, GroupId};
use tonic::Status;

use crate::v1;
use crate::validation::RequireField;

impl TryFrom<v1::ClientId> for ClientId {
    type Error = Status;

    fn try_from(value: v1::ClientId) -> Result<Self, Status> {
        ClientId::new(value.user, value.device).map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

impl From<&ClientId> for v1::ClientId {
    fn from(value: &ClientId) -> Self {
        v1::ClientId {
            user: value.user().to_string(),
            device: value.device().to_string(),
        }
    }
}

/// The required `client` field of a request.
pub fn client_field(value: Option<v1::ClientId>) -> Result<ClientId, Status> {
    value.require("client")?.try_into()
}

/// A required `group_id` field.
pub fn group_id_field(bytes: &[u8]) -> Result<GroupId, Status> {
    if bytes.is_empty() {
        return Err(Status::invalid_argument("missing field `group_id`"));
    }
    GroupId::new(bytes.to_vec()).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn a_client_id_goes_to_proto_and_back_unchanged() {
        let alice = ClientId::new("alice", "phone").unwrap();
        let proto = v1::ClientId::from(&alice);
        assert_eq!(client_field(Some(proto)).expect("a valid id"), alice);
    }

    #[test]
    fn a_missing_or_invalid_client_or_group_id_is_invalid_argument_naming_it() {
        let missing = client_field(None).unwrap_err();
        assert_eq!(missing.code(), Code::InvalidArgument);
        assert!(missing.message().contains("`client`"));
        let bad = client_field(Some(v1::ClientId {
            user: "al ice".into(),
            device: "phone".into(),
        }))
        .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        assert!(bad.message().contains("user must be"));
        assert_eq!(
            group_id_field(b"").unwrap_err().code(),
            Code::InvalidArgument
        );
        assert_eq!(
            group_id_field(&[0; 256]).unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
