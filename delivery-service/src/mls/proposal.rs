//! Standalone proposals: a member's, validated and queued, and the DS's own
//! Remove proposals as the groups' external sender.

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;

use super::{ExternalSenderKey, GroupHandle, MlsError, invalid, parse_public_message};
use crate::domain::ClientId;

impl GroupHandle {
    /// Validates a standalone proposal from `caller` for the current epoch and
    /// queues it, so a later commit can reference it.
    pub fn apply_proposal(&mut self, caller: &ClientId, proposal: &[u8]) -> Result<u64, MlsError> {
        let group_id = self.group_id();
        let message = parse_public_message(proposal, "proposal", &group_id, ContentType::Proposal)?;
        let epoch = self.check_current_epoch(&message)?;
        self.check_sent_by(caller, &message)?;
        let processed = self
            .group
            .process_message(&RustCrypto::default(), ProtocolMessage::from(message))
            .map_err(|e| invalid("proposal", e))?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(MlsError::WrongType {
                what: "proposal",
                expected: "a PublicMessage with a Proposal",
            });
        };
        if matches!(queued.proposal(), Proposal::Add(_)) {
            return Err(MlsError::Rejected(
                "add members with a commit and its Welcome, not a standalone Add".into(),
            ));
        }
        self.group
            .add_proposal(&self.storage, *queued)
            .map_err(|_| MlsError::CorruptState)?;
        Ok(epoch)
    }

    /// The DS's position among the group's external senders, if the group
    /// lists `key` there.
    fn external_sender_index(&self, key: &ExternalSenderKey) -> Option<SenderExtensionIndex> {
        let senders = self.group.group_context().extensions().external_senders()?;
        let ds = key.as_external_sender();
        senders
            .iter()
            .position(|sender| *sender == ds)
            .map(|i| SenderExtensionIndex::new(i as u32))
    }

    /// Proposes, as the DS's external sender, to remove `client`'s leaf, and
    /// queues the proposal as a member's would be (so a commit may refer to
    /// it). Returns the PublicMessage and its epoch; `Ok(None)` if the group
    /// does not list the DS as an external sender or `client` has no leaf.
    pub fn propose_remove(
        &mut self,
        key: &ExternalSenderKey,
        client: &ClientId,
    ) -> Result<Option<(Vec<u8>, u64)>, MlsError> {
        let Some(sender_index) = self.external_sender_index(key) else {
            return Ok(None);
        };
        let identity = client.identity();
        let Some(leaf) = self
            .group
            .members()
            .find(|m| m.credential.serialized_content() == identity.as_slice())
            .map(|m| m.index)
        else {
            return Ok(None);
        };
        let message = ExternalProposal::new_remove::<openmls_rust_crypto::OpenMlsRustCrypto>(
            leaf,
            self.group.group_id().clone(),
            self.group.group_context().epoch(),
            key.signer(),
            sender_index,
        )
        .map_err(|_| MlsError::CorruptState)?;
        let bytes = message
            .tls_serialize_detached()
            .map_err(|_| MlsError::CorruptState)?;
        let group_id = self.group_id();
        let parsed = parse_public_message(&bytes, "proposal", &group_id, ContentType::Proposal)?;
        let processed = self
            .group
            .process_message(&RustCrypto::default(), ProtocolMessage::from(parsed))
            .map_err(|e| invalid("proposal", e))?;
        let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
            return Err(MlsError::CorruptState);
        };
        self.group
            .add_proposal(&self.storage, *queued)
            .map_err(|_| MlsError::CorruptState)?;
        Ok(Some((bytes, self.epoch())))
    }
}
