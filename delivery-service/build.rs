//! Rebuilds when a migration is added or changed (refinery embeds them).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
