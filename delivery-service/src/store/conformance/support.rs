//! What the checks share: made-up records and the store calls they repeat.

use std::fmt::Debug;
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::domain::{ClientId, EntryKind, GroupEntry, GroupId};
use crate::store::{
    AppendOutcome, ClaimedKeyPackage, ClientRecord, CommitAccepted, CommitOutcome, CommitRecord,
    DedupKey, KeyPackageRecord, NewDevice, NewGroup, NewMessage, Registration, Store, StoreError,
    StoreResult,
};

/// The client a session names, if it is live at `now`.
pub(super) async fn session_client(
    store: &dyn Store,
    token: &DedupKey,
    now: SystemTime,
) -> Option<ClientId> {
    ok(store.session(token, now).await).map(|session| session.client)
}

pub(super) fn ok<T>(result: StoreResult<T>) -> T {
    result.unwrap_or_else(|err| panic!("store failed: {err:?}"))
}

pub(super) fn client(user: &str, device: &str) -> ClientId {
    ClientId::new(user, device).expect("valid client id")
}

pub(super) fn group_id(name: &str) -> GroupId {
    GroupId::new(format!("group {name}").into_bytes()).expect("valid group id")
}

pub(super) fn dedup_key(label: &str) -> DedupKey {
    Sha256::digest(label.as_bytes()).into()
}

/// The identity key these checks give `user` (stores compare it as bytes).
pub(super) fn identity_key(user: &str) -> Vec<u8> {
    format!("identity key of {user}").into_bytes()
}

/// `id` with `signature_key`, certified by `identity` (made-up bytes).
pub(super) fn device(id: &ClientId, signature_key: &[u8], identity: &str) -> NewDevice {
    NewDevice {
        client: ClientRecord {
            id: id.clone(),
            signature_key: signature_key.to_vec(),
            certificate: Some(
                format!("certificate of {id} by {identity}: {signature_key:?}").into_bytes(),
            ),
        },
        identity_key: identity_key(identity),
    }
}

/// Registers `user/device` under `user`'s identity key.
pub(super) async fn register(store: &dyn Store, user: &str, device: &str) -> ClientId {
    let id = client(user, device);
    let key = format!("signature key of {id}").into_bytes();
    assert_eq!(
        ok(store.register_client(&self::device(&id, &key, user)).await),
        Registration::Created
    );
    id
}

pub(super) fn key_package(owner: &str, i: u32) -> KeyPackageRecord {
    KeyPackageRecord {
        key_package_ref: format!("ref {owner} {i}").into_bytes(),
        data: Bytes::from(format!("key package {owner} {i}")),
        not_after: SystemTime::now() + std::time::Duration::from_secs(86_400),
    }
}

pub(super) fn key_packages(owner: &str, range: std::ops::Range<u32>) -> Vec<KeyPackageRecord> {
    range.map(|i| key_package(owner, i)).collect()
}

pub(super) async fn claim(store: &dyn Store, client: &ClientId) -> ClaimedKeyPackage {
    ok(store.claim_key_package(client).await).expect("a key package to claim")
}

pub(super) fn state_at(epoch: u64) -> Vec<u8> {
    format!("state at {epoch}").into_bytes()
}

pub(super) fn group_info_at(epoch: u64) -> Bytes {
    Bytes::from(format!("group info at {epoch}"))
}

pub(super) fn new_group(name: &str, creator: &ClientId) -> NewGroup {
    NewGroup {
        group_id: group_id(name),
        epoch: 0,
        state: state_at(0),
        group_info: group_info_at(0),
        creator: creator.clone(),
    }
}

pub(super) async fn create_group(store: &dyn Store, name: &str, creator: &ClientId) -> GroupId {
    ok(store.create_group(new_group(name, creator)).await);
    group_id(name)
}

