//! [`RawMember`]: a group member that speaks MLS with openmls directly rather
//! than through the client library, so a test can hold on to a commit instead
//! of submitting it (a commit that arrives late) or submit it under another
//! client's session, or break it in a way only the DS can notice.

use confide_client::{Api, ClientId};
use confide_ds::mls::{CIPHERSUITE, client_of};
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
    group: Option<MlsGroup>,
}

impl RawMember {
    /// Registers `user/device`, authenticates and publishes one key package,
    /// all through raw calls.
    pub async fn register(app: &TestApp, user: &str, device: &str) -> Self {
        let id = ClientId::new(user, device).expect("a valid client name");
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .expect("generating a signature key");
        let client = Some(v1::ClientId {
            user: user.into(),
            device: device.into(),
        });
        let mut api = app.api().await;
        api.auth()
            .register_client(v1::RegisterClientRequest {
                client: client.clone(),
                signature_public_key: signer.to_public_vec().into(),
                registration_token: String::new(),
            })
            .await
            .expect("registering");
        let challenge = api
            .auth()
            .create_challenge(v1::CreateChallengeRequest {
                client: client.clone(),
            })
            .await
            .expect("asking for a challenge")
            .into_inner()
            .challenge;
        let signature = signer
            .sign(&confide_proto::challenge_signing_payload(&challenge))
            .expect("signing the challenge");
        let session = api
            .auth()
            .authenticate(v1::AuthenticateRequest {
                client,
                challenge,
                signature: signature.into(),
            })
            .await
            .expect("authenticating")
            .into_inner();
        api.set_token(&session.session_token)
            .expect("an ASCII session token");

        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.identity()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        let bundle = KeyPackage::builder()
            .build(CIPHERSUITE, &provider, &signer, credential)
            .expect("building a key package");
        let key_package = MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .expect("serialising the key package");
        api.key_packages()
            .publish_key_packages(api.request(v1::PublishKeyPackagesRequest {
                key_packages: vec![key_package.into()],
                last_resort_key_package: Vec::new().into(),
            }))
            .await
            .expect("publishing a key package");
        Self {
            id,
            api,
            provider,
            signer,
            group: None,
        }
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

    /// Joins the group from the first Welcome in the inbox, as the client
    /// library would.
    pub async fn join(&mut self) {
        let entries = self
            .api
            .delivery()
            .fetch(self.api.request(v1::FetchRequest {
                stream: Some(v1::StreamSelector {
                    stream: Some(v1::stream_selector::Stream::Inbox(v1::Inbox {})),
                }),
                after_seq: 0,
                limit: 0,
            }))
            .await
            .expect("reading the inbox")
            .into_inner()
            .entries;
        let welcome = entries
            .into_iter()
            .find_map(|envelope| match envelope.entry {
                Some(v1::envelope::Entry::Inbox(v1::InboxEntry {
                    item: Some(v1::inbox_entry::Item::Welcome(item)),
                    ..
                })) => Some(item.welcome),
                _ => None,
            })
            .expect("a Welcome in the inbox");
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(&welcome)
            .expect("a well-formed Welcome")
            .extract()
        else {
            panic!("the inbox item is not a Welcome");
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
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
