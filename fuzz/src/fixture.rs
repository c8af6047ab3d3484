//! A real Confide group, made once per fuzz process with openmls directly
//! (as `tests/src/raw_member.rs` does against a running DS), and the valid
//! client messages the targets start their edits from.
//!
//! alice creates the group (listing the DS as external sender, as the client
//! library does) and adds bob and carol; the DS's [`GroupHandle`] follows
//! through `stage_commit` and `merge`. At epoch 1 every member then prepares
//! messages the DS would accept, none of them merged.

use confide_core::certificate::{DeviceCertificate, leaf_capabilities};
use confide_core::profile::{self, CIPHERSUITE, WIRE_FORMAT_POLICY};
use confide_core::{ClientId, GroupId};
use confide_ds::mls::{ExternalSenderKey, GroupHandle};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer;

/// The group's id, fixed so request fuzzing can name it.
pub const GROUP_ID: &[u8] = b"fuzz-group";

/// A commit as `SubmitCommit` carries it (an empty Welcome means none).
pub struct CommitTemplate {
    pub committer: ClientId,
    pub commit: Vec<u8>,
    pub welcome: Vec<u8>,
    pub group_info: Vec<u8>,
}

/// A GroupInfo and ratchet tree as `CreateGroup` carries them.
pub struct GroupTemplate {
    pub group_info: Vec<u8>,
    pub ratchet_tree: Vec<u8>,
}

pub struct Fixture {
    pub group_id: GroupId,
    /// alice, bob, carol (members) and dave (not a member).
    pub clients: Vec<ClientId>,
    /// Each client's Ed25519 public key, in the order of `clients`.
    pub signature_keys: Vec<Vec<u8>>,
    /// Each client's device certificate, in the order of `clients`.
    pub certificates: Vec<Vec<u8>>,
    /// alice's signer, to answer the DS's authentication challenge.
    pub alice_signer: SignatureKeyPair,
    /// alice's new one-member group, as she submits it with `CreateGroup`.
    pub created: GroupTemplate,
    /// The commit adding bob and carol (epoch 0 → 1).
    pub add_bob_and_carol: CommitTemplate,
    /// The three-member group at epoch 1, as a GroupInfo and tree.
    pub grown: GroupTemplate,
    /// The DS's state at epoch 1 before any proposal.
    pub state: Vec<u8>,
    /// The same with bob's standalone Remove of carol queued.
    pub state_with_proposal: Vec<u8>,
    /// Commits for epoch 1, valid against `state_with_proposal`.
    pub commits: Vec<CommitTemplate>,
    /// Standalone proposals for epoch 1, valid against `state`, with their sender.
    pub proposals: Vec<(ClientId, Vec<u8>)>,
    /// A PrivateMessage with application content for epoch 1.
    pub application: Vec<u8>,
    /// Key packages as a client publishes them (MlsMessages).
    pub key_packages: Vec<Vec<u8>>,
}

struct Member {
    id: ClientId,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    /// Certified by an identity key of the member's own (each member is
    /// its user's first device).
    certificate: DeviceCertificate,
    /// The member's user identity key, which certifies a new signature key.
    identity: SignatureKeyPair,
    group: Option<MlsGroup>,
}

impl Member {
    fn new(user: &str, device: &str) -> Self {
        let id = ClientId::new(user, device).expect("a valid client name");
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .expect("generating a signature key");
        let identity = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .expect("generating an identity key");
        let certificate =
            DeviceCertificate::issue(&identity, identity.public(), &id, signer.public())
                .expect("certifying the device");
        Self {
            id,
            provider: OpenMlsRustCrypto::default(),
            signer,
            certificate,
            identity,
            group: None,
        }
    }

