//! Every job kind, its queue and its handler, and the pools that run them.

use std::time::Duration;

use apalis_core::{monitor::Monitor, task::data::Data, worker::builder::WorkerBuilder};
use queue::{Engine, JobContext, JobError, RedisBackend, WorkerOptions};
use sea_orm::DatabaseConnection;
use workflows::{
    Job,
    jobs::{alert::Alert, evaluate::Evaluate, ingest::Ingest},
};

/// The queues this build runs (one per job kind with a handler).
pub const QUEUES: [&str; 3] = [Ingest::KIND, Evaluate::KIND, Alert::KIND];

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct Context {
    pub db: DatabaseConnection,
    pub engine: Engine,
}

/// Which queues a process runs, and how.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub queues: Vec<String>,
    pub concurrency: usize,
    /// In-flight jobs get this long after SIGTERM; the rest are released at once.
    pub shutdown_grace: Duration,
    /// A unique id per process; the backends add the queue.
    pub worker_id: String,
}

fn options<J: Job>(config: &PoolConfig) -> WorkerOptions {
    let policy = J::policy();
    WorkerOptions::new(J::KIND)
        .concurrency(config.concurrency)
        .lease(policy.visibility_timeout)
        .retry(policy.retry)
        .shutdown_grace(config.shutdown_grace)
        .worker_id(format!("{}-{}", config.worker_id, J::KIND))
}

/// A payload written at a version this build cannot read is a permanent error, not a misread.
fn readable<J: Job>(job: &JobContext) -> Result<(), JobError> {
    J::check_version(job.payload_version)
        .map_err(|e| JobError::Permanent(format!("invalid payload: {e}")))
}

async fn ingest(payload: Ingest, job: JobContext, ctx: Data<Context>) -> Result<(), JobError> {
    readable::<Ingest>(&job)?;
    workflows::jobs::ingest::run(&ctx.db, &ctx.engine, &job.id, &payload)
        .await
        .map(drop)
        .map_err(Into::into)
}

async fn evaluate(payload: Evaluate, job: JobContext, ctx: Data<Context>) -> Result<(), JobError> {
    readable::<Evaluate>(&job)?;
    workflows::jobs::evaluate::run(&ctx.db, &ctx.engine, &payload)
        .await
        .map(drop)
        .map_err(Into::into)
}

async fn alert(payload: Alert, job: JobContext, ctx: Data<Context>) -> Result<(), JobError> {
    readable::<Alert>(&job)?;
    workflows::jobs::alert::run(&ctx.db, &ctx.engine, &payload)
        .await
        .map(drop)
        .map_err(Into::into)
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("unknown queue {0:?}; this build runs {QUEUES:?}")]
    UnknownQueue(String),
    #[error("worker pools: {0}")]
    Monitor(String),
}

/// Runs a worker per configured queue until `shutdown` resolves, then stops them gracefully.
pub async fn run_pools(
    ctx: Context,
    config: PoolConfig,
    shutdown: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
) -> Result<(), PoolError> {
    let mut monitor = Monitor::new();
    for queue in &config.queues {
        let (c, cfg) = (ctx.clone(), config.clone());
        monitor = match queue.as_str() {
            q if q == Ingest::KIND => monitor.register(move |_| {
                WorkerBuilder::new(format!("{}-{}", cfg.worker_id, Ingest::KIND))
                    .backend(RedisBackend::<Ingest>::new(
                        c.engine.clone(),
                        options::<Ingest>(&cfg),
                    ))
                    .data(c.clone())
                    .build(ingest)
            }),
            q if q == Evaluate::KIND => monitor.register(move |_| {
                WorkerBuilder::new(format!("{}-{}", cfg.worker_id, Evaluate::KIND))
                    .backend(RedisBackend::<Evaluate>::new(
                        c.engine.clone(),
                        options::<Evaluate>(&cfg),
                    ))
                    .data(c.clone())
                    .build(evaluate)
            }),
            q if q == Alert::KIND => monitor.register(move |_| {
                WorkerBuilder::new(format!("{}-{}", cfg.worker_id, Alert::KIND))
                    .backend(RedisBackend::<Alert>::new(
                        c.engine.clone(),
                        options::<Alert>(&cfg),
                    ))
                    .data(c.clone())
                    .build(alert)
            }),
            other => return Err(PoolError::UnknownQueue(other.to_owned())),
        };
    }
    tracing::info!(queues = ?config.queues, concurrency = config.concurrency, "worker pools starting");
    monitor
        .run_with_signal(shutdown)
        .await
        .map_err(|e| PoolError::Monitor(e.to_string()))
}
