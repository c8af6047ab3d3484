//! What the `confide` binary prints and what it leaves on disk, against an
//! in-process DS on the in-memory store.

use std::path::Path;

use crate::harness::{
    alice_and_bob_in_a_group, alone_in_a_group, confide, confide_ok, register, spawn_ds,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_with_escape_sequences_and_newlines_is_printed_escaped_in_one_marked_block() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;
    let group = group.as_str();

    let text = "see you\x1b[2J\x1b]0;pwned\x07\ncarol/laptop: forged \u{202e}txt.exe";
    confide_ok(&ds.endpoint, &alice, &["send", "--group", group, text]).await;
    let printed = confide_ok(&ds.endpoint, &bob, &["sync"]).await;

    assert!(
        !printed.chars().any(|c| c.is_control() && c != '\n'),
        "a control character reached the terminal: {printed:?}"
    );
    assert!(!printed.contains('\u{202e}'), "{printed:?}");
    let lines: Vec<&str> = printed.lines().collect();
    let first = lines
        .iter()
        .position(|line| line.contains("see you"))
        .unwrap_or_else(|| panic!("the message is not printed: {printed:?}"));
    assert_eq!(
        lines[first],
        format!("[{group}] alice/laptop: see you\\x1b[2J\\x1b]0;pwned\\x07")
    );
    assert_eq!(
        lines[first + 1],
        "  | carol/laptop: forged \\u{202e}txt.exe",
        "the second line of the message is marked as a continuation"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("carol")),
        "a forged line: {printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_state_path_is_an_error_that_says_to_register_and_creates_nothing() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let typo = dir.path().join("alcie.db");
    for command in [
        &["sync"][..],
        &["create-group"],
        &["send", "--group", "00", "hi"],
    ] {
        let output = confide(&ds.endpoint, &typo, command).await;
        assert!(!output.status.success(), "confide {command:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!(
            "no state file at {}; run `confide register` first",
            typo.display()
        );
        assert!(stderr.contains(&expected), "confide {command:?}: {stderr}");
        assert!(!typo.exists(), "confide {command:?} created {typo:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_leaves_no_state_file() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    register(&ds, &dir.path().join("first.db"), "alice").await;
    let second = dir.path().join("second.db");
    let output = confide(
        &ds.endpoint,
        &second,
        &["register", "--user", "alice", "--device", "laptop"],
    )
    .await;
    assert!(!output.status.success(), "alice/laptop registered twice");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("listing the directory")
        .map(|entry| entry.expect("an entry").file_name())
        .filter(|name| name.to_string_lossy().starts_with("second"))
        .collect();
    assert!(left.is_empty(), "the failed registration left {left:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_state_file_and_the_directory_made_for_it_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().join("confide").join("alice.db");
    register(&ds, &state, "alice").await;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{path:?}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(state.parent().expect("a parent")), 0o700);
    let mut files = 0;
    for entry in std::fs::read_dir(state.parent().expect("a parent")).expect("listing") {
        let path = entry.expect("an entry").path();
        assert_eq!(mode(&path), 0o600, "{path:?}");
        files += 1;
    }
    assert!(files >= 1, "no state file written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_a_state_file_is_refused_and_leaves_no_lock_file() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a database").expect("writing a text file");
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).expect("making a directory");
    for path in [&text, &folder] {
        let output = confide(&ds.endpoint, path, &["create-group"]).await;
        assert!(
            !output.status.success(),
            "{} was taken as a state file",
            path.display()
        );
        let lock = format!("{}.lock", path.display());
        assert!(!Path::new(&lock).exists(), "{lock} was left behind");
    }
    assert_eq!(
        std::fs::read_to_string(&text).expect("the text file"),
        "not a database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_or_removing_nobody_is_refused_and_starts_no_epoch() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, group) = alone_in_a_group(&ds, dir.path(), "alice").await;
    let group = group.as_str();
    for command in ["add", "remove"] {
        let output = confide(&ds.endpoint, &alice, &[command, "--group", group]).await;
        assert!(
            !output.status.success(),
            "`{command}` with no users succeeded"
        );
    }
    let members = confide_ok(&ds.endpoint, &alice, &["members", "--group", group]).await;
    assert!(members.starts_with("epoch 0\n"), "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_user_or_group_is_an_error_that_names_the_mistake_and_the_next_step() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, group) = alone_in_a_group(&ds, dir.path(), "alice").await;
    let group = group.as_str();

    let unknown_user = confide(&ds.endpoint, &alice, &["add", "--group", group, "bbo"]).await;
    assert!(!unknown_user.status.success());
    let error = String::from_utf8_lossy(&unknown_user.stderr);
    assert!(error.contains("no user bbo on this server"), "{error}");
    assert!(error.contains("(NOT_FOUND)"), "{error}");
    assert!(
        !error.contains("Caused by"),
        "the reason is printed once: {error}"
    );

    let last = if group.ends_with('0') { '1' } else { '0' };
    let typo = format!("{}{last}", &group[..group.len() - 1]);
    let unknown_group = confide(&ds.endpoint, &alice, &["send", "--group", &typo, "hi"]).await;
    assert!(!unknown_group.status.success());
    let error = String::from_utf8_lossy(&unknown_group.stderr);
    assert!(error.contains("in no group with that id"), "{error}");
    assert!(error.contains("`confide sync` first"), "{error}");

    let again = confide(
        &ds.endpoint,
        &alice,
        &["register", "--user", "alice", "--device", "laptop"],
    )
    .await;
    assert!(!again.status.success());
    let error = String::from_utf8_lossy(&again.stderr);
    assert!(
        error.contains("already holds a registered device"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_named_by_any_start_of_its_id_and_a_non_hex_id_is_refused() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;

    let prefix = group[..6].to_ascii_uppercase();
    confide_ok(
        &ds.endpoint,
        &alice,
        &["send", "--group", &prefix, "by prefix"],
    )
    .await;
    let printed = confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    assert!(
        printed.contains(&format!("[{group}] alice/laptop: by prefix")),
        "{printed:?}"
    );

    let refused = confide(&ds.endpoint, &alice, &["members", "--group", "my-group"]).await;
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("no group of this device is named \"my-group\", and it is not a group id"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_group_is_addressed_by_its_name_and_its_history_reads_back_with_unread_counts() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;

    let named = confide_ok(
        &ds.endpoint,
        &alice,
        &["rename", "--group", &group, "Ops", "--topic", "on call"],
    )
    .await;
    assert!(named.starts_with("named the group \"Ops\""), "{named:?}");
    confide_ok(&ds.endpoint, &alice, &["send", "--group", "Ops", "hello"]).await;
    confide_ok(&ds.endpoint, &alice, &["send", "--group", "Ops", "anyone?"]).await;

    let printed = confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    assert!(
        printed.contains("alice/laptop named the group \"Ops\" (topic: on call)"),
        "{printed:?}"
    );
    let listed = confide_ok(&ds.endpoint, &bob, &["groups"]).await;
    assert_eq!(
        listed,
        format!("\"Ops\"  {group}  2 members: alice/laptop, bob/laptop  2 unread\n")
    );
    confide_ok(&ds.endpoint, &bob, &["send", "--group", "Ops", "me"]).await;

    // Bob's history: the rename, alice's messages and his own, in order,
    // each with its time; reading it clears the unread count.
    let history = confide_ok(&ds.endpoint, &bob, &["history", "--group", "Ops"]).await;
    let lines: Vec<&str> = history.lines().collect();
    let tails: Vec<&str> = lines
        .iter()
        .map(|line| line.split_once("  ").map_or(*line, |(_time, rest)| rest))
        .filter(|rest| !rest.starts_with("* joined"))
        .collect();
    assert_eq!(
        tails,
        [
            "* alice/laptop named the group \"Ops\" (topic: on call)",
            "alice/laptop: hello",
            "alice/laptop: anyone?",
            "bob/laptop (you): me",
        ],
        "{history}"
    );
    assert!(
        lines
            .iter()
            .all(|line| line.as_bytes()[..4].iter().all(u8::is_ascii_digit)),
        "each line starts with its date: {history}"
    );
    let limited = confide_ok(
        &ds.endpoint,
        &bob,
        &["history", "--group", "Ops", "--limit", "1"],
    )
    .await;
    assert!(
        limited.trim_end().ends_with("bob/laptop (you): me"),
        "{limited:?}"
    );
    assert_eq!(limited.lines().count(), 1);
    let listed = confide_ok(&ds.endpoint, &bob, &["groups"]).await;
    assert!(listed.ends_with("  0 unread\n"), "{listed:?}");

    // A rename keeps the topic unless given another; `--topic ""` clears it.
    confide_ok(
        &ds.endpoint,
        &bob,
        &["rename", "--group", "Ops", "Ops team"],
    )
    .await;
    let printed = confide_ok(&ds.endpoint, &alice, &["sync"]).await;
    assert!(
        printed.contains("bob/laptop named the group \"Ops team\" (topic: on call)"),
        "{printed:?}"
    );
    confide_ok(
        &ds.endpoint,
        &bob,
        &["rename", "--group", "Ops team", "Ops team", "--topic", ""],
    )
    .await;
    let printed = confide_ok(&ds.endpoint, &alice, &["sync"]).await;
    assert!(
        printed
            .trim_end()
            .ends_with("bob/laptop named the group \"Ops team\""),
        "{printed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devices_of_a_user_nobody_registered_are_an_error_not_an_empty_list() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let alice = dir.path().join("alice.db");
    register(&ds, &alice, "alice").await;
    let output = confide(&ds.endpoint, &alice, &["devices", "nosuch"]).await;
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("nosuch has no devices on this server"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lists_each_group_of_the_device_with_its_members_once_it_is_added() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let carol = dir.path().join("carol.db");
    register(&ds, &carol, "carol").await;
    assert_eq!(
        confide_ok(&ds.endpoint, &carol, &["groups"]).await,
        "no groups yet: `confide create-group --name NAME` makes one, or a member adds you\n"
    );
    let (alice, _bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;
    confide_ok(&ds.endpoint, &alice, &["add", "--group", &group, "carol"]).await;

    // carol has not synced: `groups` takes in the Welcome.
    let listed = confide_ok(&ds.endpoint, &carol, &["groups"]).await;
    assert_eq!(
        listed,
        format!(
            "(no name)  {group}  3 members: alice/laptop, bob/laptop, carol/laptop  0 unread\n"
        )
    );
    let events = confide_ok(&ds.endpoint, &carol, &["sync"]).await;
    assert!(
        events.contains(&format!("[{group}]")),
        "the events stay for sync: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_out_once_another_member_syncs() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;

    let asked = confide_ok(&ds.endpoint, &bob, &["leave", "--group", &group]).await;
    assert!(
        asked.starts_with("asked to leave (removing bob/laptop); you are out once another member's device commits it"),
        "{asked:?}"
    );
    let seen = confide_ok(&ds.endpoint, &alice, &["sync"]).await;
    let left = seen
        .lines()
        .find(|line| line.starts_with(&format!("[{group}] bob/laptop (key ")))
        .unwrap_or_else(|| panic!("alice is not told: {seen:?}"));
    assert!(left.ends_with(") left"), "{left:?}");
    let told = confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    assert!(
        told.contains(&format!(
            "[{group}] you left the group (alice/laptop's device committed it)"
        )),
        "{told:?}"
    );
    let groups = confide_ok(&ds.endpoint, &bob, &["groups"]).await;
    assert!(
        groups.starts_with("no groups yet") && !groups.contains(&group),
        "{groups:?}"
    );
    let members = confide_ok(&ds.endpoint, &alice, &["members", "--group", &group]).await;
    assert!(members.contains("alice/laptop"), "{members}");
    assert!(!members.contains("bob"), "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_read_from_the_device_when_the_ds_cannot_be_reached() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, group) = alone_in_a_group(&ds, dir.path(), "alice").await;
    let endpoint = ds.endpoint.clone();
    confide_ok(&endpoint, &alice, &["rename", "--group", &group, "Notes"]).await;
    confide_ok(
        &endpoint,
        &alice,
        &["send", "--group", "Notes", "kept here"],
    )
    .await;
    drop(ds);

    let output = confide(&endpoint, &alice, &["history", "--group", "Notes"]).await;
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("alice/laptop (you): kept here"),
        "{printed}"
    );
    let warned = String::from_utf8_lossy(&output.stderr);
    assert!(
        warned.contains("this is the history as this device has it"),
        "{warned}"
    );
}
