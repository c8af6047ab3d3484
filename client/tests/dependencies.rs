//! The client library never depends on the server: an application that
//! embeds `confide-client` compiles neither the delivery service nor its
//! PostgreSQL stack. Read from `cargo tree -p confide-client` (features
//! resolved for the library alone, as an application embedding it gets them),
//! so a dependency added anywhere below the library (directly or through
//! another crate) fails here, naming the chain that brings it in.
//!
//! `refinery` itself is allowed: `openmls_sqlite_storage` migrates the
//! client's SQLite state with it (its `rusqlite` backend); its PostgreSQL
//! backend would bring `tokio-postgres`, which is refused.

use std::process::Command;

/// Crates of the server side that the library must not reach.
const SERVER_CRATES: [&str; 5] = [
    "confide-ds",
    "tokio-postgres",
    "deadpool-postgres",
    "postgres-protocol",
    "governor",
];

#[test]
fn the_client_library_does_not_depend_on_the_server() {
    let tree = cargo_tree();
    // Each line is `<depth><name> v<version> …`; the chain to a line is the
    // last line seen at every smaller depth.
    let mut path: Vec<&str> = Vec::new();
    let mut chains = Vec::new();
    for line in tree.lines() {
        let name_at = line
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or_else(|| panic!("a depth, then a package: {line:?}"));
        let depth: usize = line[..name_at].parse().expect("a depth");
        let name = line[name_at..].split(' ').next().expect("a package name");
        path.truncate(depth);
        path.push(name);
        if SERVER_CRATES.contains(&name) {
            chains.push(path.join(" → "));
        }
    }
    assert!(
        path.first() == Some(&"confide-client"),
        "cargo tree starts at the library:\n{tree}"
    );
    chains.sort();
    chains.dedup();
    assert!(
        chains.is_empty(),
        "the client library depends on the server:\n  {}",
        chains.join("\n  ")
    );
}

/// The library's normal dependencies, one per line with its depth.
fn cargo_tree() -> String {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--package",
            "confide-client",
            "--edges",
            "normal",
            "--prefix",
            "depth",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("cargo tree prints UTF-8")
}
