//! No plaintext at the DS: what it stores and what it logs holds none of
//! what members said.

use std::process::Command;

use confide_client::Event;
use confide_tests::{captured_ds_logs, spawn_app};
use uuid::Uuid;

/// `pg_dump` of the whole test database, as text.
async fn pg_dump(database_url: &str) -> Vec<u8> {
    let url = database_url.to_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("pg_dump")
            .args(["--no-owner", "--dbname", &url])
            .output()
    })
    .await
    .expect("the pg_dump task")
    .expect("running pg_dump (is it on PATH?)");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Whether `haystack` holds `needle` as text or as the hex PostgreSQL
/// prints bytea columns in.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    let hex = hex::encode(needle).into_bytes();
    [needle, hex.as_slice()]
        .iter()
        .any(|n| haystack.windows(n.len()).any(|w| w == *n))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_the_database_nor_the_logs_hold_any_plaintext() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    let canaries: Vec<String> = (0..5)
        .map(|i| format!("canary {i} {}", Uuid::new_v4()))
        .collect();

    alice.send(&group, canaries[0].as_bytes()).await?;
    bob.send(&group, canaries[1].as_bytes()).await?;
    carol.send(&group, canaries[2].as_bytes()).await?;
    bob.self_update(&group).await?;
    alice.send(&group, canaries[3].as_bytes()).await?;
    alice.remove_users(&group, &["carol"]).await?;
    bob.send(&group, canaries[4].as_bytes()).await?;

    // The members did say the canaries: each one decrypts at the others.
    alice.expect_messages(&group, 3).await;
    bob.expect_messages(&group, 3).await;
    carol
        .wait_until("the removal", |m| {
            m.events()
                .iter()
                .any(|e| matches!(e, Event::Removed { .. }))
        })
        .await;
    let mut decrypted: Vec<Vec<u8>> = [&alice, &bob, &carol]
        .iter()
        .flat_map(|m| m.messages(&group))
        .map(|m| m.body)
        .collect();
    decrypted.sort();
    decrypted.dedup();
    let mut said: Vec<Vec<u8>> = canaries.iter().map(|c| c.clone().into_bytes()).collect();
    said.sort();
    assert_eq!(decrypted, said);

    let dump = pg_dump(&app.database_url).await;
    let ciphertext = app
        .group_log(alice.id(), &group)
        .await
        .last()
        .expect("a log entry")
        .message
        .clone();
    assert!(
        holds(&dump, &ciphertext),
        "the dump holds the group log, so searching it means something"
    );
    let logs = captured_ds_logs();
    assert!(!logs.is_empty(), "the DS logged something");
    for canary in &canaries {
        assert!(
            !holds(&dump, canary.as_bytes()),
            "{canary:?} is in the database"
        );
        assert!(
            !holds(&logs, canary.as_bytes()),
            "{canary:?} is in the DS logs"
        );
    }
    Ok(())
}
