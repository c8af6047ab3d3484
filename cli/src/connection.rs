//! Staying connected to the delivery service, for the commands that run
//! until interrupted (`confide listen`, and an interactive chat): a
//! restarted DS, a dropped network or an expired session pauses them, it
//! never ends them, and no entry is lost or processed twice on the way
//! (the stream is opened again from the acknowledged cursors, and entries
//! already processed are skipped by their sequence numbers).
//!
//! [`Connection`] drives the client's live stream in two steps, so that
//! the command can race it against its own input: [`Connection::wait`]
//! (cancel-safe: put it in a `select!`) says what is due, an entry, the
//! session's renewal or the next attempt to reconnect, and
//! [`Connection::handle`] does it (run it to completion, in the `select!`
//! arm's body), returning a [`Status`] to show when the connection went
//! down or came back.
//!
//! What ends the command is a permanent error only: the DS refusing to
//! sign this device in ([`ClientError::SignInRefused`]: it was removed or
//! registered again with another key), the DS refusing a call outright
//! (PERMISSION_DENIED, INVALID_ARGUMENT, …: trying again cannot help), or
//! this device's own state failing (storage, MLS).

use std::fmt;
use std::time::Duration;

use confide_client::{Client, ClientError, Incoming};
use tokio::time::Instant;

use crate::args::Conn;
use crate::backoff::Backoff;

/// Longest that connecting and signing in may take before the attempt
/// counts as failed (a DS host that drops packets never refuses).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection as the user is told about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Back after being lost; what arrived meanwhile has been processed.
    Connected,
    /// Lost: attempt number `attempt` (1 for the first) is made in `next_in`.
    Reconnecting {
        attempt: u32,
        next_in: Duration,
        reason: String,
    },
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Connected => write!(f, "reconnected"),
            Status::Reconnecting {
                attempt: 1,
                next_in,
                reason,
            } => write!(
                f,
                "connection to the delivery service lost ({reason}); reconnecting in {}",
                seconds(*next_in)
            ),
            Status::Reconnecting {
                attempt,
                next_in,
                reason,
            } => write!(
                f,
                "still no connection to the delivery service ({reason}); attempt {attempt} in {}",
                seconds(*next_in)
            ),
        }
    }
}

/// `0.4s`, `2.0s`, `27s`.
fn seconds(duration: Duration) -> String {
    match duration < Duration::from_secs(10) {
        true => format!("{:.1}s", duration.as_secs_f64()),
        false => format!("{}s", duration.as_secs_f64().round()),
    }
}

/// What [`Connection::wait`] found due; [`Connection::handle`] does it.
pub enum Wake {
    /// The live stream's next entry, or why there is none.
    Received(Result<Incoming, ClientError>),
    /// The session is about to expire.
    Renew,
    /// The pause after a lost connection is over.
    Reconnect,
}

/// The connection of one client, with the pause before reconnecting.
pub struct Connection<'a> {
    conn: &'a Conn,
    backoff: Backoff,
    /// While the connection is lost: when to try again, and what the user
    /// was told.
    lost: Option<(Instant, Status)>,
}

/// An attempt that took longer than [`ATTEMPT_TIMEOUT`].
#[derive(Debug, thiserror::Error)]
#[error("no answer within {}", seconds(ATTEMPT_TIMEOUT))]
struct NoAnswer;

/// What a failure means for the connection.
enum Failure {
    /// Gone, or no verdict: pause and reconnect.
    Lost,
    /// The session ended early: sign in again.
    NewSession,
    /// Trying again cannot help.
    Permanent,
}

impl Failure {
    fn of(error: &anyhow::Error) -> Self {
        if error.is::<NoAnswer>() {
            return Failure::Lost;
        }
        match error.downcast_ref::<ClientError>() {
            Some(error) if error.is_connection_lost() => Failure::Lost,
            Some(error) if error.needs_new_session() => Failure::NewSession,
            _ => Failure::Permanent,
        }
    }
}

impl<'a> Connection<'a> {
    /// The connection of a client just opened on `conn` (so connected).
    pub fn new(conn: &'a Conn) -> Self {
        Self {
            conn,
            backoff: Backoff::default(),
            lost: None,
        }
    }

