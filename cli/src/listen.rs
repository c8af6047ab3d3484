//! `confide listen`: prints events as they arrive and runs the commands
//! other `confide` processes hand over (`handoff`) on the state file it
//! holds. It stays up through a lost connection or an expired session
//! (`connection`), telling so on standard error.

use confide_client::Client;

use crate::args::Conn;
use crate::commands::{execute, line, open_even_offline};
use crate::connection::{Connection, Status};
use crate::handoff::{self, Answer, Handed, Request, Server};
use crate::json::Printer;
use crate::json::event_json;
use crate::output;

/// Prints events as they arrive, and runs the commands other processes hand
/// over between two entries, never inside one. Ends at Ctrl-C, or at a
/// permanent error (see `connection`).
pub async fn listen(conn: &Conn, json: bool) -> anyhow::Result<()> {
    let (mut client, unreachable) = open_even_offline(conn).await?;
    if let Some(reason) = unreachable {
        // The connection signs in once it can, and prints what came meanwhile.
        eprintln!("the delivery service cannot be reached ({reason}); listening once it can");
    }
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
    let mut ds = Connection::new(conn);
    loop {
        while let Some(event) = client.take_event()? {
            match json {
                true => output::println(event_json(&event)),
                false => output::println(line(&event)),
            }
        }
        tokio::select! {
            wake = ds.wait(&mut client) => {
                if let Some(status) = ds.handle(&mut client, wake).await? {
                    eprintln!("{status}");
                }
            }
            connection = accept(server.as_ref()) => match connection {
                Ok(connection) => serve(conn, &mut client, ds.reconnecting(), connection).await,
                Err(error) => tracing::warn!(%error, "accepting a handed-over command"),
            },
            _ = &mut ctrl_c => break,
        }
    }
    Ok(())
}

/// Runs one handed-over command and answers with what it printed; while
/// the connection is lost (`reconnecting`), answers at once that it did not
/// run. `confide chat` serves its handed-over commands with it too.
pub(crate) async fn serve(
    conn: &Conn,
    client: &mut Client,
    reconnecting: Option<&Status>,
    mut connection: handoff::Connection,
) {
    let lost = match reconnecting {
        Some(Status::Reconnecting { reason, .. }) => Some(reason),
        _ => None,
    };
    let answer = match connection.request().await {
        Ok(Handed {
            request: Request::Sync,
            ..
        }) => Answer {
            stdout: String::new(),
            error: Some(format!(
                "{} is held by process {} (confide listen, or confide chat), which prints its events as they arrive",
                conn.state.display(),
                std::process::id()
            )),
        },
        Ok(handed) if lost.is_some() && !reads_the_device(&handed.request) => Answer {
            stdout: String::new(),
            error: Some(format!(
                "the command did not run: {} is held by process {} (confide listen or chat), which is reconnecting to the delivery service ({}); try again when it is back",
                conn.state.display(),
                std::process::id(),
                lost.map(String::as_str).unwrap_or_default()
            )),
        },
        Ok(Handed { request, json }) => {
            let mut stdout = Printer::new(json);
            let result = execute(client, &request, &mut stdout).await;
            Answer {
                stdout: stdout.into_string(),
                error: result.err().map(|e| crate::commands::describe(&e)),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "reading a handed-over command");
            return;
        }
    };
    if let Err(error) = connection.answer(&answer).await {
        tracing::warn!(%error, "answering a handed-over command");
    }
}

/// Commands that read what the device holds, and so run while the
/// connection is lost.
fn reads_the_device(request: &Request) -> bool {
    matches!(request, Request::History { .. } | Request::Groups)
}

pub(crate) async fn accept(server: Option<&Server>) -> std::io::Result<handoff::Connection> {
    match server {
        Some(server) => server.accept().await,
        None => std::future::pending().await,
    }
}
