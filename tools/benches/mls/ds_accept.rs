//! The DS's whole accept-commit path, as `SubmitCommit` runs it
//! (`Ds::submit_commit`): the caller's membership, the cached `PublicGroup`
//! (warm, as on a replica in steady state; its version checked against the
//! store), staging and checking the commit
//! and its GroupInfo, the committer's leaf against its registered key, the
//! merge, and the one store transaction that locks the group row, checks
//! the epoch and state version, stores the new state blob and GroupInfo and
//! appends the commit; then the live fan-out. On the in-memory store and on
//! PostgreSQL (a fresh database).
//!
//! Each iteration submits the next self-update of the group's first member
//! (built, untimed, by criterion's batch setup), so the DS always gets the
//! commit for its current epoch.

use bytes::Bytes;
use confide_core::profile;
use confide_core::{ClientId, GroupId};
use confide_ds::config::StoreKind;
use confide_ds::state::AppState;
use confide_ds::{App, Settings, Storage};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use tokio::runtime::Runtime;

use super::{Device, bytes, stage_add, stage_self_update};

/// Members added per commit while the group is built.
const ADD_BATCH: usize = 250;

/// A DS holding one group.
pub struct DsGroup {
    ds: AppState,
    group_id: GroupId,
    committer: ClientId,
}

/// The group's first member, who commits.
pub struct Committer {
    alice: Device,
    group: MlsGroup,
}

/// Whether PostgreSQL answers at `DATABASE_URL` (or the tests' default).
pub fn postgres_reachable(runtime: &Runtime) -> Result<(), String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| confide_ds::store::postgres::testing::DEFAULT_DATABASE_URL.to_string());
    runtime.block_on(async {
        confide_ds::store::postgres::PostgresStore::connect(&url, 1)
            .await
            .map(drop)
            .map_err(|e| format!("PostgreSQL is not reachable at {url}: {e}"))
    })
}

/// Registers `size` clients with a new DS on `store`; the first creates a
/// group and adds the others through `SubmitCommit`, as clients do.
pub fn group(runtime: &Runtime, store: StoreKind, size: usize) -> (Committer, DsGroup) {
    let mut settings = Settings::for_tests();
    settings.lift_limits();
    let storage: Storage = match store {
        StoreKind::Memory => confide_ds::store::memory::MemoryStore::new().into(),
        StoreKind::Postgres => runtime
            .block_on(confide_ds::store::postgres::testing::fresh_database())
            .0
            .into(),
    };
    // An app that never runs starts no background task: nothing to stop.
    let ds = runtime
        .block_on(App::with_storage(settings, storage))
        .expect("a DS on port 0")
        .state()
        .clone();
    let devices: Vec<Device> = (0..size).map(Device::new).collect();
    runtime.block_on(async {
        for device in &devices {
            ds.register_client(
                device.id.clone(),
                device.signer.public().to_vec(),
                &device.certificate.to_bytes(),
                "",
            )
            .await
            .expect("registering");
        }
    });
    let mut devices = devices.into_iter();
    let alice = devices.next().expect("a group has a member");
    let mut group = MlsGroup::new(
        &alice.provider,
        &alice.signer,
        &profile::group_create_config(None, &alice.certificate),
        alice.credential.clone(),
    )
    .expect("a group");
    let group_info = group
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .expect("a GroupInfo");
    let tree = group
        .export_ratchet_tree()
        .tls_serialize_detached()
        .expect("a tree");
    let (group_id, _) = runtime
        .block_on(ds.create_group(&alice.id, bytes(&group_info).into(), tree.into()))
        .expect("the DS creates the group");
    let others: Vec<KeyPackage> = devices.map(|d| d.key_package()).collect();
    for batch in others.chunks(ADD_BATCH) {
        let messages = stage_add(&alice, &mut group, batch);
        group
            .merge_pending_commit(&alice.provider)
            .expect("merging the add");
        runtime
            .block_on(ds.submit_commit(
                &alice.id,
                &group_id,
                bytes(&messages.commit).into(),
                messages.welcome.as_ref().map(|w| bytes(w).into()),
                bytes(&messages.group_info).into(),
            ))
            .expect("the DS accepts the add");
    }
    let server = DsGroup {
        ds,
        group_id,
        committer: alice.id.clone(),
    };
    (Committer { alice, group }, server)
}

impl Committer {
    /// The next commit: the first member's self-update, merged on its side.
    pub fn next_commit(&mut self) -> (Bytes, Bytes) {
        let messages = stage_self_update(&self.alice, &mut self.group);
        self.group
            .merge_pending_commit(&self.alice.provider)
            .expect("merging the self-update");
        (
            bytes(&messages.commit).into(),
            bytes(&messages.group_info).into(),
        )
    }
}

impl DsGroup {
    /// What the DS does with it when `SubmitCommit` arrives.
    pub fn accept(&self, runtime: &Runtime, (commit, group_info): (Bytes, Bytes)) {
        runtime
            .block_on(self.ds.submit_commit(
                &self.committer,
                &self.group_id,
                commit,
                None,
                group_info,
            ))
            .expect("the DS accepts the commit");
    }
}