    fn credential(&self, signer: &SignatureKeyPair) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.id.identity()).into(),
            signature_key: signer.to_public_vec().into(),
        }
    }

    fn key_package(&self, last_resort: bool) -> KeyPackage {
        profile::key_package_builder(last_resort, &self.certificate)
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential(&self.signer),
            )
            .expect("building a key package")
            .key_package()
            .clone()
    }

    /// Runs `f` on this member's group, with its provider and signer.
    fn act<R>(
        &mut self,
        f: impl FnOnce(&mut MlsGroup, &OpenMlsRustCrypto, &SignatureKeyPair) -> R,
    ) -> R {
        let group = self.group.as_mut().expect("in the group");
        f(group, &self.provider, &self.signer)
    }

    fn leaf_of(&self, client: &ClientId) -> LeafNodeIndex {
        self.group
            .as_ref()
            .expect("in the group")
            .members()
            .find(|m| m.credential.serialized_content() == client.identity().as_slice())
            .expect("a member")
            .index
    }

    fn join(&mut self, welcome: &MlsMessageOut) {
        let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::from(welcome.clone()).extract()
        else {
            panic!("not a Welcome");
        };
        let config = MlsGroupJoinConfig::builder()
            .wire_format_policy(WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
            .expect("a valid Welcome")
            .into_group(&self.provider)
            .expect("joining the group");
        self.group = Some(group);
    }

    /// Keeps a commit this member made as a template and forgets it, so the
    /// member stays at the current epoch.
    fn keep(&mut self, (commit, welcome, group_info): Messages) -> CommitTemplate {
        self.act(|group, provider, _| group.clear_pending_commit(provider.storage()))
            .expect("dropping the pending commit");
        CommitTemplate {
            committer: self.id.clone(),
            commit: bytes(&commit),
            welcome: welcome.as_ref().map(bytes).unwrap_or_default(),
            group_info: bytes(&group_info.expect("a GroupInfo for the new epoch")),
        }
    }

    /// The group as `CreateGroup` carries it.
    fn export(&mut self) -> GroupTemplate {
        self.act(|group, provider, signer| GroupTemplate {
            group_info: bytes(
                &group
                    .export_group_info(provider.crypto(), signer, false)
                    .expect("exporting the GroupInfo"),
            ),
            ratchet_tree: group
                .export_ratchet_tree()
                .tls_serialize_detached()
                .expect("a ratchet tree serialises"),
        })
    }
}

fn bytes(message: &MlsMessageOut) -> Vec<u8> {
    message
        .tls_serialize_detached()
        .expect("an MLS message serialises")
}

/// A commit, its Welcome if it adds anyone, and the new epoch's GroupInfo.
type Messages = (MlsMessageOut, Option<MlsMessageOut>, Option<MlsMessageOut>);

/// [`Messages`] from what openmls's membership operations return.
fn messages(
    (commit, welcome, group_info): (
        MlsMessageOut,
        Option<MlsMessageOut>,
        Option<openmls::messages::group_info::GroupInfo>,
    ),
) -> Messages {
    (commit, welcome, group_info.map(Into::into))
}

