//! One process holds a state file at a time. `confide listen` keeps it and
//! runs the commands other `confide` processes hand it over its socket, so
//! no MLS state is ever written back from a stale copy (a reused key
//! generation would lose messages for good); a command that finds the file
//! held by a process that takes no commands is refused at once, naming it.
//! Reading the roster (`members`) leaves the pending events for `sync`.

use confide_client::{Client, StateLocation};
use confide_tests::spawn_app;

use crate::harness::{Device, alice_and_a_listening_bob};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_other_processes_while_listening_lose_nothing() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let mut alice = app.client("alice", "laptop").await;
    let mut carol = app.client("carol", "phone").await;
    let bob = Device::register(&app, dir.path(), "bob").await;
    let group = alice.create_group().await?;
    let g = hex::encode(&group);
    alice.add_users(&group, &["bob"]).await?;

    // The README's two terminals: one listens, the other sends.
    let mut listener = bob.listen();
    listener
        .expect_line("joined at epoch 1 with alice/laptop")
        .await;
    let listened = listener.printed.last().cloned();
    assert!(
        listened.is_some_and(|l| l.contains("bob/phone")),
        "bob joined with alice and himself: {:?}",
        listener.printed
    );
    let sent = bob.ok(&["send", "--group", &g, "hi 1"]).await;
    assert!(sent.starts_with("sent as #"), "send printed {sent:?}");
    alice.send(&group, b"hello bob").await?;
    listener.expect_line("alice/laptop: hello bob").await;
    bob.ok(&["send", "--group", &g, "hi 2"]).await;
    // Every generation of bob's sender ratchet is used once: alice decrypts
    // every message (a reused one would be undecryptable, failing the test).
    let bodies: Vec<String> = alice
        .expect_messages(&group, 2)
        .await
        .into_iter()
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect();
    assert_eq!(bodies, ["hi 1", "hi 2"]);

    // Adding someone from another process while listening.
    let added = bob.ok(&["add", "--group", &g, "carol"]).await;
    assert_eq!(added, "added carol/phone\n");
    carol.expect_joined(&group).await;
    alice.expect_epoch(&group, 2).await;
    alice.send(&group, b"welcome carol").await?;
    listener.expect_line("alice/laptop: welcome carol").await;
    bob.ok(&["send", "--group", &g, "hi 3"]).await;
    assert_eq!(alice.bodies(&group), ["hi 1", "hi 2"]);
    alice.expect_messages(&group, 3).await;
    assert_eq!(alice.bodies(&group), ["hi 1", "hi 2", "hi 3"]);
    carol.expect_messages(&group, 2).await;
    assert_eq!(carol.bodies(&group), ["welcome carol", "hi 3"]);

    // The roster through the listener is current; `sync` is left to it.
    let members = bob.ok(&["members", "--group", &g]).await;
    for member in ["alice/laptop", "bob/phone", "carol/phone"] {
        assert!(members.contains(member), "members printed {members}");
    }
    let sync = bob.run(&["sync"]).await;
    assert!(!sync.status.success(), "sync beside a listener is refused");
    let refusal = String::from_utf8_lossy(&sync.stderr);
    assert!(
        refusal.contains("confide listen") && refusal.contains("prints"),
        "sync said {refusal}"
    );

    alice.send(&group, b"last").await?;
    listener.expect_line("alice/laptop: last").await;
    let expected: Vec<String> = ["hello bob", "welcome carol", "last"]
        .iter()
        .map(|body| format!("[{g}] alice/laptop: {body}"))
        .collect();
    assert_eq!(
        listener.printed[1..],
        expected,
        "the listener printed every message of alice and nothing it could not process"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_a_state_file_held_by_a_process_that_takes_no_commands_is_refused()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let mut alice = app.client("alice", "laptop").await;
    let bob = Device::register(&app, dir.path(), "bob").await;
    let group = alice.create_group().await?;
    alice.add_users(&group, &["bob"]).await?;

    // This process holds bob's state, as a one-shot `confide send` would.
    let holder = Client::open(app.api().await, &StateLocation::File(bob.state.clone())).await?;
    let refused = bob
        .run(&["send", "--group", &hex::encode(&group), "hi"])
        .await;
    assert!(!refused.status.success(), "the send was refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "bob.db is in use by process {}",
            std::process::id()
        )) && stderr.contains("try again when it finishes"),
        "the refusal said {stderr}"
    );
    drop(holder);
    alice.catch_up().await;
    assert!(alice.bodies(&group).is_empty(), "nothing was sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_leaves_pending_events_for_a_later_sync() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let mut alice = app.client("alice", "laptop").await;
    let mut carol = app.client("carol", "phone").await;
    let bob = Device::register(&app, dir.path(), "bob").await;
    let group = alice.create_group().await?;
    let g = hex::encode(&group);
    alice.add_users(&group, &["bob", "carol"]).await?;
    carol.expect_joined(&group).await;
    alice.send(&group, b"before members").await?;
    alice.remove_users(&group, &["carol"]).await?;

    let members = bob.ok(&["members", "--group", &g]).await;
    assert!(
        members.contains("alice/laptop") && !members.contains("carol/phone"),
        "members printed the current roster: {members}"
    );
    let synced = bob.ok(&["sync"]).await;
    for line in [
        "joined at epoch 1 with",
        "alice/laptop: before members",
        "alice/laptop removed carol/phone",
    ] {
        assert!(
            synced.contains(line),
            "sync printed {line:?} after members: {synced}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_handed_to_a_listener_needs_no_connection_of_its_own() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let (mut alice, bob, group, _listener) = alice_and_a_listening_bob(&app, dir.path()).await;

    // A mistyped (or unreachable) endpoint: the listener's connection is
    // the one that sends.
    let offline = Device {
        endpoint: "http://127.0.0.1:9".into(),
        state: bob.state.clone(),
    };
    let g = hex::encode(&group);
    let sent = offline
        .ok(&["send", "--group", &g, "through the listener"])
        .await;
    assert!(sent.starts_with("sent as #"), "send printed {sent:?}");
    let received = alice.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"through the listener");
    Ok(())
}
