//! `api [--with-workers]`: serves GraphQL, the REST endpoints and the web app until SIGTERM or
//! Ctrl-C; with `--with-workers`, one process runs the whole system.

use anyhow::Context as _;
use clap::Parser;

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn")),
        )
        .init();
    let config = api::ApiConfig::parse();
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("listening on {}", config.addr))?;
    let running = api::start(config, listener).await?;
    let port = running.addr.port();
    println!(
        "Steadfast is up: http://localhost:{port}/ (GraphQL at http://localhost:{port}/graphql)"
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}
