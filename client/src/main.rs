//! `confide`: the chat CLI and the demo.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use confide_client::display::safe;
use confide_client::{Api, Client, ClientError, ClientId, Event, StateLocation, TlsOptions};

#[derive(Parser)]
#[command(version, about = "Confide: end-to-end encrypted group chat on MLS")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Conn {
    /// Delivery service address.
    #[arg(
        long,
        env = "CONFIDE_ENDPOINT",
        default_value = "http://127.0.0.1:7420"
    )]
    endpoint: String,
    /// This device's state file (keys and groups; keep it private).
    #[arg(long, env = "CONFIDE_STATE")]
    state: PathBuf,
    /// A CA certificate (PEM) to trust for an `https://` endpoint, besides
    /// the web PKI roots.
    #[arg(long, env = "CONFIDE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A client certificate and key (PEM), for a DS that requires them.
    #[arg(long, env = "CONFIDE_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    #[arg(long, env = "CONFIDE_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Allow `http://` to a host that is not loopback (unencrypted transport).
    #[arg(long)]
    allow_plaintext: bool,
}

impl Conn {
    async fn api(&self) -> anyhow::Result<Api> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let tls = TlsOptions {
            ca_certificate: self.ca_cert.as_ref().map(read).transpose()?,
            client_identity: match (&self.client_cert, &self.client_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
            allow_plaintext: self.allow_plaintext,
        };
        Api::connect_with(&self.endpoint, &tls)
            .await
            .with_context(|| format!("connecting to {}", self.endpoint))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Plays a conversation between alice, bob and carol on an in-process DS.
    Demo,
    /// Creates a device identity in the state file and registers it.
    Register {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        user: String,
        #[arg(long)]
        device: String,
        /// Registration token, if the DS requires one.
        #[arg(long, env = "CONFIDE_REGISTRATION_TOKEN", default_value = "")]
        token: String,
    },
    /// Creates a group and prints its id.
    CreateGroup {
        #[command(flatten)]
        conn: Conn,
    },
    /// Adds every device of the users to a group.
    Add {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        users: Vec<String>,
    },
    /// Removes every device of the users from a group.
    Remove {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        users: Vec<String>,
    },
    /// Sends a message.
    Send {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        text: String,
    },
    /// Processes everything pending and prints it.
    Sync {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints events as they arrive until interrupted.
    Listen {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints a group's members with their key fingerprints and its safety
    /// code, to compare with the other members out of band.
    Members {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
    },
}

async fn open(conn: &Conn) -> anyhow::Result<Client> {
    if !conn.state.exists() {
        // Before connecting, so that a mistyped path is reported as such.
        return Err(ClientError::NoStateFile(conn.state.clone()).into());
    }
    let api = conn.api().await?;
    Client::open(api, &StateLocation::File(conn.state.clone()))
        .await
        .with_context(|| format!("opening {}", conn.state.display()))
}

fn group_id(hex_id: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(hex_id).context("the group id is hex")
}

/// Everything the CLI prints that came from the network goes through here or
/// through `Event`'s `Display`, which show it with [`safe`]: a member's text
/// cannot drive the terminal or pass for a line of its own.
fn print(event: &Event) {
    match event {
        Event::Message {
            group,
            sender,
            body,
            ..
        } => println!(
            "[{}] {}: {}",
            hex::encode(group),
            safe(&sender.to_string()),
            safe(&String::from_utf8_lossy(body))
        ),
        other => match other.group() {
            Some(group) => println!("[{}] {other}", hex::encode(group)),
            None => println!("{other}"),
        },
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Demo => confide_client::demo::run(&mut std::io::stdout()).await?,
        Command::Register {
            conn,
            user,
            device,
            token,
        } => {
            let api = conn.api().await?;
            let client = Client::register(
                api,
                ClientId::new(user, device)?,
                &StateLocation::File(conn.state),
                &token,
            )
            .await?;
            println!("registered {}", client.id());
        }
        Command::CreateGroup { conn } => {
            let mut client = open(&conn).await?;
            println!("{}", hex::encode(client.create_group().await?));
        }
        Command::Add { conn, group, users } => {
            let mut client = open(&conn).await?;
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let added = client.add_users(&group_id(&group)?, &users).await?;
            for member in added.clients {
                println!("added {}", safe(&member.to_string()));
            }
        }
        Command::Remove { conn, group, users } => {
            let mut client = open(&conn).await?;
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let summary = client.remove_users(&group_id(&group)?, &users).await?;
            println!("removed; group is at epoch {}", summary.epoch);
        }
        Command::Send { conn, group, text } => {
            let mut client = open(&conn).await?;
            match client.send(&group_id(&group)?, text.as_bytes()).await {
                Ok(seq) => println!("sent as #{seq}"),
                Err(error) if error.is_in_doubt() => anyhow::bail!(
                    "no answer from the delivery service ({error}); the message is saved in {} \
                     and will be resent, once, by the next `confide send` (of the same text \
                     or another), `sync`, `members` or `listen`",
                    conn.state.display()
                ),
                Err(error) => return Err(error.into()),
            }
        }
        Command::Sync { conn } => {
            let mut client = open(&conn).await?;
            for event in client.sync().await? {
                print(&event);
            }
        }
        Command::Members { conn, group } => {
            let mut client = open(&conn).await?;
            let group = group_id(&group)?;
            client.sync().await?;
            println!("epoch {}", client.epoch(&group)?);
            for member in client.roster(&group)? {
                let you = if &member.client == client.id() {
                    "  (this device)"
                } else {
                    ""
                };
                println!(
                    "{:<32} key {}{you}",
                    safe(&member.client.to_string()),
                    member.fingerprint
                );
            }
            println!("safety code {}", client.safety_code(&group)?);
        }
        Command::Listen { conn } => {
            let mut client = open(&conn).await?;
            loop {
                tokio::select! {
                    event = client.next_event() => print(&event?),
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
    }
    Ok(())
}
