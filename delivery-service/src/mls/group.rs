//! A group's public state: openmls `PublicGroup` with its own small storage,
//! built at creation, persisted as one blob, and read by the checks.

use std::collections::HashMap;

use confide_core::certificate::certified_client;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;

use super::group_info::parse_group_info;
use super::{CIPHERSUITE, MlsError, client_of, invalid};
use crate::domain::{ClientId, GroupId};

/// A group's public state: openmls [`PublicGroup`] with its own small
/// in-memory storage, persisted as one blob of that storage.
pub struct GroupHandle {
    pub(super) group: PublicGroup,
    pub(super) storage: MemoryStorage,
}

/// A leaf's identity as the DS checks it against registrations: its client,
/// signature key, and the identity key of the device certificate that
/// vouches for both.
pub struct LeafIdentity {
    pub client: ClientId,
    pub signature_key: Vec<u8>,
    pub identity_key: Vec<u8>,
}

/// The identity of a leaf that must carry a device certificate verifying
/// for its credential and signature key (whether the certificate's identity
/// key is the user's is the caller's to check, against the store).
pub(super) fn certified_leaf(leaf: &LeafNode) -> Result<LeafIdentity, MlsError> {
    let client = client_of(leaf.credential())?;
    let (_, certificate) = certified_client(leaf).map_err(|e| {
        MlsError::Rejected(format!(
            "{client}'s leaf carries no valid device certificate: {e}"
        ))
    })?;
    Ok(LeafIdentity {
        client,
        signature_key: leaf.signature_key().as_slice().to_vec(),
        identity_key: certificate.identity_key().to_vec(),
    })
}

impl GroupHandle {
    /// Builds the public state of a new group from its GroupInfo and ratchet
    /// tree. This re-verifies every leaf signature, so it is for creation only.
    pub fn create(group_info: &[u8], ratchet_tree: &[u8]) -> Result<Self, MlsError> {
        let group_info = parse_group_info(group_info)?;
        if group_info.ciphersuite() != CIPHERSUITE {
            return Err(invalid(
                "group info",
                format!("ciphersuite must be {CIPHERSUITE:?}"),
            ));
        }
        GroupId::new(group_info.group_id().as_slice().to_vec())
            .map_err(|e| invalid("group info", e))?;
        let mut slice = ratchet_tree;
        let tree = RatchetTreeIn::tls_deserialize(&mut slice).map_err(|_| MlsError::Malformed {
            what: "ratchet tree",
        })?;
        let storage = MemoryStorage::default();
        let (group, _) = PublicGroup::from_external(
            &RustCrypto::default(),
            &storage,
            tree,
            group_info,
            ProposalStore::new(),
        )
        .map_err(|e| invalid("group", e))?;
        Ok(Self { group, storage })
    }

    /// Restores the state persisted by [`GroupHandle::to_blob`].
    pub fn from_blob(group_id: &GroupId, blob: &[u8]) -> Result<Self, MlsError> {
        let values = decode_map(blob).ok_or(MlsError::CorruptState)?;
        Self::load(
            values,
            &openmls::group::GroupId::from_slice(group_id.as_slice()),
        )
    }

    /// The group's public state from the values of its storage.
    fn load(
        values: HashMap<Vec<u8>, Vec<u8>>,
        group_id: &openmls::group::GroupId,
    ) -> Result<Self, MlsError> {
        let storage = MemoryStorage::default();
        *storage.values.write().map_err(|_| MlsError::CorruptState)? = values;
        let group = PublicGroup::load(&storage, group_id)
            .map_err(|_| MlsError::CorruptState)?
            .ok_or(MlsError::CorruptState)?;
        Ok(Self { group, storage })
    }

    pub fn to_blob(&self) -> Vec<u8> {
        let values = self
            .storage
            .values
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        encode_map(&values)
    }

    pub fn group_id(&self) -> GroupId {
        GroupId::new(self.group.group_id().as_slice().to_vec())
            .expect("validated when the group was created")
    }

    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// Every member leaf, each of which must carry a device certificate.
    /// O(members): for a new group, which has one.
    pub fn certified_members(&self) -> Result<Vec<LeafIdentity>, MlsError> {
        self.group
            .members()
            .map(|member| {
                let leaf = self
                    .group
                    .leaf(member.index)
                    .ok_or(MlsError::CorruptState)?;
                certified_leaf(leaf)
            })
            .collect()
    }

    /// The TLS-serialised ratchet tree, for clients that need it.
    pub fn ratchet_tree(&self) -> Vec<u8> {
        self.group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("a ratchet tree always serialises")
    }

    /// The client whose leaf sent a handshake message; only members may.
    pub(super) fn sender_client(&self, sender: &Sender) -> Result<ClientId, MlsError> {
        match sender {
            Sender::Member(index) => {
                let leaf = self
                    .group
                    .leaf(*index)
                    .ok_or_else(|| invalid("sender", "no member at that leaf"))?;
                client_of(leaf.credential())
            }
            _ => Err(MlsError::Rejected(
                "only group members may send handshake messages".into(),
            )),
        }
    }

    /// Refuses a handshake message for another epoch than the current one;
    /// returns the current epoch.
    pub(super) fn check_current_epoch(&self, message: &PublicMessageIn) -> Result<u64, MlsError> {
        let (got, current) = (message.epoch().as_u64(), self.epoch());
        if got != current {
            return Err(MlsError::WrongEpoch { got, current });
        }
        Ok(current)
    }

    /// Refuses a handshake message that `caller`'s own leaf did not send.
    pub(super) fn check_sent_by(
        &self,
        caller: &ClientId,
        message: &PublicMessageIn,
    ) -> Result<(), MlsError> {
        if self.sender_client(message.sender())? != *caller {
            return Err(MlsError::SenderMismatch);
        }
        Ok(())
    }
}

fn encode_map(values: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let size: usize = values.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(values.len() as u32).to_be_bytes());
    // Sorted, so the same state always gives the same blob.
    let mut entries: Vec<_> = values.iter().collect();
    entries.sort();
    for (key, value) in entries {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    out
}

fn decode_map(mut blob: &[u8]) -> Option<HashMap<Vec<u8>, Vec<u8>>> {
    fn take<'a>(blob: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = blob.split_at_checked(n)?;
        *blob = tail;
        Some(head)
    }
    fn take_u32(blob: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(blob, 4)?.try_into().ok()?) as usize)
    }
    let count = take_u32(&mut blob)?;
    let mut map = HashMap::with_capacity(count.min(1024));
    for _ in 0..count {
        let (key_len, value_len) = (take_u32(&mut blob)?, take_u32(&mut blob)?);
        let key = take(&mut blob, key_len)?.to_vec();
        let value = take(&mut blob, value_len)?.to_vec();
        map.insert(key, value);
    }
    blob.is_empty().then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_blob_round_trips() {
        let map: HashMap<Vec<u8>, Vec<u8>> =
            [(b"tree".to_vec(), vec![1, 2, 3]), (b"ctx".to_vec(), vec![])].into();
        assert_eq!(decode_map(&encode_map(&map)), Some(map));
    }

    #[test]
    fn truncated_state_blob_is_refused() {
        let map: HashMap<Vec<u8>, Vec<u8>> = [(b"tree".to_vec(), vec![1, 2, 3])].into();
        let blob = encode_map(&map);
        assert_eq!(decode_map(&blob[..blob.len() - 1]), None);
    }
}
