//! Every job kind, its queue and its handler, and the pools that run them.

use std::{collections::HashMap, future::Future, time::Duration, time::Instant};

use apalis_core::{monitor::Monitor, task::data::Data, worker::builder::WorkerBuilder};
use queue::{Engine, JobContext, JobError, RedisBackend, WorkerOptions};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use workflows::{
    BackgroundJob, HandlerError,
    jobs::{
        alert::Alert,
        evaluate::Evaluate,
        ingest::Ingest,
        notify::{Notifier, Notify},
        silence_check::{self, SilenceCheck},
    },
    ledger::{LEDGER_APPLICATION, Recorder, RecorderConfig},
    retention::{self, RetentionConfig},
    schedules::{Scheduler, SchedulerConfig},
    statistics,
};

use crate::metrics;

/// The queues this build runs (one per job kind).
pub const QUEUES: [&str; 5] = workflows::jobs::KINDS;

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct Context {
    pub db: DatabaseConnection,
    /// The ledger recorders' pool: `db` itself, or on PostgreSQL a small pool of their own
    /// ([`Context::with_ledger_pool`]).
    pub ledger_db: DatabaseConnection,
    pub engine: Engine,
    pub notifier: Notifier,
}

impl Context {
    /// Handlers and recorders share `db`.
    pub fn new(db: DatabaseConnection, engine: Engine, notifier: Notifier) -> Self {
        Self {
            ledger_db: db.clone(),
            db,
            engine,
            notifier,
        }
    }

    /// Gives the ledger recorders a pool of their own at `url` (where a second pool can be
    /// had: PostgreSQL), a connection per recorder, with a small statement cache: the
    /// recorders' upserts change shape with every batch and would otherwise fill the shared
    /// connections' caches (see [`entities::db::BULK_STATEMENT_CACHE`]).
    pub async fn with_ledger_pool(
        mut self,
        url: &str,
        recorders: usize,
    ) -> Result<Self, entities::DbError> {
        if recorders > 0 {
            let connections = u32::try_from(recorders).unwrap_or(u32::MAX);
            self.ledger_db =
                entities::connect_bulk_writer(url, &self.db, connections, LEDGER_APPLICATION)
                    .await?;
        }
        Ok(self)
    }
}

/// Which queues a process runs, and how.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub queues: Vec<String>,
    /// Jobs at once per queue, unless `queue_concurrency` names the queue.
    pub concurrency: usize,
    pub queue_concurrency: HashMap<String, usize>,
    /// Overrides every kind's own lease (visibility timeout) when set.
    pub lease: Option<Duration>,
    /// Overrides every kind's backoff `(base, cap)` when set; attempts stay the kind's.
    pub backoff: Option<(Duration, Duration)>,
    /// In-flight jobs get this long after SIGTERM; the rest are released at once.
    pub shutdown_grace: Duration,
    /// A unique id per process; the backends add the queue.
    pub worker_id: String,
    /// How often silence rules are checked (by processes that run `silence_check`).
    pub silence_every: Duration,
    /// Ledger recorders this process runs (0: the ledger is written by other processes).
    /// Recorders share one consumer group, so each event is recorded once whatever the count;
    /// more than one lets a batch be written while the next is read, at the cost of CPU and
    /// database time the pipeline would otherwise have.
    pub ledger_recorders: usize,
    /// How often queue depths are sampled into metrics (`None`: not at all).
    pub sample_depth_every: Option<Duration>,
    /// Old ledger rows and readings deleted every so often (`None`: by another process).
    pub retention: Option<(RetentionConfig, Duration)>,
    /// Makes the jobs of due schedules (`None`: other processes do). Any number of processes
    /// may: each tick still makes one job.
    pub scheduler: Option<SchedulerConfig>,
}

impl PoolConfig {
    /// Every queue, with defaults fit for a small deployment.
    pub fn all_queues(worker_id: impl Into<String>) -> Self {
        Self {
            queues: QUEUES.iter().map(|q| (*q).to_owned()).collect(),
            concurrency: 16,
            queue_concurrency: HashMap::new(),
            lease: None,
            backoff: None,
            shutdown_grace: Duration::from_secs(10),
            worker_id: worker_id.into(),
            silence_every: Duration::from_secs(30),
            ledger_recorders: 1,
            sample_depth_every: None,
            retention: None,
            scheduler: Some(SchedulerConfig::default()),
        }
    }
}

