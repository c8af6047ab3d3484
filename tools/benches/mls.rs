//! MLS operations by group size (10, 100, 1,000), on the client and on the
//! DS, with the same ciphersuite, wire format policy and extensions Confide
//! uses: a member creating a self-update, another member processing and
//! merging it, the DS validating (`PublicGroup`) and merging the same
//! commit, creating an add, and joining from a Welcome; and the DS's whole
//! accept-commit path (`ds_accept`) on the in-memory store and PostgreSQL.
//!
//! `cargo bench --bench mls`; `cargo bench --bench mls -- 1000` for one size,
//! `-- ds_accept_commit` for the DS's accept path alone. The PostgreSQL
//! variant needs `DATABASE_URL` (default the tests'); without a reachable
//! PostgreSQL it is skipped, saying so.

#[path = "mls/ds_accept.rs"]
mod ds_accept;

use std::time::{Duration, Instant};

use confide_core::ClientId;
use confide_core::certificate::DeviceCertificate;
use confide_core::profile::{self, CIPHERSUITE};
use confide_ds::config::StoreKind;
use confide_ds::mls::GroupHandle;
use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

const SIZES: [usize; 3] = [10, 100, 1000];

/// One device: its crypto provider (and storage), key and credential.
struct Device {
    id: ClientId,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    /// By an identity key of its own: each device is its user's first.
    certificate: DeviceCertificate,
}

impl Device {
    fn new(index: usize) -> Self {
        let id = ClientId::new(format!("u{index}"), "d0").expect("a valid id");
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        signer.store(provider.storage()).expect("storing the key");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.identity()).into(),
            signature_key: signer.public().into(),
        };
        let identity = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).expect("a key");
        let certificate =
            DeviceCertificate::issue(&identity, identity.public(), &id, signer.public())
                .expect("a certificate");
        Self {
            id,
            provider,
            signer,
            credential,
            certificate,
        }
    }

    fn key_package(&self) -> KeyPackage {
        profile::key_package_builder(false, &self.certificate)
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .expect("a key package")
            .key_package()
            .clone()
    }
}

/// The tree a joiner gets from the DS: the group's after the commit that
/// added it (the DS exports the same from its `PublicGroup`).
fn served_tree(group: &MlsGroup) -> RatchetTreeIn {
    group.export_ratchet_tree().into()
}

fn bytes(message: &MlsMessageOut) -> Vec<u8> {
    message.tls_serialize_detached().expect("serialising")
}

/// What a commit hands the DS: the commit, the Welcome if it adds anyone,
/// and the new epoch's GroupInfo.
struct CommitMessages {
    commit: MlsMessageOut,
    welcome: Option<MlsMessageOut>,
    group_info: MlsMessageOut,
}

/// An add as `Client` commits it: no update path, a GroupInfo for the DS.
fn stage_add(device: &Device, group: &mut MlsGroup, key_packages: &[KeyPackage]) -> CommitMessages {
    let staged = stage(device, group, |builder| {
        builder.propose_adds(key_packages.iter().cloned())
    });
    assert!(staged.welcome.is_some(), "an add has a Welcome");
    staged
}

/// A self-update as `Client` commits it (with any queued proposals), with a
/// GroupInfo for the DS; left pending in `group`.
fn stage_self_update(device: &Device, group: &mut MlsGroup) -> CommitMessages {
    stage(device, group, |builder| {
        builder.consume_proposal_store(true).force_self_update(true)
    })
}

