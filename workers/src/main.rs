//! `workers --queues ingest,evaluate --concurrency 64`: runs worker pools until SIGTERM or
//! Ctrl-C, then stops them gracefully.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use clap::Parser;
use migration::MigratorTrait;
use queue::BreakerPolicy;
use workers::{Context, PoolConfig, QUEUES};
use workflows::jobs::notify::{Notifier, NotifyConfig};

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
    /// Per-queue overrides of --concurrency, e.g. `notify=64,ingest=8`.
    #[arg(long, env = "WORKER_QUEUE_CONCURRENCY", value_delimiter = ',', value_parser = queue_width)]
    queue_concurrency: Vec<(String, usize)>,
    /// Lease (visibility timeout) in milliseconds for every kind, instead of each kind's own.
    #[arg(long, env = "WORKER_LEASE_MS")]
    lease_ms: Option<u64>,
    /// Seconds in-flight jobs get after SIGTERM.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// A name for this process among the workers (default: host and pid).
    #[arg(long, env = "WORKER_ID")]
    worker_id: Option<String>,
    /// Webhook request timeout, in milliseconds.
    #[arg(long, env = "WEBHOOK_TIMEOUT_MS", default_value_t = 10_000)]
    webhook_timeout_ms: u64,
    /// Consecutive failures that open a destination's circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES", default_value_t = 5)]
    breaker_failures: u32,
    /// Milliseconds an open breaker waits before letting a probe through.
    #[arg(long, env = "BREAKER_COOL_DOWN_MS", default_value_t = 30_000)]
    breaker_cool_down_ms: u64,
    /// Seconds between checks of silence rules.
    #[arg(long, env = "SILENCE_CHECK_SECS", default_value_t = 30)]
    silence_check_secs: u64,
    /// Days finished jobs, their attempts and finished runs are kept in SQL (0: forever).
    #[arg(long, env = "RETAIN_LEDGER_DAYS", default_value_t = 30)]
    retain_ledger_days: u64,
    /// Days readings are kept (0: forever); readings not yet evaluated are always kept.
    #[arg(long, env = "RETAIN_READINGS_DAYS", default_value_t = 90)]
    retain_readings_days: u64,
    /// Do not write the job ledger from this process (another process does).
    #[arg(long, env = "NO_LEDGER")]
    no_ledger: bool,
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

fn queue_width(raw: &str) -> Result<(String, usize), String> {
    let (queue, width) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected queue=width, got {raw:?}"))?;
    let width = width
        .parse()
        .map_err(|e| format!("width of {queue}: {e}"))?;
    Ok((queue.to_owned(), width))
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into())
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
    if let Some(unknown) = config
        .queues
        .iter()
        .chain(config.queue_concurrency.iter().map(|(q, _)| q))
        .find(|q| !QUEUES.contains(&q.as_str()))
    {
        anyhow::bail!("unknown queue {unknown:?}; this build runs {QUEUES:?}");
    }
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
    let notifier = Notifier::new(NotifyConfig {
        timeout: Duration::from_millis(config.webhook_timeout_ms),
        breaker: BreakerPolicy {
            failure_threshold: config.breaker_failures,
            cool_down: Duration::from_millis(config.breaker_cool_down_ms),
            ..BreakerPolicy::default()
        },
    })?;
    let worker_id = config
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", host_name(), std::process::id()));
    let mut pools = PoolConfig::all_queues(worker_id);
    if !config.queues.is_empty() {
        pools.queues = config.queues.clone();
    }
    pools.concurrency = config.concurrency;
    pools.queue_concurrency = config
        .queue_concurrency
        .iter()
        .cloned()
        .collect::<HashMap<_, _>>();
    pools.lease = config.lease_ms.map(Duration::from_millis);
    pools.shutdown_grace = Duration::from_secs(config.shutdown_grace_secs);
    pools.silence_every = Duration::from_secs(config.silence_check_secs.max(1));
    pools.record_ledger = !config.no_ledger;
    let days = |d: u64| (d > 0).then(|| Duration::from_secs(d * 86_400));
    pools.retention = (!config.no_ledger).then(|| {
        let retain = workflows::retention::RetentionConfig {
            ledger: days(config.retain_ledger_days),
            readings: days(config.retain_readings_days),
            ..Default::default()
        };
        (retain, Duration::from_secs(600))
    });
    pools.sample_depth_every = (!config.no_metrics).then_some(Duration::from_secs(5));
    let ctx = Context {
        db,
        engine,
        notifier,
    };
    workers::run_pools(ctx, pools, shutdown_signal()).await?;
    Ok(())
}