/// The worker options of kind `J` on `queue` under `config` (its policy, the overrides).
pub(crate) fn options<J: BackgroundJob>(config: &PoolConfig, queue: &str) -> WorkerOptions {
    let mut policy = J::policy();
    if let Some((base, cap)) = config.backoff {
        policy.retry.backoff_base = base;
        policy.retry.backoff_cap = cap;
    }
    let concurrency = config
        .queue_concurrency
        .get(queue)
        .copied()
        .unwrap_or(config.concurrency);
    WorkerOptions::new(queue)
        .concurrency(concurrency)
        .lease(config.lease.unwrap_or(policy.visibility_timeout))
        .retry(policy.retry)
        .timeout(policy.timeout)
        .shutdown_grace(config.shutdown_grace)
        .worker_id(format!("{}-{queue}", config.worker_id))
}

/// How the workers run a kind: its handler, given the job's context and the process's.
/// One impl per kind; [`register`] does the rest the same way for all of them.
pub trait Perform: BackgroundJob {
    /// What a success leaves on the job (its `result`).
    type Output: serde::Serialize + Send + Sync + 'static;

    fn perform(
        &self,
        job: &JobContext,
        ctx: &Context,
    ) -> impl Future<Output = Result<Self::Output, HandlerError>> + Send;
}

impl Perform for Ingest {
    type Output = workflows::jobs::ingest::Ingested;

    async fn perform(&self, job: &JobContext, ctx: &Context) -> Result<Self::Output, HandlerError> {
        workflows::jobs::ingest::run(&ctx.db, &ctx.engine, &job.id, self).await
    }
}

impl Perform for Evaluate {
    type Output = workflows::jobs::evaluate::Evaluated;

    async fn perform(
        &self,
        _job: &JobContext,
        ctx: &Context,
    ) -> Result<Self::Output, HandlerError> {
        workflows::jobs::evaluate::run(&ctx.db, &ctx.engine, self).await
    }
}

impl Perform for Alert {
    type Output = workflows::jobs::alert::Applied;

    async fn perform(
        &self,
        _job: &JobContext,
        ctx: &Context,
    ) -> Result<Self::Output, HandlerError> {
        workflows::jobs::alert::run(&ctx.db, &ctx.engine, self).await
    }
}

impl Perform for Notify {
    type Output = workflows::jobs::notify::Sent;

    async fn perform(&self, job: &JobContext, ctx: &Context) -> Result<Self::Output, HandlerError> {
        workflows::jobs::notify::run(&ctx.db, &ctx.engine, &ctx.notifier, &job.id, self).await
    }
}

impl Perform for SilenceCheck {
    type Output = Vec<queue::PushOutcome>;

    async fn perform(
        &self,
        _job: &JobContext,
        ctx: &Context,
    ) -> Result<Self::Output, HandlerError> {
        silence_check::run(&ctx.db, &ctx.engine, self).await
    }
}

/// One attempt of a job of kind `J`, as every worker runs it: [`Perform::perform`], counted
/// in the job metrics. The payload's version was checked when it was decoded
/// ([`BackgroundJob::decode_leased`]).
pub(crate) async fn attempt<J: Perform>(
    payload: J,
    job: JobContext,
    ctx: &Context,
) -> Result<J::Output, JobError> {
    let started = Instant::now();
    let result = payload.perform(&job, ctx).await.map_err(Into::into);
    metrics::observe(J::KIND, &job, started, &result);
    result
}

/// The apalis handler of every kind.
async fn handle<J: Perform>(
    payload: J,
    job: JobContext,
    ctx: Data<Context>,
) -> Result<J::Output, JobError> {
    attempt::<J>(payload, job, &ctx).await
}

/// Something done for one kind, chosen by a queue's name: [`for_kind`] calls `visit` with
/// the kind's type, so code that must treat every kind (registering workers, performing a
/// job inline) is written once, generically.
pub trait KindVisitor {
    type Output;
    fn visit<J: Perform>(self, queue: &str) -> Self::Output;
}

/// The one list of the kinds this build runs: calls `visitor` with the kind `queue` names
/// (its name or an alias); `None` for an unknown queue.
pub fn for_kind<V: KindVisitor>(queue: &str, visitor: V) -> Option<V::Output> {
    Some(match workflows::jobs::kind_named(queue)? {
        Ingest::KIND => visitor.visit::<Ingest>(queue),
        Evaluate::KIND => visitor.visit::<Evaluate>(queue),
        Alert::KIND => visitor.visit::<Alert>(queue),
        Notify::KIND => visitor.visit::<Notify>(queue),
        SilenceCheck::KIND => visitor.visit::<SilenceCheck>(queue),
        _ => return None,
    })
}

