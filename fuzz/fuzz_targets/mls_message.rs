//! The DS's parsers for client MLS messages: `parse_application_message`
//! (SendMessage), `handshake_epoch` (the retry check of SubmitCommit) and
//! standalone proposal validation against a real group (SubmitProposal).
//! Commits against the group are `commit_against_group`'s.

#![no_main]

use std::sync::{LazyLock, Mutex};

use arbitrary::Arbitrary;
use confide_ds::mls::{GroupHandle, handshake_epoch, parse_application_message};
use confide_fuzz::assert_client_error;
use confide_fuzz::edit::{Field, pick};
use confide_fuzz::fixture::Fixture;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);
/// The DS's state at epoch 1; a fresh copy replaces it whenever a fuzzed
/// proposal is queued, so every input meets the same state.
static HANDLE: LazyLock<Mutex<GroupHandle>> = LazyLock::new(|| Mutex::new(FIXTURE.handle(false)));

#[derive(Arbitrary, Debug)]
struct Input {
    /// Which valid message the edits start from.
    template: u8,
    message: Field,
    /// Who submits it as a proposal (alice, bob, carol or dave).
    sender: u8,
}

fuzz_target!(|input: Input| {
    let fixture = &*FIXTURE;
    let mut templates: Vec<&[u8]> = vec![&fixture.application];
    templates.extend(fixture.proposals.iter().map(|(_, p)| p.as_slice()));
    templates.extend(fixture.commits.iter().map(|c| c.commit.as_slice()));
    let bytes = input
        .message
        .build(pick::<&[u8]>(&templates, input.template));

    if let Err(error) = parse_application_message(&bytes, &fixture.group_id) {
        assert_client_error(&error);
    }
    let _ = handshake_epoch(&bytes);

    let sender = pick(&fixture.clients, input.sender);
    let mut handle = HANDLE.lock().unwrap_or_else(|p| p.into_inner());
    match handle.apply_proposal(sender, &bytes) {
        Ok(epoch) => {
            assert_eq!(epoch, 1, "a proposal queued for another epoch");
            *handle = fixture.handle(false);
        }
        Err(error) => assert_client_error(&error),
    }
});