impl Fixture {
    /// Builds the group and its templates; panics if openmls or the DS
    /// refuses any of them, since the targets would then fuzz nothing useful.
    pub fn new() -> Self {
        let ds = ExternalSenderKey::generate();
        let mut alice = Member::new("alice", "phone");
        let mut bob = Member::new("bob", "laptop");
        let mut carol = Member::new("carol", "tablet");
        let dave = Member::new("dave", "phone");

        let config = MlsGroupCreateConfig::builder()
            .with_group_context_extensions(
                Extensions::single(Extension::ExternalSenders(vec![ds.as_external_sender()]))
                    .expect("ExternalSenders is a group context extension"),
            )
            .ciphersuite(CIPHERSUITE)
            .wire_format_policy(WIRE_FORMAT_POLICY)
            .use_ratchet_tree_extension(true)
            .capabilities(leaf_capabilities(false))
            .with_leaf_node_extensions(alice.certificate.leaf_extensions())
            .expect("the capabilities list the certificate")
            .build();
        alice.group = Some(
            MlsGroup::new_with_group_id(
                &alice.provider,
                &alice.signer,
                &config,
                openmls::group::GroupId::from_slice(GROUP_ID),
                alice.credential(&alice.signer),
            )
            .expect("creating the group"),
        );
        let created = alice.export();
        let mut handle = GroupHandle::create(&created.group_info, &created.ratchet_tree)
            .expect("the DS accepts the new group");

        // Epoch 0 → 1: alice adds bob and carol, through the DS.
        let (bob_kp, carol_kp) = (bob.key_package(false), carol.key_package(false));
        let (commit, welcome, group_info) = alice
            .act(|group, provider, signer| group.add_members(provider, signer, &[bob_kp, carol_kp]))
            .expect("adding bob and carol");
        let add_bob_and_carol = CommitTemplate {
            committer: alice.id.clone(),
            commit: bytes(&commit),
            welcome: bytes(&welcome),
            group_info: bytes(&group_info.expect("a GroupInfo").into()),
        };
        let staged = handle
            .stage_commit(
                &alice.id,
                &add_bob_and_carol.commit,
                Some(&add_bob_and_carol.welcome),
                &add_bob_and_carol.group_info,
            )
            .expect("the DS accepts the add commit");
        handle.merge(staged).expect("merging the add commit");
        alice
            .act(|group, provider, _| group.merge_pending_commit(provider))
            .expect("alice merges her commit");
        bob.join(&welcome);
        carol.join(&welcome);
        let grown = alice.export();
        let state = handle.to_blob();

        // Commits for epoch 1, made before any proposal is pending so none
        // of them picks one up.
        let mut commits = Vec::new();
        let self_update = alice
            .act(|group, provider, signer| {
                group.self_update(provider, signer, LeafNodeParameters::default())
            })
            .expect("a self-update")
            .into_messages();
        commits.push(alice.keep(self_update));

        let dave_kp = dave.key_package(false);
        let (commit, welcome, group_info) = bob
            .act(|group, provider, signer| group.add_members(provider, signer, &[dave_kp]))
            .expect("bob adds dave");
        commits.push(bob.keep(messages((commit, Some(welcome), group_info))));

        let bob_leaf = carol.leaf_of(&bob.id);
        let remove = carol
            .act(|group, provider, signer| group.remove_members(provider, signer, &[bob_leaf]))
            .expect("carol removes bob");
        commits.push(carol.keep(messages(remove)));

        // A self-update that rotates alice's signature key: the DS checks the
        // GroupInfo against the new key.
        let new_signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())
            .expect("generating a signature key");
        let credential_with_key = alice.credential(&new_signer);
        let new_certificate = DeviceCertificate::issue(
            &alice.identity,
            alice.identity.public(),
            &alice.id,
            new_signer.public(),
        )
        .expect("certifying the new key");
        let rotation = alice
            .act(|group, provider, signer| {
                group.self_update_with_new_signer(
                    provider,
                    signer,
                    NewSignerBundle {
                        signer: &new_signer,
                        credential_with_key,
                    },
                    // The new key needs a certificate of its own.
                    LeafNodeParameters::builder()
                        .with_capabilities(leaf_capabilities(false))
                        .with_extensions(new_certificate.leaf_extensions())
                        .build(),
                )
            })
            .expect("a self-update with a new key")
            .into_messages();
        commits.push(alice.keep(rotation));

        // An application message, sent before bob has a proposal pending
        // (openmls refuses to send one then).
        let application = bytes(
            &bob.act(|group, provider, signer| {
                group.create_message(provider, signer, b"hello, fuzzer")
            })
            .expect("an application message"),
        );

        // Standalone proposals for epoch 1.
        let (carol_update, _) = carol
            .act(|group, provider, signer| {
                group.propose_self_update(provider, signer, LeafNodeParameters::default())
            })
            .expect("carol proposes an update");
        let carol_leaf = bob.leaf_of(&carol.id);
        let (bob_removes_carol, _) = bob
            .act(|group, provider, signer| {
                group.propose_remove_member(provider, signer, carol_leaf)
            })
            .expect("bob proposes to remove carol");
        let (carol_update, bob_removes_carol) = (bytes(&carol_update), bytes(&bob_removes_carol));

