//! `confide listen` outlives its connection: through a restarted delivery
//! service and through the expiry of its sessions it keeps printing what
//! arrives, what it missed once it is back, nothing twice, and it tells on
//! standard error when the connection went and came back. Only a DS that
//! no longer knows the device ends it.

use std::time::Duration;

use confide_client::ClientId;
use confide_tests::{spawn_app, spawn_app_with};

use crate::harness::alice_and_a_listening_bob;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_survives_a_ds_restart_printing_every_message_once() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let (mut alice, bob, group, mut listener) = alice_and_a_listening_bob(&app, dir.path()).await;
    let g = hex::encode(&group);
    alice.send(&group, b"before the stop").await?;
    listener.expect_line("alice/laptop: before the stop").await;
    // Stored as the DS goes down: printed live or after the restart, once.
    alice.send(&group, b"as the DS stops").await?;

    let stopped = app.stop_for_restart().await;
    listener
        .expect_status("connection to the delivery service lost")
        .await;
    let refused = bob.run(&["send", "--group", &g, "while it is down"]).await;
    assert!(!refused.status.success(), "nothing could be sent");
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(
        refusal.contains("did not run") && refusal.contains("reconnecting"),
        "the handed-over send was answered {refusal}"
    );

    let app = stopped.start().await;
    listener.expect_status("reconnected").await;
    alice.reconnect(app.api().await).await?;
    alice.send(&group, b"after the restart").await?;
    listener
        .expect_line("alice/laptop: after the restart")
        .await;
    let sent = bob.ok(&["send", "--group", &g, "bob is back"]).await;
    assert!(sent.starts_with("sent as #"), "send printed {sent:?}");
    let received = alice.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"bob is back");

    let expected: Vec<String> = ["before the stop", "as the DS stops", "after the restart"]
        .iter()
        .map(|body| format!("[{g}] alice/laptop: {body}"))
        .collect();
    assert_eq!(
        listener.printed[1..],
        expected,
        "standard output is the events, each once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_started_while_the_ds_is_down_prints_what_comes_once_it_is_back()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let (mut alice, bob, group, listener) = alice_and_a_listening_bob(&app, dir.path()).await;
    drop(listener);
    alice.send(&group, b"while nobody listened").await?;

    let stopped = app.stop_for_restart().await;
    let mut listener = bob.listen();
    listener.expect_status("cannot be reached").await;
    let app = stopped.start().await;
    alice.reconnect(app.api().await).await?;
    listener
        .expect_line("alice/laptop: while nobody listened")
        .await;
    alice.send(&group, b"after the start").await?;
    listener.expect_line("alice/laptop: after the start").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_keeps_printing_and_running_commands_long_after_its_first_session_expired()
-> anyhow::Result<()> {
    const SESSION: Duration = Duration::from_secs(3);
    let app = spawn_app_with(|s| s.session_ttl_secs = SESSION.as_secs()).await;
    let dir = tempfile::tempdir()?;
    let (mut alice, bob, group, mut listener) = alice_and_a_listening_bob(&app, dir.path()).await;
    let g = hex::encode(&group);

    for lifetime in 1..=3 {
        // The scenario is time passing: a session lifetime, each round.
        tokio::time::sleep(SESSION).await;
        alice.authenticate().await?;
        let body = format!("{lifetime} lifetimes later");
        alice.send(&group, body.as_bytes()).await?;
        listener.expect_line(&format!("alice/laptop: {body}")).await;
        // A handed-over command runs on the listener's session, which it
        // renewed in time.
        let reply = format!("bob, {lifetime} lifetimes later");
        bob.ok(&["send", "--group", &g, &reply]).await;
        let received = alice.expect_messages(&group, lifetime).await;
        assert_eq!(received[lifetime - 1].body, reply.as_bytes());
    }
    assert_eq!(listener.printed.len(), 4, "{:#?}", listener.printed);
    assert!(
        listener.status_lines().is_empty(),
        "renewing is silent: {:?}",
        listener.status_lines()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_ends_with_the_reason_when_its_device_is_removed_from_the_server()
-> anyhow::Result<()> {
    const ADMIN: &str = "operator secret";
    let app = spawn_app_with(|s| s.admin_token = Some(ADMIN.into())).await;
    let dir = tempfile::tempdir()?;
    let (_alice, _bob, _group, mut listener) = alice_and_a_listening_bob(&app, dir.path()).await;

    app.remove_as_operator(ADMIN, &ClientId::new("bob", "phone")?)
        .await?;
    let status = listener.expect_exit().await;
    assert!(!status.success(), "{status:?}");
    let said = listener.status_lines().join("\n");
    assert!(
        said.contains("refused to sign this device in") && said.contains("removed"),
        "listen said {said}"
    );
    Ok(())
}
