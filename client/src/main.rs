//! `confide`: the chat CLI and the demo.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use confide_client::display::safe;
use confide_client::handoff::{self, Answer, HandoffError, Request, Server};
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
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Removes every device of the users from a group.
    Remove {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        group: String,
        #[arg(required = true)]
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

/// Opens the state file's client; a state file another process holds is
/// reported as such ([`ClientError::StateLocked`]), without context.
async fn open(conn: &Conn) -> anyhow::Result<Client> {
    if !conn.state.exists() {
        // Before connecting, so that a mistyped path is reported as such.
        return Err(ClientError::NoStateFile(conn.state.clone()).into());
    }
    let api = conn.api().await?;
    match Client::open(api, &StateLocation::File(conn.state.clone())).await {
        Err(locked @ ClientError::StateLocked { .. }) => Err(locked.into()),
        opened => opened.with_context(|| format!("opening {}", conn.state.display())),
    }
}

fn group_id(hex_id: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(hex_id).context("the group id is hex")
}

/// An event as the CLI prints it. Everything the CLI prints that came from
/// the network goes through here or through `Event`'s `Display`, which show
/// it with [`safe`]: a member's text cannot drive the terminal or pass for a
/// line of its own.
fn line(event: &Event) -> String {
    match event {
        Event::Message {
            group,
            sender,
            body,
            ..
        } => format!(
            "[{}] {}: {}",
            hex::encode(group),
            safe(&sender.to_string()),
            safe(&String::from_utf8_lossy(body))
        ),
        other => match other.group() {
            Some(group) => format!("[{}] {other}", hex::encode(group)),
            None => format!("{other}"),
        },
    }
}

/// Runs a one-shot command on the state file, or hands it to the process
/// holding the file (`confide listen`), and prints what it printed there.
async fn one_shot(conn: &Conn, request: Request) -> anyhow::Result<()> {
    // A listener holding the file takes the command over its socket, with
    // its own connection: this one's endpoint does not matter then.
    match handoff::hand_over(&conn.state, &request).await {
        Ok(answer) => return print_answer(answer),
        Err(HandoffError::NoHolder { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    let locked = match open(conn).await {
        Ok(mut client) => {
            let mut out = String::new();
            let result = execute(&mut client, &request, &mut out).await;
            print!("{out}");
            return result;
        }
        Err(error) => match error.downcast_ref::<ClientError>() {
            Some(ClientError::StateLocked { .. }) => error,
            _ => return Err(error),
        },
    };
    match handoff::hand_over(&conn.state, &request).await {
        Ok(answer) => print_answer(answer),
        Err(HandoffError::NoHolder { .. }) => {
            anyhow::bail!("{locked}; try again when it finishes")
        }
        Err(error) => Err(error.into()),
    }
}

/// Prints what the holder of the state file answered to a handed-over
/// command, as if this process had run it.
fn print_answer(answer: Answer) -> anyhow::Result<()> {
    print!("{}", answer.stdout);
    if let Some(error) = answer.error {
        // As `main` prints an error it returns.
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
    Ok(())
}

/// Runs a one-shot command on `client`, writing what it prints to `out`.
async fn execute(client: &mut Client, request: &Request, out: &mut String) -> anyhow::Result<()> {
    match request {
        Request::CreateGroup => {
            writeln!(out, "{}", hex::encode(client.create_group().await?))?;
        }
        Request::Add { group, users } => {
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let added = client.add_users(&group_id(group)?, &users).await?;
            for member in added.clients {
                writeln!(out, "added {}", safe(&member.to_string()))?;
            }
        }
        Request::Remove { group, users } => {
            let users: Vec<&str> = users.iter().map(String::as_str).collect();
            let summary = client.remove_users(&group_id(group)?, &users).await?;
            writeln!(out, "removed; group is at epoch {}", summary.epoch)?;
        }
        Request::Send { group, text } => {
            match client.send(&group_id(group)?, text.as_bytes()).await {
                Ok(seq) => writeln!(out, "sent as #{seq}")?,
                Err(error) if error.is_in_doubt() => anyhow::bail!(
                    "no answer from the delivery service ({error}); the message is saved in the \
                     state file and will be resent, once, by the next `confide send` (of the \
                     same text or another), `sync`, `members` or `listen`"
                ),
                Err(error) => return Err(error.into()),
            }
        }
        Request::Sync => {
            for event in client.sync().await? {
                writeln!(out, "{}", line(&event))?;
            }
        }
        Request::Members { group } => {
            let group = group_id(group)?;
            // Brings the roster up to date; the events stay for `sync`.
            client.catch_up().await?;
            writeln!(out, "epoch {}", client.epoch(&group)?)?;
            for member in client.roster(&group)? {
                let you = if &member.client == client.id() {
                    "  (this device)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{:<32} key {}{you}",
                    safe(&member.client.to_string()),
                    member.fingerprint
                )?;
            }
            writeln!(out, "safety code {}", client.safety_code(&group)?)?;
        }
    }
    Ok(())
}

/// Prints events as they arrive, and runs the commands other processes hand
/// over (`handoff`) between two entries, never inside one.
async fn listen(conn: &Conn) -> anyhow::Result<()> {
    let mut client = open(conn).await?;
    let server = match Server::bind(&conn.state) {
        Ok(server) => Some(server),
        Err(error) => {
            eprintln!(
                "warning: other commands on {} cannot be handed to this one: {error}",
                conn.state.display()
            );
            None
        }
    };
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        while let Some(event) = client.take_event()? {
            println!("{}", line(&event));
        }
        tokio::select! {
            incoming = client.receive() => client.process(incoming?).await?,
            connection = accept(server.as_ref()) => {
                let mut connection = match connection {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "accepting a handed-over command");
                        continue;
                    }
                };
                let answer = match connection.request().await {
                    Ok(Request::Sync) => Answer {
                        stdout: String::new(),
                        error: Some(format!(
                            "{} is held by process {} (confide listen), which prints its events as they arrive",
                            conn.state.display(),
                            std::process::id()
                        )),
                    },
                    Ok(request) => {
                        let mut stdout = String::new();
                        let result = execute(&mut client, &request, &mut stdout).await;
                        Answer { stdout, error: result.err().map(|e| format!("{e:?}")) }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reading a handed-over command");
                        continue;
                    }
                };
                if let Err(error) = connection.answer(&answer).await {
                    tracing::warn!(%error, "answering a handed-over command");
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    Ok(())
}

async fn accept(server: Option<&Server>) -> std::io::Result<handoff::Connection> {
    match server {
        Some(server) => server.accept().await,
        None => std::future::pending().await,
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
        Command::CreateGroup { conn } => one_shot(&conn, Request::CreateGroup).await?,
        Command::Add { conn, group, users } => {
            one_shot(&conn, Request::Add { group, users }).await?
        }
        Command::Remove { conn, group, users } => {
            one_shot(&conn, Request::Remove { group, users }).await?
        }
        Command::Send { conn, group, text } => {
            one_shot(&conn, Request::Send { group, text }).await?
        }
        Command::Sync { conn } => one_shot(&conn, Request::Sync).await?,
        Command::Members { conn, group } => one_shot(&conn, Request::Members { group }).await?,
        Command::Listen { conn } => listen(&conn).await?,
    }
    Ok(())
}
