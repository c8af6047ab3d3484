//! The transport stays at the edge: the domain (authentication, key
//! packages, groups, delivery, deprovisioning, the hub), MLS validation and
//! the stores work on their own types, and only `grpc/` and the server's own
//! plumbing (`server.rs`, `startup.rs`, `health.rs`, `transport.rs`,
//! `telemetry.rs`, the health reporter in `state.rs`) name tonic or prost.

use std::fs;
use std::path::{Path, PathBuf};

/// The modules that must not know the transport, relative to `src/`.
const DOMAIN: [&str; 11] = [
    "auth.rs",
    "deprovision.rs",
    "key_packages.rs",
    "groups.rs",
    "delivery.rs",
    "hub.rs",
    "domain.rs",
    "error.rs",
    "limits.rs",
    "mls",
    "store",
];

#[test]
fn tonic_and_prost_types_never_leave_the_grpc_adapters_for_the_domain() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for entry in DOMAIN {
        for file in rust_files(&src.join(entry)) {
            let text = fs::read_to_string(&file).expect("reading a source file");
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(names_the_transport)
                {
                    let at = file.strip_prefix(&src).unwrap_or(&file).display();
                    found.push(format!("src/{at}:{}: {}", number + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "transport types in the domain:\n  {}",
        found.join("\n  ")
    );
}

/// `tonic`, `prost` or one of their crates (`tonic_health`, `prost_types`).
fn names_the_transport(ident: &str) -> bool {
    ["tonic", "prost"]
        .iter()
        .any(|name| ident == *name || ident.starts_with(&format!("{name}_")))
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files
}
