//! What scripts and shells rely on: a message read from standard input,
//! help text on every flag, completion scripts, and a reader that closes
//! the pipe early.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::harness::{
    CONFIDE, Device, alice_and_bob_in_a_group, alone_in_a_group, confide_ok, spawn_ds,
};

/// Runs `command` with `input` on its standard input.
async fn run_with_input(mut command: Command, input: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running confide");
        child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(input)
            .expect("writing standard input");
        child.wait_with_output().expect("waiting for confide")
    })
    .await
    .expect("the command's thread")
}

/// `confide ARGS` without a state file or endpoint.
fn bare(args: &[&str]) -> Command {
    let mut command = Command::new(CONFIDE);
    command.args(args).env_remove("RUST_LOG");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_given_as_a_dash_is_read_from_standard_input_without_its_last_newline() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;
    let group = group.as_str();
    let alice = Device {
        endpoint: ds.endpoint.clone(),
        state: alice,
    };

    let sent = run_with_input(
        alice.command(&["send", "--group", group, "-"]),
        b"the minutes:\nnothing decided\n",
    )
    .await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let printed = confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    assert!(
        printed.contains(&format!(
            "[{group}] alice/laptop: the minutes:\n  | nothing decided\n"
        )),
        "{printed:?}"
    );

    let empty = run_with_input(alice.command(&["send", "--group", group, "-"]), b"").await;
    assert!(!empty.status.success());
    let error = String::from_utf8_lossy(&empty.stderr);
    assert!(error.contains("standard input was empty"), "{error}");
    let printed = confide_ok(&ds.endpoint, &bob, &["sync"]).await;
    assert!(!printed.contains("alice/laptop"), "{printed:?}");
}

/// Every subcommand, as `confide --help` lists them (and `identity export`).
fn subcommands() -> Vec<Vec<String>> {
    let help = bare(&["--help"]).output().expect("confide --help");
    let help = String::from_utf8(help.stdout).expect("UTF-8 help");
    let commands = help
        .split("Commands:")
        .nth(1)
        .expect("a list of commands")
        .split("\n\n")
        .next()
        .expect("the list");
    let mut subcommands: Vec<Vec<String>> = commands
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(|name| vec![name.to_owned()])
        .collect();
    subcommands.push(vec!["identity".into(), "export".into()]);
    subcommands
}

#[test]
fn every_flag_and_argument_of_every_command_has_help_text() {
    let subcommands = subcommands();
    assert!(subcommands.len() > 15, "{subcommands:?}");
    let mut undocumented = Vec::new();
    for subcommand in &subcommands {
        let mut args: Vec<&str> = subcommand.iter().map(String::as_str).collect();
        args.push("-h");
        let help = bare(&args).output().expect("confide SUBCOMMAND --help");
        let help = String::from_utf8(help.stdout).expect("UTF-8 help");
        for section in ["Arguments:", "Options:"] {
            let Some(items) = help.split(section).nth(1) else {
                continue;
            };
            let items = items.split("\n\n").next().unwrap_or_default();
            let lines: Vec<&str> = items
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect();
            for (i, item) in lines.iter().enumerate() {
                let names_a_flag = item.starts_with('-') || item.starts_with('<');
                // `--group <GROUP>  The group's id…` on one line, or, when
                // clap puts help on the next line, that line.
                let help_on_its_line = item.split("  ").filter(|s| !s.is_empty()).count() > 1;
                let help_below = lines
                    .get(i + 1)
                    .is_some_and(|next| !next.starts_with('-') && !next.starts_with('<'));
                if names_a_flag && !help_on_its_line && !help_below {
                    undocumented.push(format!("confide {}: {item}", subcommand.join(" ")));
                }
            }
        }
    }
    assert!(undocumented.is_empty(), "no help text: {undocumented:#?}");
}

