//! GroupInfos: parsed from an MlsMessage, and the GroupInfo submitted with
//! a commit checked against the epoch that commit creates.

use openmls::messages::group_info::{GroupInfo, VerifiableGroupInfo};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_rust_crypto::RustCrypto;

use super::{CIPHERSUITE, MlsError, invalid, parse_message};
use crate::domain::GroupId;

/// The GroupInfo an MlsMessage carries.
pub(super) fn parse_group_info(bytes: &[u8]) -> Result<VerifiableGroupInfo, MlsError> {
    let MlsMessageBodyIn::GroupInfo(info) = parse_message(bytes, "group info")? else {
        return Err(MlsError::WrongType {
            what: "group info",
            expected: "an MlsMessage carrying a GroupInfo",
        });
    };
    Ok(info)
}

/// The epoch a staged commit creates, as its GroupInfo must describe it.
pub(super) struct NewEpoch<'a> {
    pub group_id: &'a GroupId,
    pub epoch: u64,
    pub context: &'a GroupContext,
    /// The committer's signature key in the new epoch.
    pub committer_key: SignaturePublicKey,
    /// The commit's confirmation tag, TLS-serialised.
    pub confirmation_tag: Vec<u8>,
}

/// Checks the GroupInfo submitted with a commit: it names the new epoch of
/// this group, the committer signed it, and it carries exactly the new
/// epoch's group context and the commit's confirmation tag.
pub(super) fn check_group_info(
    crypto: &RustCrypto,
    bytes: &[u8],
    new_epoch: NewEpoch<'_>,
) -> Result<(), MlsError> {
    let info = parse_group_info(bytes)?;
    check_names_the_new_epoch(&info, &new_epoch)?;
    let info = check_signed_by_the_committer(crypto, info, new_epoch.committer_key)?;
    check_carries_the_new_context(&info, new_epoch.context)?;
    check_carries_the_confirmation_tag(&info, &new_epoch.confirmation_tag)
}

fn check_names_the_new_epoch(
    info: &VerifiableGroupInfo,
    new_epoch: &NewEpoch<'_>,
) -> Result<(), MlsError> {
    if info.group_id().as_slice() != new_epoch.group_id.as_slice()
        || info.epoch().as_u64() != new_epoch.epoch
    {
        return Err(invalid(
            "group info",
            "it must describe this group's new epoch",
        ));
    }
    Ok(())
}

fn check_signed_by_the_committer(
    crypto: &RustCrypto,
    info: VerifiableGroupInfo,
    committer_key: SignaturePublicKey,
) -> Result<GroupInfo, MlsError> {
    let signer = OpenMlsSignaturePublicKey::from_signature_key(
        committer_key,
        CIPHERSUITE.signature_algorithm(),
    );
    info.verify(crypto, &signer)
        .map_err(|_| invalid("group info", "it is not signed by the committer"))
}

/// The group context binds the tree hash and the transcript: equal contexts
/// mean this GroupInfo describes exactly the epoch the commit creates, so
/// joiners and re-syncing clients get the real group.
fn check_carries_the_new_context(info: &GroupInfo, context: &GroupContext) -> Result<(), MlsError> {
    if info.group_context() != context {
        return Err(invalid(
            "group info",
            "it does not describe the epoch this commit creates",
        ));
    }
    Ok(())
}

/// The commit's confirmation tag is a MAC only members can check, but the
/// committer also signs it into the GroupInfo: a commit whose tag differs
/// (corrupted on the way, say) would wedge every member.
fn check_carries_the_confirmation_tag(info: &GroupInfo, tag: &[u8]) -> Result<(), MlsError> {
    if group_info_confirmation_tag(info)? != tag {
        return Err(invalid(
            "commit",
            "its confirmation tag is not the one its GroupInfo carries",
        ));
    }
    Ok(())
}

/// The confirmation tag of a GroupInfo, TLS-serialised (openmls keeps its
/// accessor private): it follows the group context and the extensions.
fn group_info_confirmation_tag(info: &GroupInfo) -> Result<Vec<u8>, MlsError> {
    use openmls::prelude::tls_codec::Size as _;
    let bytes = info
        .tls_serialize_detached()
        .map_err(|e| invalid("group info", e))?;
    let offset = info.group_context().tls_serialized_len() + info.extensions().tls_serialized_len();
    let mut rest = bytes
        .get(offset..)
        .ok_or_else(|| invalid("group info", "it has no confirmation tag"))?;
    let before = rest.len();
    VLBytes::tls_deserialize(&mut rest).map_err(|e| invalid("group info", e))?;
    Ok(bytes[offset..offset + before - rest.len()].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_tag_is_read_from_a_group_info() {
        use openmls_basic_credential::SignatureKeyPair;
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(b"alice/phone".to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let mut group = MlsGroup::new(&provider, &signer, &config, credential).unwrap();
        let (_, _, info) = group
            .self_update(&provider, &signer, LeafNodeParameters::default())
            .unwrap()
            .into_contents();
        group.merge_pending_commit(&provider).unwrap();
        let expected = group.confirmation_tag().tls_serialize_detached().unwrap();
        assert_eq!(
            group_info_confirmation_tag(&info.unwrap()).unwrap(),
            expected
        );
    }
}
