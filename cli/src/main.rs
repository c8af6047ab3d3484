//! `confide`: the chat CLI and the demo.
//!
//! `args` is the command line; `commands` runs the one-shot commands (on
//! the state file, or handed to the `confide listen` that holds it, through
//! `handoff`); `link` links a new device (`confide link`, `confide
//! approve`) and lists and revokes devices; `listen` is the long-running listener and `chat` the
//! interactive chat, both kept connected by `connection` (pausing as `backoff` says); `demo`
//! plays a conversation on an in-process delivery service.

mod args;
mod backoff;
mod chat;
mod commands;
mod connection;
mod demo;
mod handoff;
mod json;
mod link;
mod listen;
mod output;
mod time;

use std::io::{IsTerminal, Read};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser};

use args::{Cli, Command, IdentityCommand};
use handoff::Request;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Cli { command, json } = Cli::parse();
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    match &command {
        // The chat's screen is the terminal: its logs go to a file beside
        // the state file, unless asked for on standard error.
        Command::Chat {
            conn,
            verbose: false,
        } if conn.state.is_file() => {
            let path = confide_client::lock::beside(&conn.state, "log");
            let mut options = std::fs::OpenOptions::new();
            options.create(true).append(true);
            // As private as the state file: it names groups and members.
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let file = options
                .open(&path)
                .with_context(|| format!("opening the log file {}", path.display()))?;
            tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .init();
        }
        _ => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    if json && !prints_json(&command) {
        bail!(
            "--json is not available for this command: it is interactive (chat, link, approve) or prints for a person or a shell (demo, identity export, completions)"
        );
    }
    match command {
        Command::Demo => demo::run(&mut std::io::stdout()).await?,
        Command::Register {
            conn,
            user,
            device,
            token,
            restore_identity: None,
        } => commands::register(&conn, user, device, &token, json).await?,
        Command::Register {
            conn,
            user,
            device,
            token,
            restore_identity: Some(identity),
        } => commands::restore(&conn, user, device, &token, &identity, json).await?,
        Command::Identity {
            command: IdentityCommand::Export { conn, out },
        } => commands::export_identity(&conn, out.as_deref()).await?,
        Command::Link {
            conn,
            user,
            device,
            token,
            timeout,
        } => link::link(&conn, user, device, &token, Duration::from_secs(timeout)).await?,
        Command::Approve { conn, code, sas } => link::approve(&conn, &code, sas).await?,
        Command::Devices { conn, user } => {
            commands::one_shot(&conn, Request::Devices { user }, json).await?
        }
        Command::RemoveDevice { conn, device } => {
            commands::one_shot(&conn, Request::RemoveDevice { device }, json).await?
        }
        Command::CreateGroup { conn, name, topic } => {
            commands::one_shot(&conn, Request::CreateGroup { name, topic }, json).await?
        }
        Command::Rename {
            conn,
            group,
            name,
            topic,
        } => {
            commands::one_shot(
                &conn,
                Request::Rename {
                    group: group.id,
                    name,
                    topic,
                },
                json,
            )
            .await?
        }
        Command::History { conn, group, limit } => {
            commands::one_shot(
                &conn,
                Request::History {
                    group: group.id,
                    limit,
                },
                json,
            )
            .await?
        }
        Command::Add { conn, group, users } => {
            commands::one_shot(
                &conn,
                Request::Add {
                    group: group.id,
                    users,
                },
                json,
            )
            .await?
        }
        Command::Remove { conn, group, users } => {
            commands::one_shot(
                &conn,
                Request::Remove {
                    group: group.id,
                    users,
                },
                json,
            )
            .await?
        }
        Command::Leave { conn, group } => {
            commands::one_shot(&conn, Request::Leave { group: group.id }, json).await?
        }
        Command::Send { conn, group, text } => {
            let text = if text == "-" { read_stdin()? } else { text };
            commands::one_shot(
                &conn,
                Request::Send {
                    group: group.id,
                    text,
                },
                json,
            )
            .await?
        }
        Command::Sync { conn } => commands::one_shot(&conn, Request::Sync, json).await?,
        Command::Members { conn, group } => {
            commands::one_shot(&conn, Request::Members { group: group.id }, json).await?
        }
        Command::Groups { conn } => commands::one_shot(&conn, Request::Groups, json).await?,
        Command::Contacts { conn } => commands::one_shot(&conn, Request::Contacts, json).await?,
        Command::Verify { conn, user, accept } => {
            commands::one_shot(&conn, Request::Verify { user, accept }, json).await?
        }
        Command::Listen { conn } => listen::listen(&conn, json).await?,
        Command::Chat { conn, .. } => chat::session::run(&conn).await?,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "confide", &mut script);
            output::print(String::from_utf8_lossy(&script));
        }
    }
    Ok(())
}

/// Whether the command has a `--json` form.
fn prints_json(command: &Command) -> bool {
    !matches!(
        command,
        Command::Demo
            | Command::Link { .. }
            | Command::Approve { .. }
            | Command::Identity { .. }
            | Command::Chat { .. }
            | Command::Completions { .. }
    )
}

/// The message `confide send --group G -` sends: standard input, without
/// the newline that ends its last line.
fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the message from standard input (it must be UTF-8)")?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        bail!("nothing to send: standard input was empty");
    }
    Ok(text.to_owned())
}