    /// What the user was told, while the connection is lost.
    pub fn reconnecting(&self) -> Option<&Status> {
        self.lost.as_ref().map(|(_, status)| status)
    }

    /// Waits until something is due. Cancel-safe: dropped, it has changed
    /// nothing, and an entry it was waiting for comes with the next call.
    pub async fn wait(&mut self, client: &mut Client) -> Wake {
        if let Some((at, _)) = &self.lost {
            tokio::time::sleep_until(*at).await;
            return Wake::Reconnect;
        }
        let renew_at = client.session_renew_at();
        tokio::select! {
            incoming = client.receive() => Wake::Received(incoming),
            () = until(renew_at) => Wake::Renew,
        }
    }

    /// Does what [`Connection::wait`] found due: processes the entry (its
    /// events are then the client's to take), renews the session, or
    /// reconnects and catches up. Not cancel-safe: run it to completion.
    /// Returns the status to show if the connection went down or came
    /// back; fails only for a permanent error.
    pub async fn handle(
        &mut self,
        client: &mut Client,
        wake: Wake,
    ) -> anyhow::Result<Option<Status>> {
        let mut done = match wake {
            Wake::Received(Ok(incoming)) => client.process(incoming).await.map_err(Into::into),
            Wake::Received(Err(error)) => Err(error.into()),
            Wake::Renew => client.authenticate().await.map_err(Into::into),
            Wake::Reconnect => self.reconnect(client).await,
        };
        if let Err(error) = &done
            && matches!(Failure::of(error), Failure::NewSession)
        {
            // The session ended before its renewal (the computer slept
            // through it, or it was revoked): a new one at once, and if
            // that fails too, the pause as for a lost connection.
            tracing::info!(%error, "signing in again");
            done = self.reconnect(client).await;
        }
        match done {
            Ok(()) => Ok(self.connected()),
            Err(error) => self.failed(error).map(Some),
        }
    }

    /// A new connection, a new session on it, and whatever arrived
    /// meanwhile processed.
    async fn reconnect(&mut self, client: &mut Client) -> anyhow::Result<()> {
        let conn = self.conn;
        let signed_in = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
            let api = conn.api().await?;
            client.reconnect(api).await?;
            anyhow::Ok(())
        });
        signed_in.await.map_err(|_| NoAnswer)??;
        client.catch_up().await?;
        Ok(())
    }

    fn connected(&mut self) -> Option<Status> {
        self.backoff.reset();
        self.lost.take().map(|_| Status::Connected)
    }

    /// The status to show for a failure that leaves the connection lost,
    /// or the failure itself if it is permanent.
    fn failed(&mut self, error: anyhow::Error) -> anyhow::Result<Status> {
        if let Failure::Permanent = Failure::of(&error) {
            return Err(error);
        }
        let next_in = self.backoff.next_pause();
        let status = Status::Reconnecting {
            attempt: self.backoff.attempt(),
            next_in,
            reason: reason(&error),
        };
        self.lost = Some((Instant::now() + next_in, status.clone()));
        Ok(status)
    }
}

/// Why the connection is lost, in a few words: a status the DS (or tonic,
/// for a connection that failed) gave is its message, not a refusal.
fn reason(error: &anyhow::Error) -> String {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Rpc(status)) if !status.message().is_empty() => {
            status.message().to_owned()
        }
        _ => format!("{error:#}"),
    }
}

/// Waits until `at`, or forever.
async fn until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_what_was_lost_why_and_when_the_next_attempt_is() {
        let lost = Status::Reconnecting {
            attempt: 1,
            next_in: Duration::from_millis(2000),
            reason: "the event stream ended".into(),
        };
        assert_eq!(
            lost.to_string(),
            "connection to the delivery service lost (the event stream ended); reconnecting in 2.0s"
        );
        let still = Status::Reconnecting {
            attempt: 4,
            next_in: Duration::from_millis(27_400),
            reason: "connection refused".into(),
        };
        assert_eq!(
            still.to_string(),
            "still no connection to the delivery service (connection refused); attempt 4 in 27s"
        );
        assert_eq!(Status::Connected.to_string(), "reconnected");
    }
}
