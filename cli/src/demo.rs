//! `confide demo`: an in-process delivery service on the in-memory store and
//! three clients playing a conversation. Beside what each member decrypts it
//! shows what the server stored: sizes and ciphertext, never plaintext.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use confide_client::{Api, Client, ClientId, Event, GroupId, StateLocation};
use confide_ds::domain::EntryKind;
use confide_ds::store::Store;
use confide_ds::store::memory::MemoryStore;
use confide_ds::{App, RunningApp, Settings};

/// Plays the demo conversation, writing the transcript to `out`.
pub async fn run(out: &mut impl Write) -> anyhow::Result<()> {
    let ds = DemoDs::start().await?;
    writeln!(
        out,
        "== Confide demo: delivery service at {} (in-memory store)",
        ds.endpoint
    )?;
    let mut members = Members::register(&ds.endpoint).await?;
    writeln!(
        out,
        "registered alice/laptop, bob/phone, carol/tablet; each uploaded key packages"
    )?;
    let group = members.form_group(out).await?;
    members.talk(out, &group).await?;
    members.remove_carol_and_update_bob(out, &group).await?;
    members.after_the_removal(out, &group).await?;
    members.compare_out_of_band(out, &group)?;
    ds.show_stored(out, members.alice.id(), &group).await?;
    ds.stop().await
}

/// The demo's delivery service: in this process, on the in-memory store,
/// which the demo reads at the end to show what the server kept.
struct DemoDs {
    store: Arc<MemoryStore>,
    endpoint: String,
    server: RunningApp,
}

impl DemoDs {
    async fn start() -> anyhow::Result<Self> {
        let store = Arc::new(MemoryStore::new());
        let app = App::with_storage(Settings::for_tests(), store.clone()).await?;
        let endpoint = format!("http://{}", app.addr());
        Ok(Self {
            store,
            endpoint,
            server: app.spawn(),
        })
    }

    /// Prints the group's log as the server stored it.
    async fn show_stored(
        &self,
        out: &mut impl Write,
        reader: &ClientId,
        group: &[u8],
    ) -> anyhow::Result<()> {
        writeln!(out, "\n== what the server stored for the group")?;
        writeln!(
            out,
            "{:>4} {:>12} {:>6} {:>7}  first bytes",
            "seq", "kind", "epoch", "bytes"
        )?;
        let group_id = confide_core::GroupId::new(group.to_vec())?;
        for entry in self.store.read_group(reader, &group_id, 0, 1000).await? {
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
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.server.stop().await?;
        Ok(())
    }
}

/// The three members of the demo's group, each on its own in-memory state.
struct Members {
    alice: Client,
    bob: Client,
    carol: Client,
}

impl Members {
    async fn register(endpoint: &str) -> anyhow::Result<Self> {
        let api = Api::connect(endpoint)
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
        Ok(Self {
            alice: register("alice", "laptop").await?,
            bob: register("bob", "phone").await?,
            carol: register("carol", "tablet").await?,
        })
    }

    /// Every member processes what arrived; prints what each observes.
    async fn sync_all(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        for client in [&mut self.alice, &mut self.bob, &mut self.carol] {
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

    async fn form_group(&mut self, out: &mut impl Write) -> anyhow::Result<GroupId> {
        let group = self.alice.create_group().await?;
        writeln!(out, "\n-- alice creates a group and adds bob and carol")?;
        self.alice.add_users(&group, &["bob", "carol"]).await?;
        self.sync_all(out).await?;
        Ok(group)
    }

    async fn talk(&mut self, out: &mut impl Write, group: &[u8]) -> anyhow::Result<()> {
        writeln!(out, "\n-- everyone talks")?;
        self.alice
            .send(group, b"Hi both! This group is end-to-end encrypted.")
            .await?;
        self.bob.send(group, b"Hello alice, hello carol.").await?;
        self.carol
            .send(group, b"Carol here. The server only sees ciphertext.")
            .await?;
        self.sync_all(out).await
    }

    async fn remove_carol_and_update_bob(
        &mut self,
        out: &mut impl Write,
        group: &[u8],
    ) -> anyhow::Result<()> {
        writeln!(out, "\n-- alice removes carol; bob updates his keys")?;
        self.alice.remove_users(group, &["carol"]).await?;
        self.sync_all(out).await?;
        self.bob.self_update(group).await?;
        self.sync_all(out).await
    }

    async fn after_the_removal(
        &mut self,
        out: &mut impl Write,
        group: &[u8],
    ) -> anyhow::Result<()> {
        writeln!(out, "\n-- after the removal")?;
        self.alice
            .send(group, b"Carol cannot read this one.")
            .await?;
        self.sync_all(out).await?;
        writeln!(
            out,
            "{:>14} is in {} group(s) now",
            self.carol.id(),
            self.carol.groups().len()
        )?;
        Ok(())
    }

    /// Alice and bob compare the roster and the safety code, as two people
    /// would out of band.
    fn compare_out_of_band(&self, out: &mut impl Write, group: &[u8]) -> anyhow::Result<()> {
        writeln!(
            out,
            "\n-- alice and bob compare the group's roster and safety code out of band (epoch {})",
            self.alice.epoch(group)?
        )?;
        for member in self.alice.roster(group)? {
            writeln!(out, "{:>14}  key {}", member.client, member.fingerprint)?;
        }
        let (a, b) = (self.alice.safety_code(group)?, self.bob.safety_code(group)?);
        writeln!(out, "{:>14}  safety code {a}", self.alice.id())?;
        writeln!(out, "{:>14}  safety code {b}", self.bob.id())?;
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
        Ok(())
    }
}
