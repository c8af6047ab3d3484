//! `confide link` on a new device and `confide approve` on an existing one,
//! each with its own state file, against an in-process DS.

use crate::harness::{Device, Listener, register, spawn_ds};

/// What `confide link` printed after `prefix` on a line of its own.
fn after(link: &Listener, prefix: &str) -> String {
    link.printed
        .iter()
        .find_map(|line| line.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {:#?}", link.printed))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_linked_with_the_code_and_the_matching_digits_joins_the_users_groups() {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let laptop = Device {
        endpoint: ds.endpoint.clone(),
        state: dir.path().join("laptop.db"),
    };
    let tablet = Device {
        endpoint: ds.endpoint.clone(),
        state: dir.path().join("tablet.db"),
    };
    register(&ds, &laptop.state, "alice").await;
    let group = laptop.ok(&["create-group"]).await;
    let group = group.trim();

    let mut link = tablet.spawn(&["link", "--user", "alice", "--device", "tablet"]);
    link.expect_line("authentication string:").await;
    let code = after(&link, "or: confide approve confide://link/");
    let sas = after(&link, "authentication string:");
    let approved = laptop
        .ok(&["approve", &format!("confide://link/{code}"), "--sas", &sas])
        .await;
    link.expect_line("linked alice/tablet").await;

    assert!(
        approved.contains(&format!("authentication string here: {sas}")),
        "{approved}"
    );
    assert!(
        approved.contains(&format!("[{group}] added alice/tablet")),
        "{approved}"
    );
    let joined = tablet.ok(&["sync"]).await;
    assert!(joined.contains(group), "{joined}");
    let devices = tablet.ok(&["devices"]).await;
    let certified: Vec<&str> = devices
        .lines()
        .filter(|line| line.ends_with("certified"))
        .map(|line| line.split_whitespace().next().expect("a name"))
        .collect();
    assert_eq!(certified, ["alice/laptop", "alice/tablet"], "{devices}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_under_an_existing_user_says_to_link_and_approving_with_other_digits_links_nothing()
 {
    let ds = spawn_ds().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let laptop = Device {
        endpoint: ds.endpoint.clone(),
        state: dir.path().join("laptop.db"),
    };
    let tablet = Device {
        endpoint: ds.endpoint.clone(),
        state: dir.path().join("tablet.db"),
    };
    register(&ds, &laptop.state, "alice").await;
    let posing = tablet
        .run(&["register", "--user", "alice", "--device", "tablet"])
        .await;
    assert!(!posing.status.success());
    let stderr = String::from_utf8_lossy(&posing.stderr);
    assert!(stderr.contains("`confide link"), "{stderr}");
    let mut link = tablet.spawn(&[
        "link",
        "--user",
        "alice",
        "--device",
        "tablet",
        "--timeout",
        "1",
    ]);
    link.expect_line("authentication string:").await;
    let code = after(&link, "or: confide approve confide://link/alice/");
    let sas = after(&link, "authentication string:");
    let misread = if sas == "000000" { "000001" } else { "000000" };

    let refused = laptop.run(&["approve", &code, "--sas", misread]).await;

    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("does not match") && stderr.contains("nothing was linked"),
        "{stderr}"
    );
    let devices = laptop.ok(&["devices"]).await;
    assert_eq!(devices.lines().count(), 1, "{devices}");
}
