//! `confide demo`: an in-process delivery service on the in-memory store and
//! three clients playing a conversation. Beside what each member decrypts it
//! shows what the server stored: sizes and ciphertext, never plaintext.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use confide_ds::domain::EntryKind;
use confide_ds::store::Store;
use confide_ds::store::memory::MemoryStore;
use tokio_util::sync::CancellationToken;

use crate::{Api, Client, ClientId, Event, StateLocation};

async fn sync_all(out: &mut impl Write, clients: &mut [&mut Client]) -> anyhow::Result<()> {
    for client in clients.iter_mut() {
        let id = client.id().clone();
        for event in client.sync().await? {
            let verb = if matches!(event, Event::Message { .. }) {
                "decrypts "
            } else {
                ""
            };
            writeln!(out, "{id:>14}  {verb}{event}")?;
        }
    }
    Ok(())
}

/// Plays the demo conversation, writing the transcript to `out`.
pub async fn run(out: &mut impl Write) -> anyhow::Result<()> {
    let store = Arc::new(MemoryStore::new());
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let state = confide_ds::state(
        store.clone(),
        confide_ds::Settings::for_tests(),
        shutdown.clone(),
    )?;
    let server = tokio::spawn(confide_ds::run(listener, state, shutdown.clone()));
    writeln!(
        out,
        "== Confide demo: delivery service at {endpoint} (in-memory store)"
    )?;

    let api = Api::connect(&endpoint)
        .await
        .context("connecting to the demo DS")?;
    let register = async |user: &str, device: &str| {
        Client::register(
            api.clone(),
            ClientId::new(user, device)?,
            &StateLocation::Memory,
            "",
        )
        .await
        .with_context(|| format!("registering {user}"))
    };
    let mut alice = register("alice", "laptop").await?;
    let mut bob = register("bob", "phone").await?;
    let mut carol = register("carol", "tablet").await?;
    writeln!(
        out,
        "registered alice/laptop, bob/phone, carol/tablet; each uploaded key packages"
    )?;

    let group = alice.create_group().await?;
    writeln!(out, "\n-- alice creates a group and adds bob and carol")?;
    alice.add_users(&group, &["bob", "carol"]).await?;
    sync_all(out, &mut [&mut alice, &mut bob, &mut carol]).await?;

    writeln!(out, "\n-- everyone talks")?;
    alice
        .send(&group, b"Hi both! This group is end-to-end encrypted.")
        .await?;
    bob.send(&group, b"Hello alice, hello carol.").await?;
    carol
        .send(&group, b"Carol here. The server only sees ciphertext.")
        .await?;
    sync_all(out, &mut [&mut alice, &mut bob, &mut carol]).await?;

    writeln!(out, "\n-- alice removes carol; bob updates his keys")?;
    alice.remove_users(&group, &["carol"]).await?;
    sync_all(out, &mut [&mut alice, &mut bob, &mut carol]).await?;
    bob.self_update(&group).await?;
    sync_all(out, &mut [&mut alice, &mut bob, &mut carol]).await?;

    writeln!(out, "\n-- after the removal")?;
    alice.send(&group, b"Carol cannot read this one.").await?;
    sync_all(out, &mut [&mut alice, &mut bob, &mut carol]).await?;
    writeln!(
        out,
        "{:>14} is in {} group(s) now",
        carol.id(),
        carol.groups().len()
    )?;

    writeln!(
        out,
        "\n-- alice and bob compare the group's roster and safety code out of band (epoch {})",
        alice.epoch(&group)?
    )?;
    for member in alice.roster(&group)? {
        writeln!(out, "{:>14}  key {}", member.client, member.fingerprint)?;
    }
    let (a, b) = (alice.safety_code(&group)?, bob.safety_code(&group)?);
    writeln!(out, "{:>14}  safety code {a}", alice.id())?;
    writeln!(out, "{:>14}  safety code {b}", bob.id())?;
    writeln!(
        out,
        "{:>14}  {}",
        "",
        if a == b {
            "the codes match: both see the same group"
        } else {
            "MISMATCH: the server showed them different groups"
        }
    )?;

    writeln!(out, "\n== what the server stored for the group")?;
    writeln!(
        out,
        "{:>4} {:>12} {:>6} {:>7}  first bytes",
        "seq", "kind", "epoch", "bytes"
    )?;
    let group_id = confide_ds::domain::GroupId::new(group.clone())?;
    for entry in store.read_group(alice.id(), &group_id, 0, 1000).await? {
        let kind = match entry.kind {
            EntryKind::Commit => "commit",
            EntryKind::Proposal => "proposal",
            EntryKind::Application => "ciphertext",
        };
        writeln!(
            out,
            "{:>4} {:>12} {:>6} {:>7}  {}…",
            entry.seq,
            kind,
            entry.epoch,
            entry.message.len(),
            hex::encode(&entry.message[..entry.message.len().min(16)])
        )?;
    }
    writeln!(
        out,
        "(commits are signed PublicMessages the server validated; messages are PrivateMessages it cannot open)"
    )?;

    shutdown.cancel();
    server.await??;
    Ok(())
}
