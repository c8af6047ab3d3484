//! Running the `confide` binary as a user runs it: one device's state file
//! and the endpoint of a delivery service, either an in-process DS on the
//! in-memory store ([`spawn_ds`]) or a real one on PostgreSQL
//! (`confide_tests::spawn_app`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use confide_ds::{App, Settings};
use confide_tests::{TestApp, WAIT};
use tokio::sync::mpsc;
use tokio_util::sync::DropGuard;

/// The `confide` binary, built once by cargo for this crate's tests.
pub const CONFIDE: &str = env!("CARGO_BIN_EXE_confide");

/// What the CLI reads from the environment: removed, so that a developer's
/// settings (or log filter) never reach a test's commands.
const ENVIRONMENT: [&str; 7] = [
    "CONFIDE_ENDPOINT",
    "CONFIDE_STATE",
    "CONFIDE_CA_CERT",
    "CONFIDE_CLIENT_CERT",
    "CONFIDE_CLIENT_KEY",
    "CONFIDE_REGISTRATION_TOKEN",
    "RUST_LOG",
];

/// A DS on port 0, in this process on the in-memory store, that stops when
/// dropped.
pub struct Ds {
    pub endpoint: String,
    _stop: DropGuard,
}

pub async fn spawn_ds() -> Ds {
    let app = App::build(Settings::for_tests())
        .await
        .expect("building the DS");
    let endpoint = format!("http://{}", app.addr());
    Ds {
        endpoint,
        _stop: app.spawn().stop_token().drop_guard(),
    }
}

/// Runs `confide ARGS --endpoint ENDPOINT --state STATE` to completion.
pub async fn confide(endpoint: &str, state: &Path, args: &[&str]) -> Output {
    Device {
        endpoint: endpoint.into(),
        state: state.into(),
    }
    .run(args)
    .await
}

/// Like [`confide`], for a command that must succeed; returns its stdout.
pub async fn confide_ok(endpoint: &str, state: &Path, args: &[&str]) -> String {
    Device {
        endpoint: endpoint.into(),
        state: state.into(),
    }
    .ok(args)
    .await
}

/// `confide register` of `user/laptop` with its state at `state`.
pub async fn register(ds: &Ds, state: &Path, user: &str) {
    confide_ok(
        &ds.endpoint,
        state,
        &["register", "--user", user, "--device", "laptop"],
    )
    .await;
}

/// `user/laptop` registered with its state at `DIR/USER.db`, alone in a
/// group it created; the state file's path and the group's id.
pub async fn alone_in_a_group(ds: &Ds, dir: &Path, user: &str) -> (PathBuf, String) {
    let state = dir.join(format!("{user}.db"));
    register(ds, &state, user).await;
    let group = confide_ok(&ds.endpoint, &state, &["create-group"]).await;
    (state, group.trim().to_owned())
}

/// alice, who created a group and added bob, and bob, who synced: their
/// state files in `dir` and the group's id.
pub async fn alice_and_bob_in_a_group(ds: &Ds, dir: &Path) -> (PathBuf, PathBuf, String) {
    let (alice, group) = alone_in_a_group(ds, dir, "alice").await;
    let bob = dir.join("bob.db");
    register(ds, &bob, "bob").await;
    confide_ok(&ds.endpoint, &alice, &["add", "--group", &group, "bob"]).await;
    confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    (alice, bob, group)
}

/// alice, a client of the library, who created a group and added bob, a
/// `confide` device in `dir` whose `confide listen` printed that it joined:
/// alice, bob's device, the group and bob's listener.
pub async fn alice_and_a_listening_bob(
    app: &TestApp,
    dir: &Path,
) -> (confide_tests::Member, Device, Vec<u8>, Listener) {
    let mut alice = app.client("alice", "laptop").await;
    let bob = Device::register(app, dir, "bob").await;
    let group = alice.create_group().await.expect("alice creates a group");
    alice
        .add_users(&group, &["bob"])
        .await
        .expect("alice adds bob");
    let mut listener = bob.listen();
    listener.expect_line("joined at epoch 1").await;
    (alice, bob, group, listener)
}

/// A device whose state is a file, driven through the `confide` CLI.
pub struct Device {
    pub endpoint: String,
    pub state: PathBuf,
}

impl Device {
    /// `confide register` of `user/phone` with its state in `dir`.
    pub async fn register(app: &TestApp, dir: &Path, user: &str) -> Self {
        let device = Self {
            endpoint: app.endpoint.clone(),
            state: dir.join(format!("{user}.db")),
        };
        let registered = device
            .ok(&["register", "--user", user, "--device", "phone"])
            .await;
        assert_eq!(registered, format!("registered {user}/phone\n"));
        device
    }

    /// `confide SUBCOMMAND --endpoint ENDPOINT --state STATE REST…`.
    pub fn command(&self, args: &[&str]) -> Command {
        let (subcommand, rest) = args.split_first().expect("a subcommand");
        let mut command = Command::new(CONFIDE);
        command
            .arg(subcommand)
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--state")
            .arg(&self.state)
            .args(rest);
        for variable in ENVIRONMENT {
            command.env_remove(variable);
        }
        command
    }

