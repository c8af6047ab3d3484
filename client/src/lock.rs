//! One process holds a state file at a time. A [`Client`](crate::Client) on a
//! state file takes an exclusive advisory lock (`flock`) on `<state>.lock`
//! and keeps it as long as it lives. Two clients on one file would each keep
//! their MLS groups in memory and write them back over the other's: the
//! next message would reuse a key generation the others already consumed,
//! and be lost for good. The holder writes its PID and command line into the
//! lock file, so whoever is refused can say who has the file.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{ClientError, ClientResult};

/// `<state>.<extension>`, beside the state file: `bob.db.lock`, `bob.db.sock`.
pub fn beside(state: &Path, extension: &str) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// "process 1234 (confide send)", as far as the lock file says.
pub fn describe(pid: Option<u32>, holder: Option<&str>) -> String {
    match (pid, holder) {
        (Some(pid), Some(holder)) => format!("process {pid} ({holder})"),
        (Some(pid), None) => format!("process {pid}"),
        (None, _) => "another process".into(),
    }
}

/// The exclusive lock on a state file; released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
    /// This lock made the lock file (nothing had held the state before).
    made: bool,
}

impl StateLock {
    /// Takes the lock on `state` at once, or fails with
    /// [`ClientError::StateLocked`] naming the holder. Never waits.
    pub fn acquire(state: &Path) -> ClientResult<Self> {
        let path = beside(state, "lock");
        let io = |e: std::io::Error| ClientError::Invalid(format!("{}: {e}", path.display()));
        // Registering may name a directory that does not exist yet.
        crate::store::create_private_parent(&path).map_err(io)?;
        let made = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Empty if the holder has not written it yet.
                let _ = file.read_to_string(&mut holder);
                let mut lines = holder.lines();
                return Err(ClientError::StateLocked {
                    path: state.to_path_buf(),
                    pid: lines.next().and_then(|pid| pid.trim().parse().ok()),
                    holder: lines.next().map(str::to_string).filter(|h| !h.is_empty()),
                });
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let holder = format!("{}\n{}\n", std::process::id(), command_line());
        file.set_len(0).map_err(io)?;
        file.write_all_at(holder.as_bytes(), 0).map_err(io)?;
        Ok(Self {
            _file: file,
            path,
            made,
        })
    }

    /// Deletes the lock file if this lock made it: the path turned out not to
    /// hold a state file.
    pub fn remove_if_made(&self) {
        if self.made {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// This process's program name and subcommand: "confide send".
fn command_line() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|program| {
            Path::new(&program)
                .file_name()
                .map_or(program.clone(), |name| name.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    match args.next().filter(|arg| !arg.starts_with('-')) {
        Some(subcommand) => format!("{program} {subcommand}"),
        None => program,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_state_file_names_the_holder_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("confide-lock-{}", uuid::Uuid::new_v4()));
        let state = dir.join("bob.db");
        let first = StateLock::acquire(&state).expect("the first lock");
        match StateLock::acquire(&state) {
            Err(ClientError::StateLocked { pid, holder, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert!(holder.is_some(), "the holder's command line is named");
            }
            other => panic!("a second lock was not refused: {other:?}"),
        }
        drop(first);
        StateLock::acquire(&state).expect("the lock once released");
        std::fs::remove_dir_all(dir).expect("removing the test directory");
    }
}
