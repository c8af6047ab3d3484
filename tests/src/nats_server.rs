//! [`PrivateNats`]: a `nats-server` of a test's own on a free loopback
//! port, which the test can kill and start again on the same port, so the
//! DS meets a NATS outage while the shared NATS keeps serving other tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::Instant;

use crate::WAIT;

/// Where Debian's package puts the server, often not on a user's PATH.
const PACKAGED: &str = "/usr/sbin/nats-server";

pub struct PrivateNats {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    /// Starts `nats-server` (found on PATH, else at `/usr/sbin`) on a free
    /// port and waits until it accepts clients.
    ///
    /// # Panics
    ///
    /// If there is no `nats-server`, or it does not start.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut nats = Self {
            binary: binary(),
            port,
            child: None,
        };
        nats.restart().await;
        nats
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (no lame-duck goodbye to its clients), as a
    /// crash or a lost machine would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on its port and waits until it accepts
    /// clients.
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            match async_nats::connect(self.url()).await {
                Ok(client) => return drop(client),
                Err(error) => assert!(
                    Instant::now() < deadline,
                    "{} on port {} did not accept clients within {WAIT:?}: {error}",
                    self.binary.display(),
                    self.port
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `nats-server` on PATH, else the packaged one.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path
        .or_else(|| Some(PathBuf::from(PACKAGED)).filter(|p| Path::new(p).is_file()))
        .unwrap_or_else(|| {
            panic!(
                "no nats-server on PATH or at {PACKAGED}: install it (apt-get install nats-server) \
                 to run the NATS outage tests"
            )
        })
}