    /// Runs a one-shot command to completion (off the runtime, which also
    /// serves the DS).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the command's thread")
            .expect("running confide")
    }

    /// Runs a command that must succeed; returns what it printed.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "confide {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Starts `confide listen` on this device's state file.
    pub fn listen(&self) -> Listener {
        self.spawn(&["listen"])
    }

    /// Starts a long-running command (`confide listen`, `confide link`),
    /// reading what it prints line by line, on standard output and (status
    /// lines, errors) on standard error.
    pub fn spawn(&self, args: &[&str]) -> Listener {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting confide listen");
        let lines = lines_of(child.stdout.take().expect("a piped stdout"));
        let errors = lines_of(child.stderr.take().expect("a piped stderr"));
        Listener {
            child,
            lines,
            errors,
            printed: Vec::new(),
            complained: Vec::new(),
        }
    }
}

/// Each line `reader` yields, read on a thread of its own until it ends.
fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (sender, lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// A running `confide listen` and every line it printed.
pub struct Listener {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    errors: mpsc::UnboundedReceiver<String>,
    /// What it printed on standard output, as far as read.
    pub printed: Vec<String>,
    /// What it printed on standard error, as far as read.
    pub complained: Vec<String>,
}

impl Listener {
    /// Waits until the listener prints a line containing `text`.
    pub async fn expect_line(&mut self, text: &str) {
        self.expect_on(Out::Stdout, text).await
    }

    /// Waits until the listener prints a line containing `text` on
    /// standard error (a status line).
    pub async fn expect_status(&mut self, text: &str) {
        self.expect_on(Out::Stderr, text).await
    }

    async fn expect_on(&mut self, out: Out, text: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (lines, seen) = match out {
                Out::Stdout => (&mut self.lines, &mut self.printed),
                Out::Stderr => (&mut self.errors, &mut self.complained),
            };
            let line = tokio::time::timeout_at(deadline, lines.recv()).await;
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "confide listen stopped before printing {text:?} on {out:?}; {}",
                    self.describe()
                ),
                Err(_) => panic!(
                    "confide listen printed no line with {text:?} on {out:?} within {WAIT:?}; {}",
                    self.describe()
                ),
            };
            let found = line.contains(text);
            seen.push(line);
            if found {
                return;
            }
        }
    }

    /// Every line it printed on standard error so far.
    pub fn status_lines(&mut self) -> &[String] {
        while let Ok(line) = self.errors.try_recv() {
            self.complained.push(line);
        }
        &self.complained
    }

    /// Waits for it to exit by itself (its standard error closes); its
    /// exit status.
    pub async fn expect_exit(&mut self) -> std::process::ExitStatus {
        let errors = &mut self.errors;
        let complained = &mut self.complained;
        let closed = tokio::time::timeout(WAIT, async {
            while let Some(line) = errors.recv().await {
                complained.push(line);
            }
        })
        .await;
        if closed.is_err() {
            panic!(
                "confide listen did not exit within {WAIT:?}; {}",
                self.describe()
            );
        }
        self.child.wait().expect("waiting for confide")
    }

    /// What it printed, for a failure's message.
    fn describe(&mut self) -> String {
        let complained = self.status_lines().to_vec();
        format!(
            "it printed {:#?} and on standard error {complained:#?}",
            self.printed
        )
    }
}

#[derive(Clone, Copy, Debug)]
enum Out {
    Stdout,
    Stderr,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Numbers this process's tmux servers apart.
static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A tmux server of the test's own (its own socket), each session a
/// terminal running one command, as a person's terminal window would.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A new tmux server; fails the test, saying how to get tmux, if there
    /// is none.
    pub fn new() -> Self {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|output| output.status.success()),
            "these tests drive `confide chat` in tmux: install it (`apt-get install tmux`; `.ci/run` does)"
        );
        Self {
            socket: format!(
                "confide-test-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("running tmux");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Opens a 120×30 terminal named `name` running `command`.
    pub fn open(&self, name: &str, command: &Command) {
        let mut line = String::new();
        for variable in ENVIRONMENT {
            line.push_str(&format!("-u {variable} "));
        }
        let mut shell = format!("env {line}");
        shell.push_str(&shell_word(command.get_program().to_str().expect("UTF-8")));
        for arg in command.get_args() {
            shell.push(' ');
            shell.push_str(&shell_word(arg.to_str().expect("UTF-8 arguments")));
        }
        // The pane stays when the command ends, so what it printed last can
        // be read.
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "120",
            "-y",
            "30",
            &shell,
        ]);
        self.tmux(&["set-option", "-t", name, "remain-on-exit", "on"]);
    }

    /// Types `text` into the terminal, then Enter.
    pub fn type_line(&self, name: &str, text: &str) {
        self.tmux(&["send-keys", "-t", name, "-l", text]);
        self.tmux(&["send-keys", "-t", name, "Enter"]);
    }

    /// What the terminal shows now.
    pub fn screen(&self, name: &str) -> String {
        let output = self.tmux(&["capture-pane", "-p", "-t", name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the terminal shows `text`, failing the test with the
    /// screen after [`WAIT`].
    pub async fn expect(&self, name: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.screen(name);
            if screen.contains(text) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}'s terminal showed no {text:?} within {WAIT:?}; it shows:\n{screen}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// `word`, quoted for the shell tmux runs a command with.
fn shell_word(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}
