//! The client library never depends on the server: an application that
//! embeds `confide-client` compiles neither the delivery service nor its
//! PostgreSQL stack. Read from `cargo metadata`, so a dependency added
//! anywhere below the library (directly or through another crate) fails
//! here, naming the chain that brings it in.

use std::collections::{HashMap, VecDeque};
use std::process::Command;

use serde_json::Value;

/// Crates of the server side that the library must not reach.
const SERVER_CRATES: [&str; 4] = [
    "confide-ds",
    "tokio-postgres",
    "refinery",
    "deadpool-postgres",
];

#[test]
#[ignore = "enabled when confide-client no longer depends on confide-ds (issue 12)"]
fn the_client_library_does_not_depend_on_the_server() {
    let metadata = cargo_metadata();
    let names: HashMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| (str_at(package, "id"), str_at(package, "name")))
        .collect();
    let nodes: HashMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("resolve.nodes (cargo metadata resolves dependencies)")
        .iter()
        .map(|node| (str_at(node, "id"), node))
        .collect();
    let client = names
        .iter()
        .find(|(_, name)| **name == "confide-client")
        .map(|(id, _)| *id)
        .expect("confide-client is in the workspace");

    // Breadth first over normal dependencies, so each chain is a shortest.
    let mut reached_from: HashMap<&str, Option<&str>> = HashMap::from([(client, None)]);
    let mut queue = VecDeque::from([client]);
    while let Some(id) = queue.pop_front() {
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|kind| kind["kind"].is_null());
            let dep_id = str_at(dep, "pkg");
            if normal && !reached_from.contains_key(dep_id) {
                reached_from.insert(dep_id, Some(id));
                queue.push_back(dep_id);
            }
        }
    }

    let chains: Vec<String> = reached_from
        .keys()
        .filter(|id| SERVER_CRATES.contains(&names[*id]))
        .map(|id| {
            let mut chain = vec![names[*id]];
            let mut at = *id;
            while let Some(&Some(parent)) = reached_from.get(at) {
                chain.push(names[parent]);
                at = parent;
            }
            chain.reverse();
            chain.join(" → ")
        })
        .collect();
    assert!(
        chains.is_empty(),
        "the client library depends on the server:\n  {}",
        sorted(chains).join("\n  ")
    );
}

/// `cargo metadata` of this workspace, with the dependency graph resolved.
fn cargo_metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn str_at<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is a string in {value}"))
}

fn sorted(mut chains: Vec<String>) -> Vec<String> {
    chains.sort();
    chains
}
