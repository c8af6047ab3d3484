//! Groups: creating one, joining one from a Welcome, changing who is in it
//! (each change one commit, see `commit.rs`), and reading its state as this
//! client's MLS state has it.

use confide_core::ClientId;
use confide_core::profile::{self, client_of};
use confide_proto::v1;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;

use super::commit::{Change, CommitSummary};
use super::{Client, to_bytes};
use crate::error::{ClientError, ClientResult, mls};
use crate::events::{Event, GroupId};
use crate::roster::{self, GroupMember};
use crate::store::Stream;
use crate::verify::Ghost;

/// What [`Client::add_users`] did: the clients it added, the devices it
/// refused (not certified by their user: ghosts) and its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Added {
    pub clients: Vec<ClientId>,
    pub refused: Vec<Ghost>,
    pub commit: CommitSummary,
}

impl Client {
    /// Creates a group with this client as its only member.
    pub async fn create_group(&mut self) -> ClientResult<GroupId> {
        let request = self.api.request(v1::GetServiceInfoRequest {});
        let info = self
            .api
            .auth()
            .get_service_info(request)
            .await?
            .into_inner();
        let external_sender = info.external_sender.map(|ds| {
            ExternalSender::new(
                ds.signature_public_key.to_vec().into(),
                BasicCredential::new(ds.identity.to_vec()).into(),
            )
        });
        let group = MlsGroup::new(
            &self.provider,
            &self.signer,
            &profile::group_create_config(external_sender, &self.certificate),
            self.credential.clone(),
        )
        .map_err(mls)?;
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .map_err(mls)?;
        let ratchet_tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(mls)?;
        let request = self.api.request(v1::CreateGroupRequest {
            group_info: to_bytes(group_info)?.into(),
            ratchet_tree: ratchet_tree.into(),
        });
        let group_id = self
            .api
            .groups()
            .create_group(request)
            .await?
            .into_inner()
            .group_id
            .to_vec();
        self.db.set_processed(&Stream::Group(group_id.clone()), 0)?;
        self.groups.insert(group_id.clone(), group);
        Ok(group_id)
    }

    /// Claims a key package for every device of each user and adds in one
    /// commit those not in the group yet (for a user already in it, the
    /// devices linked since); [`ClientError::NothingToAdd`] if none is
    /// missing. A device not certified by the identity key pinned for its
    /// user is refused (reported in [`Added::refused`] and as
    /// [`Event::DeviceRefused`]), never added; [`ClientError::DevicesRefused`]
    /// if that leaves nobody to add.
    pub async fn add_users(&mut self, group_id: &[u8], users: &[&str]) -> ClientResult<Added> {
        if users.is_empty() {
            // A commit adding nobody would still start a new epoch.
            return Err(ClientError::Invalid("no users to add".into()));
        }
        // A user already in the group gets only its devices not in it yet
        // (a device linked since): adding a present one again would put the
        // same signature key in the tree twice.
        let present: std::collections::BTreeSet<ClientId> = self
            .group(group_id)?
            .members()
            .filter_map(|member| client_of(&member.credential).ok())
            .collect();
        let mut key_packages = Vec::new();
        let mut added = Vec::new();
        let mut refused = Vec::new();
        for user in users {
            let request = self.api.request(v1::ClaimKeyPackagesRequest {
                user: user.to_string(),
            });
            let claimed = self
                .api
                .key_packages()
                .claim_key_packages(request)
                .await?
                .into_inner()
                .key_packages;
            for claimed in claimed {
                let key_package = self.verify_claimed(&claimed, user)?;
                let client = match self.verify_leaf(key_package.leaf_node())? {
                    Ok(client) => client,
                    Err(ghost) => {
                        tracing::warn!(client = %self.id, ghost = %ghost.client, reason = %ghost.reason, "refused a claimed key package");
                        self.emit(Event::DeviceRefused {
                            group: group_id.to_vec(),
                            client: ghost.client.clone(),
                            fingerprint: ghost.fingerprint.clone(),
                            reason: ghost.reason.clone(),
                        })?;
                        refused.push(ghost);
                        continue;
                    }
                };
                if present.contains(&client) {
                    continue;
                }
                // A device its user revoked never comes back, even if the
                // DS still hands out its key packages.
                if self
                    .db
                    .is_revoked(key_package.leaf_node().signature_key().as_slice())?
                {
                    tracing::warn!(%client, "refused a revoked device's key package");
                    continue;
                }
                added.push(client);
                key_packages.push(key_package);
            }
        }
        if key_packages.is_empty() {
            if !refused.is_empty() {
                return Err(ClientError::DevicesRefused(refused));
            }
            return Err(ClientError::NothingToAdd(
                users.iter().map(|u| u.to_string()).collect(),
            ));
        }
        let commit = self.commit(group_id, Change::Add(key_packages)).await?;
        self.announce_profile(group_id).await;
        Ok(Added {
            clients: added,
            refused,
            commit,
        })
    }

