//! CreateGroup's input: a GroupInfo and a ratchet tree, from which the DS
//! builds a group's public state (`GroupHandle::create`, which verifies the
//! GroupInfo's signature and every leaf), then reads its roster and stores it
//! as a blob that must load again. Templates: a new one-member group and a
//! three-member one.

#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use confide_ds::mls::GroupHandle;
use confide_fuzz::assert_client_error;
use confide_fuzz::edit::{Field, pick};
use confide_fuzz::fixture::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

#[derive(Arbitrary, Debug)]
struct Input {
    template: u8,
    group_info: Field,
    ratchet_tree: Field,
}

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let templates = [&fixture.created, &fixture.grown];
    let template = pick(&templates, input.template);
    let group_info = input.group_info.build(&template.group_info);
    let ratchet_tree = input.ratchet_tree.build(&template.ratchet_tree);
    let handle = match GroupHandle::create(&group_info, &ratchet_tree) {
        Ok(handle) => handle,
        Err(error) => return assert_client_error(&error),
    };
    if let Err(error) = handle.certified_members() {
        assert_client_error(&error);
    }
    let group_id = handle.group_id();
    let _ = handle.ratchet_tree();
    let reloaded = GroupHandle::from_blob(&group_id, &handle.to_blob())
        .expect("an accepted group reloads from its blob");
    assert_eq!(reloaded.epoch(), handle.epoch());
});