        // The DS queues bob's proposal; alice commits it by reference.
        handle
            .apply_proposal(&bob.id, &bob_removes_carol)
            .expect("the DS queues bob's proposal");
        let state_with_proposal = handle.to_blob();
        let message = MlsMessageIn::tls_deserialize_exact_bytes(&bob_removes_carol)
            .expect("a proposal parses")
            .try_into_protocol_message()
            .expect("a protocol message");
        let by_reference = alice.act(|group, provider, signer| {
            let processed = group
                .process_message(provider, message)
                .expect("alice processes bob's proposal");
            let ProcessedMessageContent::ProposalMessage(queued) = processed.into_content() else {
                panic!("not a proposal");
            };
            group
                .store_pending_proposal(provider.storage(), *queued)
                .expect("alice stores bob's proposal");
            group
                .commit_to_pending_proposals(provider, signer)
                .expect("alice commits bob's proposal")
        });
        commits.push(alice.keep(messages(by_reference)));
        let proposals = vec![
            (carol.id.clone(), carol_update),
            (bob.id.clone(), bob_removes_carol),
        ];

        let key_packages = vec![
            bytes(&dave.key_package(false).into()),
            bytes(&dave.key_package(true).into()),
        ];

        let clients = vec![
            alice.id.clone(),
            bob.id.clone(),
            carol.id.clone(),
            dave.id.clone(),
        ];
        let signature_keys = [&alice, &bob, &carol, &dave]
            .iter()
            .map(|m| m.signer.to_public_vec())
            .collect();
        let certificates = [&alice, &bob, &carol, &dave]
            .iter()
            .map(|m| m.certificate.to_bytes())
            .collect();
        let fixture = Fixture {
            group_id: handle.group_id(),
            clients,
            signature_keys,
            certificates,
            alice_signer: alice.signer,
            created,
            add_bob_and_carol,
            grown,
            state,
            state_with_proposal,
            commits,
            proposals,
            application,
            key_packages,
        };
        fixture.check();
        fixture
    }

    /// The DS's state at epoch 1, with bob's proposal queued or not.
    pub fn handle(&self, with_proposal: bool) -> GroupHandle {
        let blob = if with_proposal {
            &self.state_with_proposal
        } else {
            &self.state
        };
        GroupHandle::from_blob(&self.group_id, blob).expect("the fixture's state loads")
    }

    /// Every template is accepted by the DS as it stands: the fuzzers' edits
    /// start from inputs that pass every check.
    fn check(&self) {
        let handle = self.handle(true);
        for (i, c) in self.commits.iter().enumerate() {
            let welcome = (!c.welcome.is_empty()).then_some(c.welcome.as_slice());
            if let Err(e) = handle.stage_commit(&c.committer, &c.commit, welcome, &c.group_info) {
                panic!("commit template {i} is refused: {e}");
            }
        }
        for (i, (sender, proposal)) in self.proposals.iter().enumerate() {
            if let Err(e) = self.handle(false).apply_proposal(sender, proposal) {
                panic!("proposal template {i} is refused: {e}");
            }
        }
        for (i, kp) in self.key_packages.iter().enumerate() {
            if let Err(e) = confide_ds::mls::validate_key_package(kp, &Default::default()) {
                panic!("key package template {i} is refused: {e}");
            }
        }
        for (i, g) in [&self.created, &self.grown].iter().enumerate() {
            if let Err(e) = GroupHandle::create(&g.group_info, &g.ratchet_tree) {
                panic!("group template {i} is refused: {e}");
            }
        }
        if let Err(e) =
            confide_ds::mls::parse_application_message(&self.application, &self.group_id)
        {
            panic!("the application message is refused: {e}");
        }
    }

    /// Signs the DS's authentication challenge as alice.
    pub fn sign_as_alice(&self, payload: &[u8]) -> Vec<u8> {
        self.alice_signer.sign(payload).expect("signing")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}