    /// Removes every device of the given users in one commit.
    pub async fn remove_users(
        &mut self,
        group_id: &[u8],
        users: &[&str],
    ) -> ClientResult<CommitSummary> {
        if users.is_empty() {
            return Err(ClientError::Invalid("no users to remove".into()));
        }
        if users.contains(&self.id.user()) {
            // openmls refuses a commit removing its committer.
            return Err(ClientError::Invalid(
                "you cannot remove yourself: leave the group instead (`confide leave`, or /leave in the chat)".into(),
            ));
        }
        self.commit(
            group_id,
            Change::Remove(users.iter().map(|u| u.to_string()).collect()),
        )
        .await
    }

    /// Refreshes this client's leaf keys (post-compromise security).
    pub async fn self_update(&mut self, group_id: &[u8]) -> ClientResult<CommitSummary> {
        self.commit(group_id, Change::Update).await
    }

    /// Joins the group a Welcome from the inbox is for, with the ratchet
    /// tree the DS serves beside it: [`Event::Joined`], then each device in
    /// the tree not certified by its user ([`Event::GhostDevice`]) and each
    /// identity change the tree shows.
    pub(super) fn join(&mut self, item: &v1::WelcomeItem) -> ClientResult<Vec<Event>> {
        let message = MlsMessageIn::tls_deserialize_exact(&item.welcome).map_err(mls)?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(ClientError::Invalid(
                "the inbox entry is not a Welcome".into(),
            ));
        };
        // The DS serves the tree beside the Welcome; openmls checks it
        // against the tree hash the committer signed into the GroupInfo.
        let ratchet_tree = match item.ratchet_tree.is_empty() {
            true => None,
            false => Some(RatchetTreeIn::tls_deserialize_exact(&item.ratchet_tree).map_err(mls)?),
        };
        let group = StagedWelcome::new_from_welcome(
            &self.provider,
            &profile::join_config(),
            welcome,
            ratchet_tree,
        )
        .map_err(mls)?
        .into_group(&self.provider)
        .map_err(mls)?;
        let group_id = group.group_id().as_slice().to_vec();
        if group_id != item.group_id.as_ref() {
            return Err(ClientError::Invalid(
                "the Welcome is for another group".into(),
            ));
        }
        // Every leaf but our own: pins first contacts before the roster
        // judges them.
        let own = group.own_leaf_index();
        let mut reports = Vec::new();
        for member in group.members().filter(|m| m.index != own) {
            if let Some(leaf) = group.public_group().leaf(member.index) {
                reports.extend(self.verifier.report(&self.db, &group_id, leaf)?);
            }
        }
        let members = roster::roster(&group, |leaf| self.verifier.certified(&self.db, leaf));
        let epoch = group.epoch().as_u64();
        self.db.set_joined_epoch(&group_id, epoch)?;
        self.db
            .set_processed(&Stream::Group(group_id.clone()), item.commit_seq)?;
        self.groups.insert(group_id.clone(), group);
        let mut events = vec![Event::Joined {
            group: group_id,
            members,
            epoch,
        }];
        events.extend(reports);
        Ok(events)
    }

    /// Groups this client is a member of.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups.keys().cloned().collect()
    }

    fn group(&self, group_id: &[u8]) -> ClientResult<&MlsGroup> {
        self.groups.get(group_id).ok_or(ClientError::UnknownGroup)
    }

    /// The clients in the group, sorted, as this client's own MLS state has
    /// them.
    pub fn members(&self, group_id: &[u8]) -> ClientResult<Vec<ClientId>> {
        let mut members: Vec<ClientId> = self
            .roster(group_id)?
            .into_iter()
            .map(|m| m.client)
            .collect();
        members.sort();
        Ok(members)
    }

    /// The group's roster, leaf by leaf, with each member's credential, key
    /// fingerprint and whether it is certified by its user: what a user
    /// checks to see who can read the group.
    pub fn roster(&self, group_id: &[u8]) -> ClientResult<Vec<GroupMember>> {
        let group = self.group(group_id)?;
        Ok(roster::roster(group, |leaf| {
            self.verifier.certified(&self.db, leaf)
        }))
    }

    pub fn epoch(&self, group_id: &[u8]) -> ClientResult<u64> {
        Ok(self.group(group_id)?.epoch().as_u64())
    }

    /// The group's safety code for its current epoch ([`roster::safety_code`]):
    /// members compare it out of band; a forked member's differs.
    pub fn safety_code(&self, group_id: &[u8]) -> ClientResult<String> {
        Ok(roster::safety_code(self.group(group_id)?))
    }

    /// The epoch authenticator: equal for every member in the same epoch of
    /// the same group, different on a fork.
    pub fn epoch_authenticator(&self, group_id: &[u8]) -> ClientResult<Vec<u8>> {
        Ok(self
            .group(group_id)?
            .epoch_authenticator()
            .as_slice()
            .to_vec())
    }
}

