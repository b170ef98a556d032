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

fn main() -> anyhow::Result<()> {
    let config = api::ApiConfig::parse();
    let telemetry =
        telemetry::Telemetry::init(&config.telemetry, "steadfast-api", "info,tower_http=warn")?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(serve(config));
    telemetry.shutdown();
    result
}

async fn serve(config: api::ApiConfig) -> anyhow::Result<()> {
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
