//! `confide-ds`: reads configuration, sets up logging, installs signal
//! handling, builds the server ([`confide_ds::App::build`]) and runs it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use confide_ds::config::{LogFormat, StoreKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "Confide delivery service")]
struct Args {
    /// YAML configuration file; `CONFIDE__*` environment variables override it.
    #[arg(long, env = "CONFIDE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides the configured store (`memory` needs no database).
    #[arg(long)]
    store: Option<StoreKind>,
    /// Overrides the configured listen address.
    #[arg(long)]
    listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut settings =
        confide_ds::Settings::load(args.config.as_deref()).context("reading configuration")?;
    if let Some(store) = args.store {
        settings.store = store;
    }
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    // async-nats logs every connection event at info; the bus logs what an
    // operator needs of them (a loss, each reconnection) itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn"));
    match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        // Colours only for a person at a terminal, not in a log file.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    tracing::info!(?settings, "starting");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // Waits for an unreachable PostgreSQL, unless told to stop meanwhile.
    let app = tokio::select! {
        app = confide_ds::App::build(settings) => app?,
        () = shutdown.cancelled() => return Ok(()),
    };
    app.run_until_stopped(shutdown).await?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    shutdown.cancel();
}
