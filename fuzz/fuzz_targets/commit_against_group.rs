//! Commits against a real three-member group: the DS's `GroupHandle::
//! stage_commit` with the commit, Welcome and GroupInfo of SubmitCommit, and
//! `merge` for whatever it accepts. Inputs are edits of real commits (a
//! self-update, an add with its Welcome, a remove, a key rotation, a commit
//! of a queued proposal), so the checks behind the parser are reached.

#![no_main]

use std::sync::{LazyLock, Mutex};

use arbitrary::Arbitrary;
use confide_ds::mls::GroupHandle;
use confide_fuzz::assert_client_error;
use confide_fuzz::edit::{Field, pick};
use confide_fuzz::fixture::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);
/// The DS's state at epoch 1 with bob's proposal queued; a fresh copy
/// replaces it after a fuzzed commit is merged.
static HANDLE: LazyLock<Mutex<GroupHandle>> = LazyLock::new(|| Mutex::new(FIXTURE.handle(true)));

#[derive(Arbitrary, Debug)]
struct Input {
    template: u8,
    /// The session it arrives under; none: the template's committer.
    caller: Option<u8>,
    commit: Field,
    welcome: Field,
    group_info: Field,
}

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let template = pick(&fixture.commits, input.template);
    let caller = input
        .caller
        .map_or(&template.committer, |i| pick(&fixture.clients, i));
    let commit = input.commit.build(&template.commit);
    let welcome = input.welcome.build(&template.welcome);
    let group_info = input.group_info.build(&template.group_info);
    // As the SubmitCommit handler does: an empty Welcome is none.
    let welcome = (!welcome.is_empty()).then_some(welcome.as_slice());

    let mut handle = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    let staged = match handle.stage_commit(caller, &commit, welcome, &group_info) {
        Ok(staged) => staged,
        Err(error) => return assert_client_error(&error),
    };
    assert_eq!(staged.from_epoch, 1);
    // What the DS validated it also merges, stores and reloads.
    handle
        .merge(staged)
        .expect("a commit the DS validated merges");
    assert_eq!(handle.epoch(), 2);
    let reloaded = GroupHandle::from_blob(&fixture.group_id, &handle.to_blob())
        .expect("the merged state reloads from its blob");
    assert_eq!(reloaded.epoch(), 2);
    reloaded
        .certified_members()
        .expect("the merged roster is readable, every leaf certified");
    *handle = fixture.handle(true);
});
