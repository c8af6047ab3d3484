//! One process holds a state file at a time: a second client on the same
//! file fails at once, naming the holder, and opens once it is gone. (What
//! the `confide` binary does with a held state file, `confide listen`
//! taking the others' commands, is tested beside the binary, in
//! `cli/tests/cli/state_file.rs`.)

use confide_client::{Client, ClientError, ClientId, StateLocation};
use confide_tests::{WAIT, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_on_a_locked_state_file_fails_at_once_naming_the_holder()
-> anyhow::Result<()> {
    let app = spawn_app().await;
    let dir = tempfile::tempdir()?;
    let location = StateLocation::File(dir.path().join("bob.db"));
    let bob = Client::register(
        app.api().await,
        ClientId::new("bob", "phone")?,
        &location,
        "",
    )
    .await?;

    let second = tokio::time::timeout(WAIT, Client::open(app.api().await, &location)).await?;
    match second {
        Err(ClientError::StateLocked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        Err(other) => panic!("the second open failed otherwise: {other}"),
        Ok(_) => panic!("a second client opened a state file in use"),
    }

    drop(bob);
    let reopened = Client::open(app.api().await, &location).await?;
    assert_eq!(reopened.id().to_string(), "bob/phone");
    Ok(())
}