/// Registers a worker of the visited kind on the queue: its options, its decoder and its
/// handler.
struct Register<'a> {
    monitor: Monitor,
    ctx: &'a Context,
    config: &'a PoolConfig,
}

impl KindVisitor for Register<'_> {
    type Output = Monitor;

    fn visit<J: Perform>(self, queue: &str) -> Monitor {
        let (ctx, config, queue) = (self.ctx.clone(), self.config.clone(), queue.to_owned());
        self.monitor.register(move |_| {
            WorkerBuilder::new(format!("{}-{queue}", config.worker_id))
                .backend(
                    RedisBackend::<J>::new(ctx.engine.clone(), options::<J>(&config, &queue))
                        .decode_with(J::decode_leased),
                )
                .data(ctx.clone())
                .build(handle::<J>)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("unknown queue {0:?}; this build runs {QUEUES:?}")]
    UnknownQueue(String),
    #[error("worker pools: {0}")]
    Monitor(String),
    #[error(transparent)]
    Ledger(#[from] workflows::ledger::LedgerError),
}

/// Runs a worker per configured queue, plus the process's background duties (the ledger
/// recorder, the silence tick, queue-depth sampling), until `shutdown` resolves; then stops
/// them gracefully.
pub async fn run_pools(
    ctx: Context,
    config: PoolConfig,
    shutdown: impl Future<Output = std::io::Result<()>> + Send + 'static,
) -> Result<(), PoolError> {
    let mut monitor = Monitor::new();
    for queue in &config.queues {
        let register = Register {
            monitor,
            ctx: &ctx,
            config: &config,
        };
        monitor =
            for_kind(queue, register).ok_or_else(|| PoolError::UnknownQueue(queue.clone()))?;
    }
    let stop = CancellationToken::new();
    let mut duties = tokio::task::JoinSet::new();
    for index in 0..config.ledger_recorders {
        let recorder = Recorder::new(
            ctx.ledger_db.clone(),
            ctx.engine.clone(),
            RecorderConfig::new(format!("{}-{index}", config.worker_id)),
        )
        .await?;
        duties.spawn(recorder.run(stop.clone().cancelled_owned()));
    }
    if config.queues.iter().any(|q| q == SilenceCheck::KIND) {
        let (engine, period) = (ctx.engine.clone(), config.silence_every);
        duties.spawn(every(period, stop.clone(), move || {
            let engine = engine.clone();
            async move {
                if let Err(e) = silence_check::schedule_tick(&engine, period).await {
                    tracing::warn!(error = %e, "silence tick not scheduled");
                }
            }
        }));
    }
    if let Some(scheduler) = config.scheduler.clone() {
        let scheduler = Scheduler::new(ctx.db.clone(), ctx.engine.clone(), scheduler);
        duties.spawn(scheduler.run(stop.clone().cancelled_owned()));
    }
    if let Some(every) = config.sample_depth_every {
        let sampler = metrics::sample_depth(ctx.engine.clone(), config.queues.clone(), every);
        let stop = stop.clone();
        duties.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = sampler => {}
            }
        });
    }
    if let Some((retain, period)) = config.retention.clone() {
        let db = ctx.db.clone();
        duties.spawn(every(period, stop.clone(), move || {
            let (db, retain) = (db.clone(), retain.clone());
            async move {
                match retention::sweep(&db, &retain).await {
                    Ok(swept) => tracing::info!(?swept, "retention sweep"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
                }
                match statistics::refresh_if_unattended(&db).await {
                    Ok(true) => tracing::warn!(
                        tables = ?statistics::GROWING_TABLES,
                        "PostgreSQL's autovacuum is off: analyzed the growing tables (turn it on: it also vacuums them)"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "analyzing the growing tables failed"),
                }
            }
        }));
    }
    tracing::info!(queues = ?config.queues, concurrency = config.concurrency, ledger_recorders = config.ledger_recorders, "worker pools starting");
    let result = monitor
        .run_with_signal(shutdown)
        .await
        .map_err(|e| PoolError::Monitor(e.to_string()));
    stop.cancel();
    while duties.join_next().await.is_some() {}
    result
}

/// Runs `duty` every `period` (the first time at once) until `stop`.
async fn every<F, Fut>(period: Duration, stop: CancellationToken, mut duty: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => duty().await,
        }
    }
}