#[cfg(test)]
mod tests {
    use confide_core::profile::CIPHERSUITE;
    use openmls_basic_credential::SignatureKeyPair;
    use openmls_rust_crypto::OpenMlsRustCrypto;

    use super::*;

    fn device(index: usize) -> (OpenMlsRustCrypto, SignatureKeyPair, CredentialWithKey) {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        signer.store(provider.storage()).expect("storing the key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(format!("u{index}/d0").into_bytes()).into(),
            signature_key: signer.public().into(),
        };
        (provider, signer, credential)
    }

    fn key_package(index: usize) -> KeyPackage {
        let (provider, signer, credential) = device(index);
        KeyPackage::builder()
            .build(CIPHERSUITE, &provider, &signer, credential)
            .expect("a key package")
            .key_package()
            .clone()
    }

    /// What a member uploads (commit, Welcome, GroupInfo) to add one member
    /// to a group of `size` made with `config`.
    fn upload_for_one_add(config: &MlsGroupCreateConfig, size: usize) -> usize {
        let (provider, signer, credential) = device(0);
        let mut group = MlsGroup::new(&provider, &signer, config, credential).expect("a group");
        let others: Vec<KeyPackage> = (1..size).map(key_package).collect();
        group
            .add_members(&provider, &signer, &others)
            .expect("adding everyone");
        group.merge_pending_commit(&provider).expect("merging");
        // As `Client::commit` builds it: a GroupInfo for the DS, always.
        let (commit, welcome, info) = group
            .commit_builder()
            .propose_adds([key_package(size)])
            .load_psks(provider.storage())
            .expect("no PSKs")
            .create_group_info(true)
            .build(provider.rand(), provider.crypto(), &signer, |_| true)
            .expect("adding one more")
            .stage_commit(&provider)
            .expect("staging")
            .into_messages();
        [Some(commit), welcome, info]
            .into_iter()
            .map(|m| {
                to_bytes(m.expect("commit, Welcome and GroupInfo"))
                    .expect("serialising")
                    .len()
            })
            .sum()
    }

    #[test]
    fn adding_one_member_to_a_1000_member_group_uploads_20_times_less_without_the_tree() {
        let with_tree = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(profile::WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        // Any certificate will do: only its size counts here.
        let identity = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        let creator = confide_core::ClientId::new("u0", "d0").expect("an id");
        let certificate = confide_core::certificate::DeviceCertificate::issue(
            &identity,
            identity.public(),
            &creator,
            &[0; 32],
        )
        .expect("a certificate");
        let served = upload_for_one_add(&profile::group_create_config(None, &certificate), 1000);
        let carried = upload_for_one_add(&with_tree, 1000);
        println!(
            "upload to add one member to 1,000: {served} B (tree served), {carried} B (tree in the Welcome)"
        );
        assert!(
            carried >= 20 * served,
            "{carried} B with the tree, {served} B without: less than 20 times smaller"
        );
    }
}