/// Builds and stages the commit `change` describes, as `Client` does:
/// always with a GroupInfo for the DS; left pending in `group`.
fn stage(
    device: &Device,
    group: &mut MlsGroup,
    change: impl FnOnce(CommitBuilder<'_, Initial>) -> CommitBuilder<'_, Initial>,
) -> CommitMessages {
    let (commit, welcome, group_info) = change(group.commit_builder())
        .load_psks(device.provider.storage())
        .expect("no PSKs")
        .create_group_info(true)
        .build(
            device.provider.rand(),
            device.provider.crypto(),
            &device.signer,
            |_| true,
        )
        .expect("a commit")
        .stage_commit(&device.provider)
        .expect("staging the commit")
        .into_messages();
    CommitMessages {
        commit,
        welcome,
        group_info: group_info.expect("a GroupInfo"),
    }
}

/// `device` adds the owners of `key_packages` to `group` and merges; returns
/// the Welcome.
fn add_and_merge(device: &Device, group: &mut MlsGroup, key_packages: &[KeyPackage]) -> Welcome {
    let welcome = stage_add(device, group, key_packages)
        .welcome
        .expect("an add has a Welcome");
    group
        .merge_pending_commit(&device.provider)
        .expect("merging");
    let MlsMessageBodyIn::Welcome(welcome) = MlsMessageIn::tls_deserialize_exact(bytes(&welcome))
        .expect("a Welcome")
        .extract()
    else {
        unreachable!("add_members returns a Welcome")
    };
    welcome
}

/// A group of `size`: Alice (who commits), Bob (who processes), the DS's
/// public view of it, and a spare device for joins.
struct Fixture {
    alice: Device,
    alice_group: MlsGroup,
    bob: Device,
    bob_group: MlsGroup,
    ds: GroupHandle,
    next_index: usize,
}

/// What one self-update round cost each party, on the same commit.
struct Round {
    create: Duration,
    process_merge: Duration,
    ds_stage_merge: Duration,
}

impl Fixture {
    fn new(size: usize) -> Self {
        let alice = Device::new(0);
        let mut alice_group = MlsGroup::new(
            &alice.provider,
            &alice.signer,
            &profile::group_create_config(None, &alice.certificate),
            alice.credential.clone(),
        )
        .expect("a group");
        let bob = Device::new(1);
        let mut key_packages = vec![bob.key_package()];
        key_packages.extend((2..size).map(|i| Device::new(i).key_package()));
        let welcome = add_and_merge(&alice, &mut alice_group, &key_packages);
        let bob_group = StagedWelcome::new_from_welcome(
            &bob.provider,
            &profile::join_config(),
            welcome,
            Some(served_tree(&alice_group)),
        )
        .expect("bob's welcome")
        .into_group(&bob.provider)
        .expect("bob joins");
        let group_info = alice_group
            .export_group_info(alice.provider.crypto(), &alice.signer, false)
            .expect("a GroupInfo");
        let tree = alice_group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("a tree");
        let ds = GroupHandle::create(&bytes(&group_info), &tree).expect("the DS's view");
        Self {
            alice,
            alice_group,
            bob,
            bob_group,
            ds,
            next_index: size,
        }
    }

    /// Alice updates her keys; Bob and the DS process the commit; everyone
    /// moves to the next epoch.
    fn self_update_round(&mut self) -> Round {
        let started = Instant::now();
        let messages = stage_self_update(&self.alice, &mut self.alice_group);
        let create = started.elapsed();
        let commit = bytes(&messages.commit);
        let group_info = bytes(&messages.group_info);
        self.alice_group
            .merge_pending_commit(&self.alice.provider)
            .expect("alice merges");

        let started = Instant::now();
        let message = MlsMessageIn::tls_deserialize_exact(&commit)
            .expect("a message")
            .try_into_protocol_message()
            .expect("a protocol message");
        let processed = self
            .bob_group
            .process_message(&self.bob.provider, message)
            .expect("bob processes");
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            unreachable!("a commit")
        };
        self.bob_group
            .merge_staged_commit(&self.bob.provider, *staged)
            .expect("bob merges");
        let process_merge = started.elapsed();

        let started = Instant::now();
        let staged = self
            .ds
            .stage_commit(&self.alice.id, &commit, None, &group_info)
            .expect("the DS validates");
        self.ds.merge(staged).expect("the DS merges");
        let ds_stage_merge = started.elapsed();
        Round {
            create,
            process_merge,
            ds_stage_merge,
        }
    }

    /// Alice creates a commit adding a new device and drops it; returns the
    /// time to create it.
    fn add(&mut self) -> Duration {
        let newcomer = Device::new(self.next_index);
        self.next_index += 1;
        let key_package = newcomer.key_package();
        let started = Instant::now();
        stage_add(&self.alice, &mut self.alice_group, &[key_package]);
        let create = started.elapsed();
        self.alice_group
            .clear_pending_commit(self.alice.provider.storage())
            .expect("dropping the add");
        create
    }

    /// Alice adds a new device, which joins from the Welcome and the tree the
    /// DS serves (timed), and then removes it again, so the group keeps its
    /// size. Bob and the DS do not follow: run this last.
    fn join(&mut self) -> Duration {
        let (alice, group) = (&self.alice, &mut self.alice_group);
        let newcomer = Device::new(self.next_index);
        self.next_index += 1;
        let welcome = add_and_merge(alice, group, &[newcomer.key_package()]);
        let tree = served_tree(group);
        let started = Instant::now();
        let joined = StagedWelcome::new_from_welcome(
            &newcomer.provider,
            &profile::join_config(),
            welcome,
            Some(tree),
        )
        .expect("a valid Welcome")
        .into_group(&newcomer.provider)
        .expect("joining");
        let joining = started.elapsed();
        group
            .remove_members(&alice.provider, &alice.signer, &[joined.own_leaf_index()])
            .expect("a remove");
        group
            .merge_pending_commit(&alice.provider)
            .expect("merging");
        joining
    }
}

fn sum(iterations: u64, mut one: impl FnMut() -> Duration) -> Duration {
    (0..iterations).map(|_| one()).sum()
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let postgres = ds_accept::postgres_reachable(&runtime);
    if let Err(why) = &postgres {
        eprintln!("skipping ds_accept_commit_postgres: {why}");
    }
    for size in SIZES {
        let mut fixture = Fixture::new(size);
        let mut group = c.benchmark_group("mls");
        if size >= 1000 {
            group.sample_size(10);
        }
        group.bench_function(BenchmarkId::new("self_update_create", size), |b| {
            b.iter_custom(|n| sum(n, || fixture.self_update_round().create))
        });
        group.bench_function(BenchmarkId::new("process_merge", size), |b| {
            b.iter_custom(|n| sum(n, || fixture.self_update_round().process_merge))
        });
        group.bench_function(BenchmarkId::new("ds_stage_merge", size), |b| {
            b.iter_custom(|n| sum(n, || fixture.self_update_round().ds_stage_merge))
        });
        group.bench_function(BenchmarkId::new("add_create", size), |b| {
            b.iter_custom(|n| sum(n, || fixture.add()))
        });
        group.bench_function(BenchmarkId::new("join_from_welcome", size), |b| {
            b.iter_custom(|n| sum(n, || fixture.join()))
        });
        let mut stores = vec![("ds_accept_commit_memory", StoreKind::Memory)];
        if postgres.is_ok() {
            stores.push(("ds_accept_commit_postgres", StoreKind::Postgres));
        }
        for (name, store) in stores {
            // Built only if the filter selects this benchmark.
            let mut fixture = None;
            group.bench_function(BenchmarkId::new(name, size), |b| {
                let (committer, ds) =
                    fixture.get_or_insert_with(|| ds_accept::group(&runtime, store, size));
                b.iter_batched(
                    || committer.next_commit(),
                    |commit| ds.accept(&runtime, commit),
                    BatchSize::SmallInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(mls, benches);
criterion_main!(mls);
