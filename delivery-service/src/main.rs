//! `confide-ds`: reads configuration, sets up logging, binds, installs signal
//! handling and calls [`confide_ds::run`].

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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    tracing::info!(?settings, "starting");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    // Waits for an unreachable PostgreSQL, unless told to stop meanwhile.
    let store = tokio::select! {
        store = confide_ds::open_store(&settings) => store.context("opening the store")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let health_listener = bind_optional(settings.health_listen.as_deref()).await?;
    let metrics_listener = bind_optional(settings.metrics_listen.as_deref()).await?;
    let state = confide_ds::state(store, settings, shutdown.clone())
        .context("loading the external sender key")?;
    if let Some(listener) = health_listener {
        tokio::spawn(confide_ds::serve_health(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(listener) = metrics_listener {
        tokio::spawn(confide_ds::telemetry::serve(listener, shutdown.clone()));
    }
    confide_ds::run(listener, state, shutdown).await?;
    Ok(())
}

async fn bind_optional(addr: Option<&str>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    Ok(Some(listener))
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
