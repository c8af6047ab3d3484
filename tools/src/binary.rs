//! What the three binaries share: one `main` and one way to write JSON.
//! Each binary only parses its flags and calls its library's `run`.

use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Runs a tool: warnings and errors are logged to stderr (`RUST_LOG`
/// changes that), then `run` decides the exit code: 0 a clean run, 1 a run
/// that found problems, 2 a run that could not be made (its error printed
/// with every cause as `<tool>: …`).
pub async fn main(tool: &str, run: impl Future<Output = anyhow::Result<bool>>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{tool}: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes `value` to `path` as pretty-printed JSON (`--json`).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
}
