//! `workers --queues ingest,evaluate --concurrency 64`: runs worker pools until SIGTERM or
//! Ctrl-C, then stops them gracefully.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use migration::MigratorTrait;
use workers::{Context, PoolConfig, QUEUES};

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
    /// Comma-separated queues to run (default: all).
    #[arg(long, env = "WORKER_QUEUES", value_delimiter = ',')]
    queues: Vec<String>,
    /// Jobs run at once per queue.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Seconds in-flight jobs get after SIGTERM.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// Refuse to start when Redis could lose or evict jobs.
    #[arg(long, env = "REDIS_STRICT")]
    redis_strict: bool,
    /// Apply pending migrations before starting.
    #[arg(long)]
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
    let pools = PoolConfig {
        queues: if config.queues.is_empty() {
            QUEUES.iter().map(|q| (*q).to_owned()).collect()
        } else {
            config.queues.clone()
        },
        concurrency: config.concurrency,
        shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
        worker_id: format!("{}-{}", std::process::id(), queue::now_ms()),
    };
    workers::run_pools(Context { db, engine }, pools, shutdown_signal()).await?;
    Ok(())
}
