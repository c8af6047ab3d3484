//! `confide chat` as three people use it, each in a terminal of their own
//! (tmux): a named group, people added, a conversation, a rename, a
//! removal, and the delivery service restarted in the middle.

use confide_client::ClientId;
use confide_tests::{spawn_app, spawn_app_with};

use crate::harness::{Device, Tmux};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_people_chat_through_a_ds_restart_and_the_removed_one_sees_why() -> anyhow::Result<()>
{
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let tmux = Tmux::new();
    let mut devices = Vec::new();
    for user in ["alice", "bob", "carol"] {
        let device = Device::register(&app, dir.path(), user).await;
        tmux.open(user, &device.command(&["chat"]));
        tmux.expect(user, "/help").await;
        devices.push(device);
    }

    // Alice makes a named group and adds both; they see it in their lists.
    tmux.type_line("alice", "/new Ops");
    tmux.expect("alice", "Ops").await;
    tmux.type_line("alice", "/add bob carol");
    tmux.expect("alice", "alice/phone added bob/phone").await;
    for user in ["bob", "carol"] {
        tmux.expect(user, "Ops").await;
        tmux.expect(user, "you joined").await;
    }

    // They talk; each sees the others' messages and their own.
    tmux.type_line("alice", "hello both");
    tmux.expect("bob", "hello both").await;
    tmux.expect("carol", "hello both").await;
    // Bob has the group on screen: what he sees is read.
    let listed = devices[1].ok(&["groups"]).await;
    assert!(listed.trim_end().ends_with("0 unread"), "{listed}");
    tmux.type_line("bob", "hi alice");
    tmux.expect("alice", "hi alice").await;
    tmux.expect("bob", "hi alice").await;

    // The DS goes away: the views say so, a message typed meanwhile is
    // kept, and after the restart it arrives, with what comes next.
    let stopped = app.stop_for_restart().await;
    tmux.type_line("carol", "sent while the server was down");
    tmux.expect("carol", "econnecting").await;
    tmux.type_line("alice", "alice, also while it was down");
    let app = stopped.start().await;
    // Every screen shows the two in the one order the DS gave them, the
    // senders' own screens too (each had its own message first).
    let mut orders = Vec::new();
    for user in ["alice", "bob", "carol"] {
        tmux.expect(user, "sent while the server was down").await;
        let screen = tmux.expect(user, "alice, also while it was down").await;
        let carol_first = screen.find("sent while the server was down")
            < screen.find("alice, also while it was down");
        orders.push(carol_first);
    }
    assert!(
        orders.iter().all(|&o| o == orders[0]),
        "the screens disagree on the order: {orders:?}"
    );
    tmux.type_line("alice", "after the restart");
    tmux.expect("bob", "after the restart").await;
    tmux.expect("carol", "after the restart").await;

    // A rename is shown to everyone.
    tmux.type_line("bob", "/rename Ops team");
    tmux.expect("alice", "named the group \"Ops team\"").await;
    tmux.expect("carol", "named the group \"Ops team\"").await;

    // Carol is removed, and sees who removed her; the others go on without her.
    tmux.type_line("alice", "/remove carol");
    tmux.expect("carol", "alice/phone removed you").await;
    tmux.expect("bob", "alice/phone removed carol/phone").await;
    tmux.type_line("bob", "just us now");
    tmux.expect("alice", "just us now").await;
    assert!(!tmux.screen("carol").contains("just us now"));

    // Nothing was lost: bob's history (handed to his running chat) has
    // every message, once.
    let history = devices[1].ok(&["history", "--group", "Ops team"]).await;
    for said in [
        "hello both",
        "hi alice",
        "sent while the server was down",
        "alice, also while it was down",
        "after the restart",
        "just us now",
    ] {
        assert_eq!(history.matches(said).count(), 1, "{said:?} in:\n{history}");
    }
    drop(app);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_started_while_the_ds_is_down_shows_its_history_and_connects_once_it_is_back()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let alice = Device::register(&app, dir.path(), "alice").await;
    alice
        .ok(&["create-group", "--name", "Ops", "--topic", "on call"])
        .await;
    alice
        .ok(&["send", "--group", "Ops", "kept on this device"])
        .await;

    let stopped = app.stop_for_restart().await;
    let tmux = Tmux::new();
    tmux.open("alice", &alice.command(&["chat"]));
    let screen = tmux.expect("alice", "kept on this device").await;
    assert!(screen.contains("reconnecting"), "{screen}");
    let _app = stopped.start().await;
    tmux.expect("alice", "connected │").await;
    tmux.type_line("alice", "sent once it was back");
    tmux.expect("alice", "(you): sent once it was back").await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_removed_from_the_server_keeps_its_chat_open_and_sees_why() -> anyhow::Result<()> {
    const ADMIN: &str = "operator secret";
    let app = spawn_app_with(|s| s.admin_token = Some(ADMIN.into())).await;
    let dir = tempfile::tempdir()?;
    let bob = Device::register(&app, dir.path(), "bob").await;
    bob.ok(&["create-group", "--name", "Notes"]).await;
    bob.ok(&["send", "--group", "Notes", "still readable"])
        .await;
    let tmux = Tmux::new();
    tmux.open("bob", &bob.command(&["chat"]));
    tmux.expect("bob", "still readable").await;

    app.remove_as_operator(ADMIN, &ClientId::new("bob", "phone")?)
        .await?;
    let screen = tmux.expect("bob", "disconnected for good").await;
    assert!(screen.contains("still readable"), "{screen}");
    assert!(screen.contains("removed from the server"), "{screen}");
    Ok(())
}
