//! `workers --queues ingest,evaluate --concurrency 64`: runs worker pools until SIGTERM or
//! Ctrl-C, then stops them gracefully.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use migration::MigratorTrait;
use workers::{Context, PoolArgs};

/// The workers binary's whole configuration, from flags or the environment.
#[derive(Debug, Parser)]
#[command(version, about = "Steadfast worker pools")]
struct Config {
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, env = "STEADFAST_PREFIX", default_value = "steadfast")]
    prefix: String,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://steadfast.db?mode=rwc"
    )]
    database_url: String,
    #[command(flatten)]
    pools: PoolArgs,
    /// Where Prometheus scrapes this process.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9464")]
    metrics_addr: SocketAddr,
    /// Serve no metrics.
    #[arg(long, env = "NO_METRICS")]
    no_metrics: bool,
    /// Refuse to start when Redis could lose or evict jobs.
    #[arg(long, env = "REDIS_STRICT")]
    redis_strict: bool,
    /// Apply pending migrations before starting.
    #[arg(long, env = "MIGRATE")]
    migrate: bool,
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let pools = config.pools.pool_config(!config.no_metrics)?;
    let notifier = config.pools.notifier()?;
    let db = entities::connect(&config.database_url)
        .await
        .context("connecting to the database")?;
    if config.migrate {
        migration::Migrator::up(&db, None)
            .await
            .context("migrating")?;
    }
    let engine = queue::Engine::connect(
        &config.redis_url,
        queue::EngineConfig::with_prefix(&config.prefix),
    )
    .await
    .context("connecting to Redis")?;
    engine.check_redis(config.redis_strict).await?;
    if !config.no_metrics {
        workers::metrics::serve(config.metrics_addr)
            .with_context(|| format!("serving metrics on {}", config.metrics_addr))?;
    }
    let ctx = Context {
        db,
        engine,
        notifier,
    };
    workers::run_pools(ctx, pools, shutdown_signal()).await?;
    Ok(())
}