#[test]
fn a_completion_script_is_printed_for_bash_zsh_and_fish_naming_every_command() {
    let subcommands = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let output = bare(&["completions", shell])
            .output()
            .expect("confide completions");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).expect("UTF-8 script");
        for subcommand in &subcommands {
            assert!(
                script.contains(&subcommand[0]),
                "{shell}: {}",
                subcommand[0]
            );
        }
    }
    let refused = bare(&["completions", "cmd.exe"])
        .output()
        .expect("confide completions");
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("possible values"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_the_pipe_ends_confide_quietly_without_a_panic() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, group) = alone_in_a_group(&ds, dir.path(), "alice").await;
    let alice = Device {
        endpoint: ds.endpoint.clone(),
        state: alice,
    };
    let members = alice.command(&["members", "--group", group.trim()]);
    let completions = bare(&["completions", "bash"]);

    for mut command in [members, completions] {
        let output = tokio::task::spawn_blocking(move || {
            // `confide … | head -0`: the reader is gone before a byte is
            // written.
            let (reader, writer) = std::io::pipe().expect("a pipe");
            drop(reader);
            command
                .stdout(writer)
                .stderr(Stdio::piped())
                .output()
                .expect("running confide")
        })
        .await
        .expect("the command's thread");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.is_empty(),
            "{command:?}: {error}",
            command = "confide"
        );
        assert_eq!(output.status.code(), Some(141), "{error}");
    }
}

/// Each line a command prints with `--json` is one JSON object.
fn json_lines(printed: &str) -> Vec<serde_json::Value> {
    printed
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_json_every_command_prints_one_json_object_per_line() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (alice, bob, group) = alice_and_bob_in_a_group(&ds, dir.path()).await;
    let alice = Device {
        endpoint: ds.endpoint.clone(),
        state: alice,
    };
    let bob = Device {
        endpoint: ds.endpoint.clone(),
        state: bob,
    };

    let named = json_lines(
        &alice
            .ok(&["rename", "--group", &group, "Ops", "--json"])
            .await,
    );
    assert_eq!(named[0]["name"], "Ops");
    let sent = json_lines(
        &alice
            .ok(&["send", "--json", "--group", "Ops", "hi \x1b[2J"])
            .await,
    );
    assert_eq!(sent[0]["group"], group.as_str());
    let seq = sent[0]["seq"].as_u64().expect("a seq");

    let events = json_lines(&bob.ok(&["sync", "--json"]).await);
    let message = events
        .iter()
        .find(|event| event["type"] == "message")
        .unwrap_or_else(|| panic!("a message among {events:?}"));
    assert_eq!(message["seq"], seq);
    assert_eq!(message["sender"], "alice/laptop");
    assert_eq!(
        message["text"], "hi \x1b[2J",
        "the text as sent, JSON-escaped"
    );
    assert!(message["sent_at_ms"].as_u64().is_some());
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "group-renamed" && e["name"] == "Ops")
    );

    let groups = json_lines(&bob.ok(&["groups", "--json"]).await);
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["group"], group.as_str());
    assert_eq!(groups[0]["name"], "Ops");
    assert_eq!(groups[0]["unread"], 1);
    assert_eq!(
        groups[0]["members"],
        serde_json::json!(["alice/laptop", "bob/laptop"])
    );

    let members = json_lines(&bob.ok(&["members", "--json", "--group", "Ops"]).await);
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["members"].as_array().map(Vec::len), Some(2));
    assert!(
        members[0]["safety_code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );

    let history = json_lines(&bob.ok(&["history", "--json", "--group", "Ops"]).await);
    assert!(
        history
            .iter()
            .any(|e| e["type"] == "message" && e["own"] == false)
    );
    let contacts = json_lines(&bob.ok(&["contacts", "--json"]).await);
    assert_eq!(contacts[0]["user"], "alice");

    // A stream: `listen --json` prints each event as it arrives.
    let mut listener = bob.spawn(&["listen", "--json"]);
    alice.ok(&["send", "--group", "Ops", "live"]).await;
    listener.expect_line("\"text\":\"live\"").await;
    for line in &listener.printed {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
    }
    // A command handed to the listener answers in JSON too.
    let handed = json_lines(&bob.ok(&["groups", "--json"]).await);
    assert_eq!(handed[0]["name"], "Ops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_refused_where_a_command_has_no_json_form() {
    for args in [
        &["completions", "bash", "--json"][..],
        &["--json", "demo"][..],
    ] {
        let mut command = bare(args);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .expect("the command's thread")
            .expect("running confide");
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?} printed nothing");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(
            error.contains("--json is not available for this command"),
            "{error}"
        );
    }
}
