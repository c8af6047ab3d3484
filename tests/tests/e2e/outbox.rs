//! The sender's outbox: a message whose answer never came is kept in the
//! state file and sent again with the same id and bytes, so it is stored and
//! delivered once, whether the DS had it or not.

use confide_client::{Api, Client, ClientId, StateLocation};
use confide_ds::domain::EntryKind;
use confide_tests::{HostileDs, Lost, Member, TestApp, spawn_app};

/// The sequence numbers of the application messages in the group's log.
async fn stored_messages(app: &TestApp, reader: &ClientId, group: &[u8]) -> Vec<u64> {
    app.group_log(reader, group)
        .await
        .into_iter()
        .filter(|entry| entry.kind == EntryKind::Application)
        .map(|entry| entry.seq)
        .collect()
}

/// alice (on a state file, behind `hostile`) in a group with bob (direct).
async fn alice_and_bob(
    app: &TestApp,
    hostile: &HostileDs,
    state: &StateLocation,
) -> (Vec<u8>, Member, Member) {
    let api = Api::connect(&hostile.endpoint).await.expect("connecting");
    let id = ClientId::new("alice", "phone").expect("a valid name");
    let mut alice = Member::new(
        Client::register(api, id, state, "")
            .await
            .expect("registering alice"),
    );
    let mut bob = app.client("bob", "phone").await;
    let group = alice.create_group().await.expect("a group");
    alice.add_users(&group, &["bob"]).await.expect("adding bob");
    bob.expect_joined(&group).await;
    (group, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_answer_was_lost_is_stored_once_when_the_same_text_is_sent_again()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("alice.db"));
    let (group, mut alice, mut bob) = alice_and_bob(&app, &hostile, &state).await;

    hostile.lose_sends(Lost::Answer);
    let error = alice
        .send(&group, b"hello")
        .await
        .expect_err("the answer was lost");
    assert!(error.is_in_doubt(), "{error}");
    let stored = stored_messages(&app, bob.id(), &group).await;
    assert_eq!(stored.len(), 1, "the DS did store it");

    // The user runs the same command again: a new process on the same state.
    hostile.stop_attacking();
    drop(alice);
    let api = Api::connect(&hostile.endpoint).await?;
    let mut alice = Member::new(Client::open(api, &state).await?);
    let seq = alice.send(&group, b"hello").await?;
    assert_eq!(seq, stored[0], "the resend returns the original seq");
    assert_eq!(stored_messages(&app, bob.id(), &group).await, stored);

    let after = alice.send(&group, b"after").await?;
    let received = bob.expect_messages(&group, 2).await;
    let bodies: Vec<&[u8]> = received.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(
        bodies,
        [b"hello".as_slice(), b"after"],
        "each once, in order"
    );
    assert_eq!((received[0].seq, received[1].seq), (seq, after));
    alice.catch_up().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_never_reached_the_ds_is_sent_by_the_next_sync_even_epochs_later()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let (group, mut alice, mut bob) = alice_and_bob(&app, &hostile, &StateLocation::Memory).await;

    hostile.lose_sends(Lost::Request);
    let error = alice
        .send(&group, b"late but once")
        .await
        .expect_err("the request was lost");
    assert!(error.is_in_doubt(), "{error}");
    hostile.stop_attacking();
    // Past the DS's window of epochs (max_epoch_lag is 2): the stored
    // ciphertext is refused as WRONG_EPOCH and must be encrypted again.
    for _ in 0..3 {
        bob.self_update(&group).await?;
    }

    alice.catch_up().await;
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"late but once");
    assert_eq!(received[0].sender, *alice.id());
    assert_eq!(
        stored_messages(&app, bob.id(), &group).await,
        [received[0].seq]
    );
    alice.catch_up().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_id_after_the_answer_gets_the_original_seq_even_epochs_later()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let hostile = HostileDs::in_front_of(&app).await;
    let dir = tempfile::tempdir()?;
    let state = StateLocation::File(dir.path().join("alice.db"));
    let (group, mut alice, mut bob) = alice_and_bob(&app, &hostile, &state).await;

    let seq = alice.send_with_id(&group, b"message-1", b"hello").await?;
    bob.self_update(&group).await?;
    alice.catch_up().await;
    // The application did not record the answer (it stopped) and retries.
    let again = alice.send_with_id(&group, b"message-1", b"hello").await?;
    assert_eq!(again, seq, "the retry returns the original seq");
    assert_eq!(stored_messages(&app, bob.id(), &group).await, [seq]);
    let other = alice
        .send_with_id(&group, b"message-1", b"another text")
        .await
        .expect_err("one id, two messages");
    assert!(other.to_string().contains("message id"), "{other}");
    let received = bob.expect_messages(&group, 1).await;
    assert_eq!(received[0].body, b"hello");
    Ok(())
}
