//! Queues, workers and circuit breakers: the counts an operator watches, `queueStats` (the
//! same counts pushed every second), and the queue controls: pause, resume, drain.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use async_graphql::{Context, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use queue::{Engine, QueueStats};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{jobs::ms_time, require, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    state::SharedState,
};

/// One queue's counts.
#[derive(Debug, Clone, PartialEq, SimpleObject)]
pub struct Queue {
    pub name: String,
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    /// Jobs that succeeded, since the deployment began.
    pub completed: u64,
    /// Jobs that went dead (permanent errors and exhausted retries), since it began.
    pub failed: u64,
    pub retried: u64,
    pub cancelled: u64,
    /// Jobs finished (succeeded or dead) per minute, over the last minute.
    pub throughput_per_minute: f64,
    /// Whether workers are held from leasing its jobs (`pauseQueue`).
    pub paused: bool,
    pub paused_since: Option<DateTime<Utc>>,
    /// How long the next job to run has waited since it became runnable, in milliseconds;
    /// null when none is ready. High on a queue that is not paused: too few or stuck workers.
    pub oldest_ready_age_ms: Option<u64>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Worker {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub queues: Vec<String>,
    pub concurrency: u32,
    pub in_flight: u32,
    pub started_at: DateTime<Utc>,
    pub last_beat_at: DateTime<Utc>,
}

/// A destination whose circuit breaker is not closed.
#[derive(Debug, Clone, SimpleObject)]
pub struct CircuitBreaker {
    /// `host:port`.
    pub name: String,
    /// `OPEN` or `HALF_OPEN`.
    pub state: String,
    pub failures: u32,
    pub opened_at: DateTime<Utc>,
    pub open_until: DateTime<Utc>,
}

/// Samples of finished-job totals, for throughput.
#[derive(Debug, Default)]
struct History {
    samples: VecDeque<(std::time::Instant, Vec<(String, u64)>)>,
}

/// Reads every queue's counts once per period and shares them with every `queueStats`
/// subscriber of the process, so a thousand dashboards cost Redis one read a second.
#[derive(Debug, Clone)]
pub struct QueueWatch {
    latest: watch::Receiver<Arc<Vec<Queue>>>,
    history: Arc<std::sync::Mutex<History>>,
}

fn finished(stats: &QueueStats) -> u64 {
    stats.succeeded_total + stats.failed_total
}

impl QueueWatch {
    pub fn start(engine: Engine, period: Duration, stop: CancellationToken) -> Self {
        let (tx, latest) = watch::channel(Arc::new(Vec::new()));
        let watch = Self {
            latest,
            history: Arc::default(),
        };
        let sampler = watch.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                match sampler.read(&engine).await {
                    Ok(queues) => {
                        let _ = tx.send(Arc::new(queues));
                    }
                    Err(e) => tracing::debug!(error = %e, "queue stats not read"),
                }
            }
        });
        watch
    }

    /// Every queue's counts now, with throughput from the samples of the last minute.
    pub async fn read(&self, engine: &Engine) -> Result<Vec<Queue>, queue::QueueError> {
        // Concurrent: the shared connection pipelines them into one burst.
        let (stats, ages) = futures::future::try_join(
            futures::future::try_join_all(runtime::QUEUES.map(|name| engine.stats(name))),
            futures::future::try_join_all(
                runtime::QUEUES.map(|name| engine.oldest_ready_age(name)),
            ),
        )
        .await?;
        let now = std::time::Instant::now();
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        while history
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > Duration::from_secs(60))
        {
            history.samples.pop_front();
        }
        let oldest = history.samples.front().cloned();
        history.samples.push_back((
            now,
            stats
                .iter()
                .map(|s| (s.queue.clone(), finished(s)))
                .collect(),
        ));
        Ok(stats
            .into_iter()
            .zip(ages)
            .map(|(s, age)| {
                let throughput = oldest
                    .as_ref()
                    .and_then(|(at, totals)| {
                        let minutes = now.duration_since(*at).as_secs_f64() / 60.0;
                        let before = totals.iter().find(|(q, _)| *q == s.queue)?.1;
                        (minutes > 0.0)
                            .then(|| finished(&s).saturating_sub(before) as f64 / minutes)
                    })
                    .unwrap_or(0.0);
                Queue {
                    name: s.queue.clone(),
                    ready: s.ready,
                    scheduled: s.scheduled,
                    running: s.running,
                    dead: s.dead,
                    completed: s.succeeded_total,
                    failed: s.failed_total,
                    retried: s.retried_total,
                    cancelled: s.cancelled_total,
                    throughput_per_minute: (throughput * 10.0).round() / 10.0,
                    paused: s.paused_since_ms.is_some(),
                    paused_since: s.paused_since_ms.map(ms_time),
                    oldest_ready_age_ms: age.map(|a| a.as_millis() as u64),
                }
            })
            .collect())
    }

    pub fn updates(&self) -> impl Stream<Item = Arc<Vec<Queue>>> + Send + 'static {
        futures::stream::unfold(self.latest.clone(), |mut rx| async move {
            rx.changed().await.ok()?;
            let value = rx.borrow_and_update().clone();
            Some((value, rx))
        })
    }
}

