//! The DS under measurement, as its own OS process (the `confide-ds`
//! binary), so its memory can be read from `/proc/<pid>/status` apart from
//! the clients'.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Probe;

/// What `/proc/<pid>/status` says about a process's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// The largest resident set size so far (`VmHWM`).
    pub peak_bytes: u64,
}

impl Memory {
    /// Reads `VmRSS` and `VmHWM` (in kB) from a `/proc/<pid>/status` text.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        };
        Some(Self {
            rss_bytes: field("VmRSS:")?,
            peak_bytes: field("VmHWM:")?,
        })
    }
}

/// How the DS is started.
#[derive(Clone, Debug)]
pub struct DsCommand {
    /// The `confide-ds` binary.
    pub binary: PathBuf,
    /// `memory` or `postgres` (then `CONFIDE__DATABASE__URL` from the
    /// environment, or the DS's default).
    pub store: String,
    /// Connections the clients will open; the DS's connection limit is
    /// raised to fit if needed.
    pub connections: usize,
    /// Streams per connection the clients will open; the DS's per-connection
    /// limit is raised to fit if needed.
    pub streams_per_connection: usize,
    /// Where the DS's logs go (warnings and errors only).
    pub log: Option<PathBuf>,
}

impl DsCommand {
    /// The configuration the DS gets besides its defaults: plaintext on
    /// loopback, and the limits that would refuse this many clients from one
    /// address lifted. Everything else (stream buffers, queue depths,
    /// keepalive) stays at the DS's defaults.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CONFIDE__PLAINTEXT".to_string(), "true".to_string()),
            // Registration and sign-in are limited per peer address, and
            // every client here comes from 127.0.0.1 (3 calls each).
            (
                "CONFIDE__LIMITS__UNAUTHENTICATED_PER_MINUTE".to_string(),
                "1000000000".to_string(),
            ),
            ("RUST_LOG".to_string(), "warn".to_string()),
        ];
        if self.connections > 10_000 {
            env.push((
                "CONFIDE__TRANSPORT__MAX_CONNECTIONS".to_string(),
                (self.connections + 16).to_string(),
            ));
        }
        if self.streams_per_connection > 256 {
            env.push((
                "CONFIDE__TRANSPORT__MAX_CONCURRENT_STREAMS".to_string(),
                (self.streams_per_connection + 8).to_string(),
            ));
        }
        env
    }
}

/// A running `confide-ds`, killed when dropped.
pub struct DsProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl DsProcess {
    /// Starts the DS on a free loopback port and waits until it accepts
    /// connections (at most `ready_within`).
    pub fn spawn(command: &DsCommand, ready_within: Duration) -> io::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log = match &command.log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::null(),
        };
        let child = Command::new(&command.binary)
            .args([
                "--store",
                command.store.as_str(),
                "--listen",
                listen.as_str(),
            ])
            .env_remove("CONFIDE_CONFIG")
            .envs(command.environment())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("starting {}: {e}", command.binary.display()),
                )
            })?;
        let mut ds = Self {
            child,
            endpoint: format!("http://{listen}"),
        };
        let deadline = Instant::now() + ready_within;
        loop {
            if let Some(status) = ds.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "the DS exited at start-up ({status}); see its log"
                )));
            }
            if std::net::TcpStream::connect(&listen).is_ok() {
                return Ok(ds);
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the DS did not listen on {listen} within {ready_within:?}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Ok(None)` while it runs, its exit status once it stopped.
    pub fn exited(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }
}

impl Probe for DsProcess {
    fn memory(&self) -> Option<Memory> {
        read_memory(
            &Path::new("/proc")
                .join(self.pid().to_string())
                .join("status"),
        )
    }
}

fn read_memory(path: &Path) -> Option<Memory> {
    Memory::parse(&std::fs::read_to_string(path).ok()?)
}

impl Drop for DsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::Memory;

    #[test]
    fn reads_rss_and_peak_from_proc_status() {
        let status = "Name:\tconfide-ds\nVmPeak:\t  900000 kB\nVmHWM:\t    2048 kB\n\
                      VmRSS:\t    1024 kB\nThreads:\t3\n";
        assert_eq!(
            Memory::parse(status),
            Some(Memory {
                rss_bytes: 1024 * 1024,
                peak_bytes: 2048 * 1024,
            })
        );
        assert_eq!(Memory::parse("Name:\tkthreadd\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let memory =
            super::read_memory(std::path::Path::new("/proc/self/status")).expect("a Linux /proc");
        assert!(memory.rss_bytes > 0 && memory.peak_bytes >= memory.rss_bytes);
    }
}
