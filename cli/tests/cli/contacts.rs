//! `confide contacts` and `confide verify`: the identity keys a device
//! pinned and the safety number two users compare, against an in-process
//! DS on the in-memory store.

use crate::harness::{confide_ok, register, spawn_ds};

/// The digits of the line that starts with `prefix`.
fn number_after(printed: &str, prefix: &str) -> String {
    printed
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}: {printed}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_in_a_group_see_the_same_safety_number_and_accepting_it_marks_the_contact_verified()
 {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob) = (dir.path().join("alice.db"), dir.path().join("bob.db"));
    register(&ds, &alice, "alice").await;
    register(&ds, &bob, "bob").await;
    assert_eq!(
        confide_ok(&ds.endpoint, &alice, &["contacts"]).await,
        "no contacts yet\n"
    );
    let group = confide_ok(&ds.endpoint, &alice, &["create-group"]).await;
    confide_ok(
        &ds.endpoint,
        &alice,
        &["add", "--group", group.trim(), "bob"],
    )
    .await;
    confide_ok(&ds.endpoint, &bob, &["sync"]).await;

    let contacts = confide_ok(&ds.endpoint, &alice, &["contacts"]).await;
    assert!(
        contacts.starts_with("bob ") && contacts.trim_end().ends_with("not verified"),
        "{contacts}"
    );
    assert_eq!(contacts.lines().count(), 1, "{contacts}");
    let alices = confide_ok(&ds.endpoint, &alice, &["verify", "bob"]).await;
    let bobs = confide_ok(&ds.endpoint, &bob, &["verify", "alice"]).await;
    let number = number_after(&alices, "safety number with bob: ");
    assert_eq!(number.split(' ').count(), 12, "{alices}");
    assert_eq!(number_after(&bobs, "safety number with alice: "), number);
    assert!(
        alices.contains("not verified") && alices.contains("confide verify bob --accept"),
        "{alices}"
    );

    let accepted = confide_ok(&ds.endpoint, &alice, &["verify", "bob", "--accept"]).await;
    assert_eq!(number_after(&accepted, "safety number with bob: "), number);
    assert!(accepted.contains("is verified"), "{accepted}");
    let contacts = confide_ok(&ds.endpoint, &alice, &["contacts"]).await;
    assert!(
        contacts.trim_end().ends_with(" verified") && !contacts.contains("not verified"),
        "{contacts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifying_a_user_never_seen_says_so() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let alice = dir.path().join("alice.db");
    register(&ds, &alice, "alice").await;
    let output = crate::harness::confide(&ds.endpoint, &alice, &["verify", "carol"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no identity key is pinned for carol"),
        "{stderr}"
    );
}