/// A commit from `from_epoch` that changes nothing but the epoch.
pub(super) fn commit(group: &GroupId, from_epoch: u64, label: &str) -> CommitRecord {
    CommitRecord {
        group_id: group.clone(),
        from_epoch,
        // These groups take no proposals, so each commit is one state write.
        state_version: from_epoch,
        dedup_key: dedup_key(&format!("{group} commit {label}")),
        commit: Bytes::from(format!("commit {label}")),
        new_state: format!("state after {label}").into_bytes(),
        group_info: Bytes::from(format!("group info after {label}")),
        added: Vec::new(),
        welcome: None,
        ratchet_tree: Bytes::new(),
        removed: Vec::new(),
    }
}

pub(super) async fn accept(store: &dyn Store, commit: CommitRecord) -> CommitAccepted {
    match ok(store.accept_commit(commit).await) {
        CommitOutcome::Accepted(accepted) => accepted,
        duplicate => panic!("expected the commit to be accepted, got {duplicate:?}"),
    }
}

pub(super) async fn add(
    store: &dyn Store,
    group: &GroupId,
    from_epoch: u64,
    clients: &[&ClientId],
) -> CommitAccepted {
    let label = format!("add {clients:?} at {from_epoch}");
    accept(
        store,
        CommitRecord {
            added: clients.iter().map(|&c| c.clone()).collect(),
            welcome: Some(Bytes::from_static(b"welcome")),
            ratchet_tree: Bytes::from_static(b"ratchet tree"),
            ..commit(group, from_epoch, &label)
        },
    )
    .await
}

pub(super) async fn remove(
    store: &dyn Store,
    group: &GroupId,
    from_epoch: u64,
    clients: &[&ClientId],
) -> CommitAccepted {
    let label = format!("remove {clients:?} at {from_epoch}");
    accept(
        store,
        CommitRecord {
            removed: clients.iter().map(|&c| c.clone()).collect(),
            ..commit(group, from_epoch, &label)
        },
    )
    .await
}

/// An application message with no epoch window beyond `epoch` itself.
pub(super) fn application(
    group: &GroupId,
    sender: &ClientId,
    epoch: u64,
    label: &str,
) -> NewMessage {
    NewMessage {
        group_id: group.clone(),
        sender: Some(sender.clone()),
        dedup_key: dedup_key(&format!("{group} {sender} {label}")),
        content_key: dedup_key(&format!("content {sender}: {label}")),
        kind: EntryKind::Application,
        epoch,
        message: Bytes::from(format!("{sender}: {label}")),
        max_epoch_lag: 0,
        new_state: None,
    }
}

pub(super) fn appended(outcome: StoreResult<AppendOutcome>) -> GroupEntry {
    match ok(outcome) {
        AppendOutcome::Appended(entry) => entry,
        duplicate => panic!("expected a new entry, got {duplicate:?}"),
    }
}

pub(super) async fn send(
    store: &dyn Store,
    group: &GroupId,
    sender: &ClientId,
    epoch: u64,
    label: &str,
) -> GroupEntry {
    appended(store.append(application(group, sender, epoch, label)).await)
}

/// Everything the client may read from the group, one small page at a time.
pub(super) async fn read_all(
    store: &dyn Store,
    client: &ClientId,
    group: &GroupId,
) -> Vec<GroupEntry> {
    let mut entries: Vec<GroupEntry> = Vec::new();
    loop {
        let after = entries.last().map_or(0, |entry| entry.seq);
        let page = ok(store.read_group(client, group, after, 4).await);
        if page.is_empty() {
            return entries;
        }
        entries.extend(page);
    }
}

pub(super) fn seqs(entries: &[GroupEntry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.seq).collect()
}

pub(super) fn assert_wrong_epoch<T: Debug>(result: StoreResult<T>, expected: u64) {
    match result {
        Err(StoreError::WrongEpoch { current }) => assert_eq!(current, expected),
        other => panic!("expected WrongEpoch {{ current: {expected} }}, got {other:?}"),
    }
}

pub(super) fn assert_not_member<T: Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::NotMember)),
        "expected NotMember, got {result:?}"
    );
}

pub(super) fn assert_duplicate_commit(outcome: StoreResult<CommitOutcome>, original: &GroupEntry) {
    match ok(outcome) {
        CommitOutcome::Duplicate(entry) => assert_eq!(&entry, original),
        accepted => panic!("expected a duplicate, got {accepted:?}"),
    }
}
