//! [`RawMember`]: a group member that speaks MLS with openmls directly rather
//! than through the client library, so a test can hold on to a commit instead
//! of submitting it (a commit that arrives late) or submit it under another
//! client's session, or break it in a way only the DS can notice.

use confide_client::{Api, ClientId, UserIdentity};
use confide_core::certificate::{DeviceCertificate, leaf_capabilities};
use confide_core::profile::{self, CIPHERSUITE, WIRE_FORMAT_POLICY, client_of};
use confide_proto::v1;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer;
use tonic::{Response, Status};

use crate::TestApp;

/// A commit created for the group's epoch at the time, never submitted.
pub struct CraftedCommit {
    pub group_id: Vec<u8>,
    /// The epoch the commit was made for.
    pub epoch: u64,
    /// TLS-serialised MlsMessage (a PublicMessage with the Commit).
    pub commit: Vec<u8>,
    /// TLS-serialised MlsMessage with the Welcome, if the commit adds members.
    pub welcome: Vec<u8>,
    /// TLS-serialised MlsMessage with the GroupInfo of the epoch it would start.
    pub group_info: Vec<u8>,
}

impl CraftedCommit {
    pub fn request(&self) -> v1::SubmitCommitRequest {
        v1::SubmitCommitRequest {
            group_id: self.group_id.clone().into(),
            commit: self.commit.clone().into(),
            welcome: self.welcome.clone().into(),
            group_info: self.group_info.clone().into(),
        }
    }
}

pub struct RawMember {
    pub id: ClientId,
    api: Api,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    /// The certificate of this device by its own user identity key: a raw
    /// member is the first device of a user of its own.
    certificate: DeviceCertificate,
    group: Option<MlsGroup>,
}

impl RawMember {
    /// Registers `user/device`, authenticates and publishes one key package,
    /// all through raw calls.
    pub async fn register(app: &TestApp, user: &str, device: &str) -> Self {
        let mut member = Self::unregistered(app, user, device).await;
        member
            .api
            .auth()
            .register_client(v1::RegisterClientRequest {
                client: Some(member.proto_id()),
                signature_public_key: member.signer.to_public_vec().into(),
                registration_token: String::new(),
                device_certificate: member.certificate.to_bytes().into(),
            })
            .await
            .expect("registering");
        let token = member.new_session(app).await;
        member
            .api
            .set_token(&token)
            .expect("an ASCII session token");
        let key_package = member.key_package(None);
        member
            .api
            .key_packages()
            .publish_key_packages(member.api.request(v1::PublishKeyPackagesRequest {
                key_packages: vec![key_package.into()],
                last_resort_key_package: Vec::new().into(),
            }))
            .await
            .expect("publishing a key package");
        member
    }

    /// A client `user/device` with its own signature key that the DS has
    /// never heard of: what it crafts names a client that does not exist.
    pub async fn unregistered(app: &TestApp, user: &str, device: &str) -> Self {
        let id = ClientId::new(user, device).expect("a valid client name");
        let signer =
            SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("generating a key");
        let certificate = UserIdentity::generate()
            .and_then(|identity| identity.certify(&id, signer.public()))
            .expect("certifying the device");
        Self {
            id,
            api: app.api().await,
            provider: OpenMlsRustCrypto::default(),
            signer,
            certificate,
            group: None,
        }
    }

    /// This device's certificate, as it registered it.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// This client's id as the protocol spells it.
    pub fn proto_id(&self) -> v1::ClientId {
        (&self.id).into()
    }

    /// A new session token from `app` (which may be another replica),
    /// through a signed challenge.
    pub async fn new_session(&self, app: &TestApp) -> String {
        let auth = app.api().await.auth();
        let challenge = crate::rpc::challenge_for(&auth, Some(self.proto_id())).await;
        let signature = self
            .signer
            .sign(&confide_proto::challenge_signing_payload(&challenge))
            .expect("signing the challenge");
        auth.clone()
            .authenticate(v1::AuthenticateRequest {
                client: Some(self.proto_id()),
                challenge,
                signature: signature.into(),
            })
            .await
            .expect("authenticating")
            .into_inner()
            .session_token
    }

