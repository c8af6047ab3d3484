//! No plaintext at the DS: what it stores, logs and exports (database,
//! logs at trace level, Prometheus metrics) holds none of what members said
//! — raw, hex or base64 — and none of their private key material.

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

/// The forms `secret` could take in text: raw, hex (either case, as
/// PostgreSQL prints bytea), and base64 (standard and URL-safe) at each of
/// the three alignments it can have inside a longer encoded value.
fn encodings(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut forms = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(secret);
        for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            // Drop the characters that also depend on the bytes around it.
            let stable = &encoded[4..encoded.len() - 4];
            forms.push(stable.as_bytes().to_vec());
        }
    }
    forms
}

/// Whether `haystack` holds `secret` in any of its [`encodings`].
fn holds(haystack: &[u8], secret: &[u8]) -> bool {
    encodings(secret)
        .iter()
        .any(|n| haystack.windows(n.len()).any(|w| w == n.as_slice()))
}

#[test]
fn the_search_finds_every_encoding_of_a_secret() {
    use base64::Engine as _;
    let secret = b"a canary that must be found";
    for prefix in ["", "x", "xy", "xyz"] {
        let mut value = prefix.as_bytes().to_vec();
        value.extend_from_slice(secret);
        value.extend_from_slice(b"suffix");
        let base64 = base64::engine::general_purpose::STANDARD.encode(&value);
        assert!(holds(base64.as_bytes(), secret), "base64 after {prefix:?}");
        assert!(
            holds(hex::encode(&value).as_bytes(), secret),
            "hex after {prefix:?}"
        );
    }
    assert!(!holds(b"nothing to see here", secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_or_key_material_in_the_database_logs_or_metrics() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let (group, [mut alice, mut bob, mut carol]) =
        app.conversation(["alice", "bob", "carol"]).await;
    let canaries: Vec<String> = (0..5)
        .map(|i| format!("canary {i} {}", Uuid::new_v4()))
        .collect();
    // The group's name and topic travel like messages: encrypted.
    let name = format!("canary name {}", Uuid::new_v4());
    let topic = format!("canary topic {}", Uuid::new_v4());

    alice.rename(&group, &name, Some(&topic)).await?;
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
    for member in [&bob, &carol] {
        assert!(
            member.events().iter().any(|e| matches!(e,
                Event::GroupRenamed { name: n, topic: Some(t), .. } if n == &name && t == &topic)),
            "{} learnt the group's name and topic",
            member.id()
        );
    }

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
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("confide_rpc_requests_total"),
        "the DS exported metrics, so searching them means something"
    );
    let mut secrets: Vec<(String, Vec<u8>)> = canaries
        .iter()
        .chain([&name, &topic])
        .map(|c| (format!("canary {c:?}"), c.clone().into_bytes()))
        .collect();
    for member in [&alice, &bob, &carol] {
        let material = member.secret_material()?;
        // Its signature key, and a secret of the group if it is still in it.
        assert!(!material.is_empty());
        for (i, secret) in material.into_iter().enumerate() {
            assert!(secret.len() >= 32, "secret {i} of {} is real", member.id());
            secrets.push((format!("secret {i} of {}", member.id()), secret));
        }
    }
    for (what, secret) in &secrets {
        assert!(!holds(&dump, secret), "{what} is in the database");
        assert!(!holds(&logs, secret), "{what} is in the DS logs");
        assert!(
            !holds(metrics.as_bytes(), secret),
            "{what} is in the metrics"
        );
    }
    Ok(())
}