#[derive(Default)]
pub struct QueueQuery;

#[Object]
impl QueueQuery {
    /// Every queue's counts, read now.
    async fn queues(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Queue>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let queues = shared
            .redis(shared.queue_watch.read(&shared.engine))
            .await?;
        Ok(queues)
    }

    /// Worker processes that reported in the last two minutes.
    async fn workers(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Worker>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let workers = shared.redis(shared.engine.workers()).await?;
        Ok(workers
            .into_iter()
            .map(|w| Worker {
                id: w.id,
                host: w.host,
                pid: w.pid,
                queues: w.queues,
                concurrency: w.concurrency,
                in_flight: w.in_flight,
                started_at: ms_time(w.started_at_ms),
                last_beat_at: ms_time(w.last_beat_ms),
            })
            .collect())
    }

    /// Destinations whose circuit breaker is open or half-open.
    async fn circuit_breakers(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<CircuitBreaker>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let breakers = shared.redis(shared.engine.breakers()).await?;
        Ok(breakers
            .into_iter()
            .map(|b| CircuitBreaker {
                name: b.name,
                state: b.state.to_uppercase(),
                failures: b.failures,
                opened_at: ms_time(b.opened_at_ms),
                open_until: ms_time(b.open_until_ms),
            })
            .collect())
    }
}

#[derive(Default)]
pub struct QueueSubscription;

#[Subscription]
impl QueueSubscription {
    /// Every queue's counts, every second (`QUEUE_STATS_MS`).
    async fn queue_stats(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = Vec<Queue>>> {
        require(ctx, Role::Viewer)?;
        Ok(shared(ctx)
            .queue_watch
            .updates()
            .map(|queues| queues.as_ref().clone()))
    }
}

/// How many waiting jobs one drain script call cancels: Redis is never held long.
const DRAIN_CHUNK: usize = 500;

/// `name` if it is one of the deployment's queues.
pub(super) fn known_queue(name: &str) -> ApiResult<&'static str> {
    runtime::QUEUES
        .iter()
        .copied()
        .find(|q| *q == name)
        .ok_or_else(|| {
            ApiError::bad_input(
                "name",
                format!(
                    "no queue is named {name:?}; the queues are {}",
                    runtime::QUEUES.join(", ")
                ),
            )
        })
}

async fn queue_now(shared: &SharedState, name: &str) -> ApiResult<Queue> {
    let queues = shared
        .redis(shared.queue_watch.read(&shared.engine))
        .await?;
    queues
        .into_iter()
        .find(|q| q.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no queue is named {name:?}")))
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Holds workers from leasing the queue's jobs (operator): jobs running now finish, pushes
    /// are still taken, retries and schedules still fall due; nothing is lost. Audited.
    async fn pause_queue(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Queue> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let queue = known_queue(&name)?;
        let changed = shared.redis(shared.engine.pause(queue)).await?;
        shared
            .audit(
                &shared.db,
                Some(session.user_id),
                "queue.pause",
                &format!("queue:{queue}"),
                serde_json::json!({ "was_paused": !changed }),
            )
            .await?;
        tracing::info!(queue, user = session.user_id, "queue paused");
        Ok(queue_now(shared, queue).await?)
    }

    /// Lets workers lease the queue's jobs again, at once (operator). Audited.
    async fn resume_queue(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Queue> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let queue = known_queue(&name)?;
        let changed = shared.redis(shared.engine.resume(queue)).await?;
        shared
            .audit(
                &shared.db,
                Some(session.user_id),
                "queue.resume",
                &format!("queue:{queue}"),
                serde_json::json!({ "was_paused": changed }),
            )
            .await?;
        tracing::info!(queue, user = session.user_id, "queue resumed");
        Ok(queue_now(shared, queue).await?)
    }

    /// Cancels every job waiting on the queue, ready or scheduled (admin); running jobs
    /// finish. Each job is recorded as cancelled. Answers how many were cancelled. Audited.
    async fn drain_queue(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<u64> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let queue = known_queue(&name)?;
        // Not bounded by the Redis timeout: a deep queue takes many bounded calls.
        let cancelled = shared
            .engine
            .drain(queue, DRAIN_CHUNK)
            .await
            .map_err(ApiError::from)?;
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "queue.drain",
                &format!("queue:{queue}"),
                serde_json::json!({ "cancelled": cancelled }),
            )
            .await?;
        tracing::info!(queue, user = admin.user_id, cancelled, "queue drained");
        Ok(cancelled)
    }
}