    /// A key package (TLS-serialised MlsMessage) for this client's own
    /// credential, valid for `lifetime` (the profile's when `None`).
    pub fn key_package(&self, lifetime: Option<Lifetime>) -> Vec<u8> {
        self.build_key_package(lifetime, false)
    }

    /// A key package for this client's own credential without a device
    /// certificate: what a ghost the operator made up would carry.
    pub fn uncertified_key_package(&self) -> Vec<u8> {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(self.id.identity()).into(),
            signature_key: self.signer.to_public_vec().into(),
        };
        let bundle = KeyPackage::builder()
            .build(CIPHERSUITE, &self.provider, &self.signer, credential)
            .expect("building a key package");
        serialise(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// The fingerprint of this client's signature key, as members' rosters
    /// show it.
    pub fn fingerprint(&self) -> String {
        confide_client::roster::fingerprint(self.signer.public())
    }

    /// A key package marked with the `last_resort` extension, as a
    /// last-resort key package must be.
    pub fn last_resort_key_package(&self) -> Vec<u8> {
        self.build_key_package(None, true)
    }

    fn build_key_package(&self, lifetime: Option<Lifetime>, last_resort: bool) -> Vec<u8> {
        let credential = CredentialWithKey {
            credential: BasicCredential::new(self.id.identity()).into(),
            signature_key: self.signer.to_public_vec().into(),
        };
        let mut builder = profile::key_package_builder(last_resort, &self.certificate);
        if let Some(lifetime) = lifetime {
            builder = builder.key_package_lifetime(lifetime);
        }
        let bundle = builder
            .build(CIPHERSUITE, &self.provider, &self.signer, credential)
            .expect("building a key package");
        serialise(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// The authenticated connection.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Submits a commit under this member's session.
    pub async fn submit(
        &self,
        commit: v1::SubmitCommitRequest,
    ) -> Result<Response<v1::SubmitCommitResponse>, Status> {
        self.api
            .groups()
            .submit_commit(self.api.request(commit))
            .await
    }

    /// Submits a standalone proposal under this member's session.
    pub async fn submit_proposal(
        &self,
        group_id: &[u8],
        proposal: Vec<u8>,
    ) -> Result<Response<v1::SubmitProposalResponse>, Status> {
        self.api
            .groups()
            .submit_proposal(self.api.request(v1::SubmitProposalRequest {
                group_id: group_id.to_vec().into(),
                proposal: proposal.into(),
            }))
            .await
    }

    /// The Welcomes in this client's inbox, oldest first.
    pub async fn welcomes(&self) -> Vec<v1::WelcomeItem> {
        self.api
            .delivery()
            .fetch(self.api.request(v1::FetchRequest {
                stream: crate::rpc::inbox_stream(),
                after_seq: 0,
                limit: 0,
            }))
            .await
            .expect("reading the inbox")
            .into_inner()
            .entries
            .into_iter()
            .filter_map(|envelope| match envelope.entry {
                Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
                    item: Some(v1::inbox_entry::Item::Welcome(item)),
                    ..
                })) => Some(item),
                _ => None,
            })
            .collect()
    }

    /// Joins the group from the first Welcome in the inbox, as the client
    /// library would.
    pub async fn join(&mut self) {
        let item = self
            .welcomes()
            .await
            .into_iter()
            .next()
            .expect("a Welcome in the inbox");
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(&item.welcome)
            .expect("a well-formed Welcome")
            .extract()
        else {
            panic!("the inbox item is not a Welcome");
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(&item.ratchet_tree)
            .expect("the DS serves the ratchet tree with the Welcome");
        // openmls's convenience commits make a GroupInfo (which the DS
        // needs) only with the ratchet-tree extension on.
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, Some(tree))
            .expect("a valid Welcome")
            .into_group(&self.provider)
            .expect("joining the group");
        self.group = Some(group);
    }

    /// A self-update commit for the group's current epoch (as this member
    /// knows it), kept rather than submitted.
    pub fn craft_self_update(&mut self) -> CraftedCommit {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("joined a group");
        let (commit, _, group_info) = group
            .self_update(provider, signer, LeafNodeParameters::default())
            .expect("creating a self-update commit")
            .into_contents();
        self.crafted(commit, None, group_info)
    }

