//! Handing a command to the process that holds a state file.
//!
//! One process holds a state file at a time ([`confide_client::lock`]). `confide
//! listen` holds it as long as it runs, and serves a Unix socket beside it
//! (`<state>.sock`, mode 0600; a connection from another user is dropped).
//! A one-shot command (`send`, `add`, `members`, …) that finds the file
//! locked sends itself there instead of running: the listener runs it
//! between two entries of its stream, on its own current MLS state, and
//! answers with what the command would have printed.
//!
//! Wire format: one JSON line each way. The request is a [`Request`], e.g.
//! `{"command":"send","group":"ab12…","text":"hi","json":false}` (a
//! [`Handed`]); the answer an
//! [`Answer`], `{"stdout":"sent as #7\n","error":null}`, where `error` is
//! what the command would have printed after `Error: ` (it then exits 1).

use std::fs::Permissions;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use confide_client::lock::beside;

/// How long the holder waits for a connected process to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line the holder reads.
const MAX_REQUEST_BYTES: u64 = 4 << 20;

/// A one-shot command, as the CLI takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    CreateGroup {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        topic: Option<String>,
    },
    Rename {
        group: String,
        name: String,
        topic: Option<String>,
    },
    History {
        group: String,
        limit: usize,
    },
    Add {
        group: String,
        users: Vec<String>,
    },
    Remove {
        group: String,
        users: Vec<String>,
    },
    Send {
        group: String,
        text: String,
    },
    Members {
        group: String,
    },
    Groups,
    Contacts,
    Verify {
        user: String,
        accept: bool,
    },
    Sync,
    Devices {
        user: Option<String>,
    },
    RemoveDevice {
        device: String,
    },
}

/// A request as it goes over the socket: the command, and whether its
/// output is `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handed {
    #[serde(flatten)]
    pub request: Request,
    #[serde(default)]
    pub json: bool,
}

/// What a command printed, and its error if it failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub stdout: String,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// Nobody serves the socket: the holder takes no commands (another
    /// one-shot command), or it is gone.
    #[error("nobody answers at {}: {source}", path.display())]
    NoHolder { path: PathBuf, source: io::Error },
    #[error(
        "the process holding the state file did not answer ({0}); the command may or may not have run"
    )]
    NoAnswer(String),
}

/// The holder's end: the socket beside its state file.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// This process's user (the socket file's owner); only its processes
    /// are answered.
    uid: u32,
}

impl Server {
    /// Serves `<state>.sock`. Only the holder of the state's lock may call
    /// it: a socket file left by a holder that died is replaced.
    pub fn bind(state: &Path) -> io::Result<Self> {
        let path = beside(state, "sock");
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, Permissions::from_mode(0o600))?;
        let uid = std::fs::metadata(&path)?.uid();
        Ok(Self {
            listener,
            path,
            uid,
        })
    }

    /// The next connection from a process of this user. Cancel-safe: it
    /// only waits for a connection, so it can race the event stream.
    pub async fn accept(&self) -> io::Result<Connection> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            match stream.peer_cred() {
                Ok(peer) if peer.uid() == self.uid => {
                    return Ok(Connection {
                        stream: BufReader::new(stream),
                    });
                }
                Ok(peer) => {
                    tracing::warn!(uid = peer.uid(), "refused a command from another user");
                }
                Err(error) => tracing::warn!(%error, "refused a command from an unknown peer"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One process that handed over a command.
pub struct Connection {
    stream: BufReader<UnixStream>,
}

impl Connection {
    /// Reads its request (it writes it as soon as it connects).
    pub async fn request(&mut self) -> io::Result<Handed> {
        let mut line = String::new();
        let mut limited = (&mut self.stream).take(MAX_REQUEST_BYTES);
        tokio::time::timeout(REQUEST_TIMEOUT, limited.read_line(&mut line))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
        Ok(serde_json::from_str(&line)?)
    }

    pub async fn answer(mut self, answer: &Answer) -> io::Result<()> {
        let mut line = serde_json::to_vec(answer)?;
        line.push(b'\n');
        self.stream.get_mut().write_all(&line).await?;
        self.stream.get_mut().shutdown().await
    }
}

/// Hands `request` to the process holding `state` and waits for its answer.
pub async fn hand_over(
    state: &Path,
    request: &Request,
    json: bool,
) -> Result<Answer, HandoffError> {
    let path = beside(state, "sock");
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| HandoffError::NoHolder { path, source })?;
    let no_answer = |e: io::Error| HandoffError::NoAnswer(e.to_string());
    let mut stream = BufReader::new(stream);
    let handed = Handed {
        request: request.clone(),
        json,
    };
    let mut line = serde_json::to_vec(&handed).map_err(|e| no_answer(e.into()))?;
    line.push(b'\n');
    stream.get_mut().write_all(&line).await.map_err(no_answer)?;
    let mut answer = String::new();
    if stream.read_line(&mut answer).await.map_err(no_answer)? == 0 {
        return Err(HandoffError::NoAnswer("it closed the connection".into()));
    }
    serde_json::from_str(&answer).map_err(|e| no_answer(e.into()))
}