    /// A commit adding the owner of `key_package` (a TLS-serialised
    /// MlsMessage, as claimed from the DS), kept rather than submitted.
    pub fn craft_add(&mut self, key_package: &[u8]) -> CraftedCommit {
        let MlsMessageBodyIn::KeyPackage(key_package) =
            MlsMessageIn::tls_deserialize_exact(key_package)
                .expect("a well-formed key package")
                .extract()
        else {
            panic!("not a key package");
        };
        let key_package = key_package
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .expect("a valid key package");
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("joined a group");
        let (commit, welcome, group_info) = group
            .add_members(provider, signer, &[key_package])
            .expect("creating an add commit");
        self.crafted(commit, Some(welcome), group_info)
    }

    fn crafted(
        &mut self,
        commit: MlsMessageOut,
        welcome: Option<MlsMessageOut>,
        group_info: Option<openmls::messages::group_info::GroupInfo>,
    ) -> CraftedCommit {
        let storage = self.provider.storage();
        let group = self.group.as_mut().expect("joined a group");
        let epoch = group.epoch().as_u64();
        group
            .clear_pending_commit(storage)
            .expect("dropping the pending commit");
        let group_info = MlsMessageOut::from(group_info.expect("a GroupInfo for the new epoch"));
        CraftedCommit {
            group_id: group.group_id().as_slice().to_vec(),
            epoch,
            commit: serialise(&commit),
            welcome: welcome.as_ref().map(serialise).unwrap_or_default(),
            group_info: serialise(&group_info),
        }
    }

    /// Founds a group with this client as its only member, the way the
    /// client library does, but only locally: the DS never hears of it.
    /// Returns what `CreateGroup` would need to register it.
    pub fn found_local_group(&mut self) -> v1::CreateGroupRequest {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .capabilities(leaf_capabilities(false))
            .with_leaf_node_extensions(self.certificate.leaf_extensions())
            .expect("the capabilities list the certificate")
            .build();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(self.id.identity()).into(),
            signature_key: self.signer.to_public_vec().into(),
        };
        let group = MlsGroup::new(&self.provider, &self.signer, &config, credential)
            .expect("creating a group");
        let group_info = group
            .export_group_info(self.provider.crypto(), &self.signer, false)
            .expect("exporting the GroupInfo");
        let ratchet_tree = group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("serialising the ratchet tree");
        self.group = Some(group);
        v1::CreateGroupRequest {
            group_info: serialise(&group_info).into(),
            ratchet_tree: ratchet_tree.into(),
        }
    }

    /// The id of the group this member is in.
    pub fn group_id(&self) -> Vec<u8> {
        let group = self.group.as_ref().expect("in a group");
        group.group_id().as_slice().to_vec()
    }

    /// An application message (PrivateMessage) for the current epoch, as a
    /// TLS-serialised MlsMessage, kept rather than sent.
    pub fn encrypt(&mut self, body: &[u8]) -> Vec<u8> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("joined a group");
        let message = group
            .create_message(provider, signer, body)
            .expect("encrypting an application message");
        serialise(&message)
    }

    /// A self-update proposal (PublicMessage) for the current epoch, kept
    /// rather than submitted.
    pub fn propose_self_update(&mut self) -> Vec<u8> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("joined a group");
        let (proposal, _) = group
            .propose_self_update(provider, signer, LeafNodeParameters::default())
            .expect("creating a self-update proposal");
        // Kept out of this member's own later commits: the DS never saw it.
        group
            .clear_pending_proposals(provider.storage())
            .expect("dropping the pending proposal");
        serialise(&proposal)
    }

    /// A proposal to remove `member`, as a TLS-serialised MlsMessage for
    /// `SubmitProposal`.
    pub fn propose_remove(&mut self, member: &ClientId) -> Vec<u8> {
        let (provider, signer) = (&self.provider, &self.signer);
        let group = self.group.as_mut().expect("joined a group");
        let leaf = group
            .members()
            .find(|m| client_of(&m.credential).is_ok_and(|c| c == *member))
            .unwrap_or_else(|| panic!("{member} is not in the group"))
            .index;
        let (proposal, _) = group
            .propose_remove_member(provider, signer, leaf)
            .expect("creating a remove proposal");
        serialise(&proposal)
    }
}

fn serialise(message: &MlsMessageOut) -> Vec<u8> {
    message
        .tls_serialize_detached()
        .expect("an MLS message serialises")
}
