//! Jobs: look up, list, submit (one or a thousand at a time), cancel, and watch live. This
//! module is the job as a client sees it; `query`, `submit` and `updates` hold the operations.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use entities::{job_attempts, jobs};
use queue::{JobEvent, JobRecord};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::OnceCell;
use workflows::{
    BackgroundJob,
    jobs::{alert::Alert, evaluate::Evaluate, ingest::Ingest, notify::Notify},
};

use super::{page, shared};
use crate::{
    error::{ApiError, ApiResult},
    state::Shared,
};

mod query;
mod submit;
mod updates;

pub use query::{JobQuery, JobsFilter};
pub use submit::{JobMutation, MAX_BATCH, SUBMITTER_KEYS, SubmitJobInput, SubmitResult};
pub(crate) use submit::{ingest_job, push_all};
pub use updates::{JobSubscription, JobUpdate, JobUpdatesFilter};

/// How soon a job runs among the ready jobs of its queue: a higher level is leased first, and
/// a lower one waits at most a minute per level behind a steady stream of higher ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Default)]
pub enum JobPriority {
    High,
    #[default]
    Normal,
    Low,
}

impl From<JobPriority> for queue::Priority {
    fn from(p: JobPriority) -> Self {
        match p {
            JobPriority::High => queue::Priority::High,
            JobPriority::Normal => queue::Priority::Normal,
            JobPriority::Low => queue::Priority::Low,
        }
    }
}

impl From<queue::Priority> for JobPriority {
    fn from(p: queue::Priority) -> Self {
        match p {
            queue::Priority::High => JobPriority::High,
            queue::Priority::Normal => JobPriority::Normal,
            queue::Priority::Low => JobPriority::Low,
        }
    }
}

/// How far a running attempt said it had got.
#[derive(Debug, Clone, PartialEq, Eq, async_graphql::SimpleObject)]
pub struct JobProgress {
    /// 0 to 100.
    pub percent: u8,
    pub message: String,
}

/// The kinds of the sensor pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
pub enum JobKind {
    Ingest,
    Evaluate,
    Alert,
    Notify,
    /// Scheduled by the workers themselves; not submittable.
    SilenceCheck,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Ingest => Ingest::KIND,
            JobKind::Evaluate => Evaluate::KIND,
            JobKind::Alert => Alert::KIND,
            JobKind::Notify => Notify::KIND,
            JobKind::SilenceCheck => workflows::jobs::silence_check::SilenceCheck::KIND,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [
            JobKind::Ingest,
            JobKind::Evaluate,
            JobKind::Alert,
            JobKind::Notify,
            JobKind::SilenceCheck,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// Where a job is in its lifecycle (the state table in `docs/design.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[graphql(remote = "queue::JobState")]
pub enum JobState {
    /// Waiting in its queue's ready list.
    Queued,
    /// Waiting for its run time (submitted with `runAt`, or snoozed).
    Scheduled,
    /// Leased by a worker.
    Running,
    /// Failed an attempt; the next one is scheduled at `nextRunAt`.
    Retrying,
    Succeeded,
    /// Out of attempts, or failed permanently: in the dead-job store until requeued.
    Dead,
    Cancelled,
}

/// A job. `job(id)` answers from Redis while the job is live and from the SQL ledger after.
pub struct Job {
    pub id: String,
    pub kind: String,
    pub state: queue::JobState,
    pub attempt: u32,
    detail: OnceCell<Option<Arc<JobDetail>>>,
}

/// A live job's execution timeout and limit key.
#[derive(Debug, Clone, SimpleObject)]
pub struct JobControls {
    /// Its own timeout per attempt, in milliseconds (null: its kind's).
    pub timeout_ms: Option<u64>,
    /// The key its queue's per-key limits count it under.
    pub limit_key: Option<String>,
    /// Ready, but waiting for a running job of its limit key to end.
    pub waiting_for_key: bool,
    /// When the running attempt must have ended (it has a timeout).
    pub attempt_deadline: Option<DateTime<Utc>>,
}

/// The rest of a job, loaded only when asked for (a subscription event carries the basics).
#[derive(Debug, Clone)]
struct JobDetail {
    max_attempts: u32,
    priority: queue::Priority,
    /// While the job is live: its current attempt's latest progress.
    progress: Option<JobProgress>,
    /// While the job is live: its controls and where they hold it.
    controls: Option<JobControls>,
    round: u32,
    payload: serde_json::Value,
    result: Option<serde_json::Value>,
    last_error: Option<String>,
    idempotency_key: Option<String>,
    workflow_run_id: Option<String>,
    run_at: Option<DateTime<Utc>>,
    next_run_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Attempts' errors as Redis holds them (used while the ledger has no attempts yet).
    errors: Vec<queue::AttemptError>,
}

pub(crate) fn ms_time(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_default()
}

fn json_or_string(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

fn pending(state: queue::JobState) -> bool {
    matches!(
        state,
        queue::JobState::Scheduled | queue::JobState::Retrying
    )
}

impl Job {
    fn with_detail(
        id: String,
        kind: String,
        state: queue::JobState,
        attempt: u32,
        detail: Option<JobDetail>,
    ) -> Self {
        let cell = OnceCell::new();
        if let Some(detail) = detail {
            let _ = cell.set(Some(Arc::new(detail)));
        }
        Self {
            id,
            kind,
            state,
            attempt,
            detail: cell,
        }
    }

    pub fn from_record(record: JobRecord) -> Self {
        let workflow_run_id =
            workflows::run_of(&record.kind, &record.id, record.workflow_id.as_deref())
                .map(str::to_owned);
        let run_at = record.run_at_ms.map(ms_time);
        let detail = JobDetail {
            max_attempts: record.max_attempts,
            priority: record.priority,
            progress: record.progress.as_ref().map(|p| JobProgress {
                percent: p.percent,
                message: p.message.clone(),
            }),
            controls: Some(JobControls {
                timeout_ms: record.timeout_ms,
                limit_key: record.limit_key.clone(),
                waiting_for_key: record.waiting_for_key,
                attempt_deadline: record.attempt_deadline_ms.map(ms_time),
            }),
            round: record.requeues,
            payload: json_or_string(&record.payload),
            result: record.result.as_deref().map(json_or_string),
            last_error: record.last_error.clone(),
            idempotency_key: record.idempotency_key.clone(),
            workflow_run_id,
            run_at,
            next_run_at: run_at.filter(|_| pending(record.state)),
            created_at: ms_time(record.created_at_ms),
            updated_at: ms_time(record.updated_at_ms),
            errors: record.errors,
        };
        Self::with_detail(
            record.id,
            record.kind,
            record.state,
            record.attempt,
            Some(detail),
        )
    }

    pub fn from_row(row: jobs::Model) -> Self {
        let state = row.state.parse().unwrap_or(queue::JobState::Queued);
        let detail = JobDetail {
            max_attempts: row.max_attempts.max(0) as u32,
            priority: row.priority.parse().unwrap_or_default(),
            progress: None,
            controls: None,
            round: row.round.max(0) as u32,
            payload: row.payload,
            result: row.result,
            last_error: row.last_error,
            idempotency_key: row.idempotency_key,
            workflow_run_id: row.workflow_run_id,
            run_at: row.run_at,
            next_run_at: row.run_at.filter(|_| pending(state)),
            created_at: row.created_at,
            updated_at: row.updated_at,
            errors: Vec::new(),
        };
        Self::with_detail(
            row.id,
            row.kind,
            state,
            row.attempt.max(0) as u32,
            Some(detail),
        )
    }

    /// The basics from a transition; the rest loads if a client asks for it.
    pub fn from_event(event: &JobEvent) -> Self {
        Self::with_detail(
            event.job_id.clone(),
            event.kind.clone(),
            event.state,
            event.attempt,
            None,
        )
    }

    async fn detail(&self, ctx: &Context<'_>) -> ApiResult<Option<Arc<JobDetail>>> {
        let shared = shared(ctx);
        self.detail
            .get_or_try_init(|| async {
                Ok(find(shared, &self.id)
                    .await?
                    .and_then(|job| job.detail.get().cloned().flatten()))
            })
            .await
            .cloned()
    }
}

/// A job from Redis if it holds it, else from the ledger; Redis down means the ledger only.
pub(crate) async fn find(shared: &Shared, id: &str) -> ApiResult<Option<Job>> {
    match tokio::time::timeout(shared.config.redis_timeout(), shared.engine.job(id)).await {
        Ok(Ok(Some(record))) => return Ok(Some(Job::from_record(record))),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "job lookup: Redis failed, reading the ledger"),
        Err(_) => tracing::warn!("job lookup: Redis timed out, reading the ledger"),
    }
    Ok(jobs::Entity::find_by_id(id.to_owned())
        .one(&shared.db)
        .await?
        .map(Job::from_row))
}

/// One attempt of a job (of its current round: a requeue from dead starts at 1 again).
#[derive(Debug, Clone, SimpleObject)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended: `succeeded`, `retry_scheduled`, `died`, `snoozed`, `lease_expired`, ...
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub worker: Option<String>,
}

#[Object]
impl Job {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    /// The kind (`ingest`, `evaluate`, `alert`, `notify`, `silence_check`), as `JobKind`.
    async fn kind(&self) -> Option<JobKind> {
        JobKind::parse(&self.kind)
    }

    async fn state(&self) -> JobState {
        self.state.into()
    }

    /// The attempt running or last run (0 before the first).
    async fn attempt(&self) -> u32 {
        self.attempt
    }

    async fn max_attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<u32>> {
        Ok(self.detail(ctx).await?.map(|d| d.max_attempts))
    }

    async fn priority(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<JobPriority>> {
        Ok(self.detail(ctx).await?.map(|d| d.priority.into()))
    }

    /// Its timeout and limit key, and whether a limit holds it (while the job is in Redis).
    async fn controls(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<JobControls>> {
        Ok(self.detail(ctx).await?.and_then(|d| d.controls.clone()))
    }

    /// The latest progress its current attempt reported (while the job is in Redis).
    async fn progress(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<JobProgress>> {
        Ok(self.detail(ctx).await?.and_then(|d| d.progress.clone()))
    }

    /// Times an operator requeued it from dead.
    async fn round(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<u32>> {
        Ok(self.detail(ctx).await?.map(|d| d.round))
    }

    async fn payload(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Json<serde_json::Value>>> {
        Ok(self.detail(ctx).await?.map(|d| Json(d.payload.clone())))
    }

    async fn result(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Json<serde_json::Value>>> {
        Ok(self
            .detail(ctx)
            .await?
            .and_then(|d| d.result.clone().map(Json)))
    }

    async fn last_error(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.detail(ctx).await?.and_then(|d| d.last_error.clone()))
    }

    /// The key it was submitted with (devices' keys show with their `device:<id>:` scope,
    /// the pipeline's own with theirs).
    async fn idempotency_key(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.detail(ctx).await?.and_then(|d| {
            d.idempotency_key
                .as_deref()
                .map(|k| k.strip_prefix(SUBMITTER_KEYS).unwrap_or(k).to_owned())
        }))
    }

    async fn workflow_run_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ID>> {
        Ok(self
            .detail(ctx)
            .await?
            .and_then(|d| d.workflow_run_id.clone().map(ID)))
    }

    /// When it was set to run (submitted with `runAt`, snoozed or retrying).
    async fn run_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(self.detail(ctx).await?.and_then(|d| d.run_at))
    }

    /// When a waiting job (SCHEDULED or RETRYING) runs next.
    async fn next_run_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(self.detail(ctx).await?.and_then(|d| d.next_run_at))
    }

    async fn created_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(self.detail(ctx).await?.map(|d| d.created_at))
    }

    async fn updated_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<DateTime<Utc>>> {
        Ok(self.detail(ctx).await?.map(|d| d.updated_at))
    }

    /// Attempts of the current round, oldest first, from the ledger (or from Redis's error
    /// history while the ledger has not caught up).
    #[graphql(complexity = "page::list_complexity(page::expected::ATTEMPTS, child_complexity)")]
    async fn attempts(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Attempt>> {
        let shared = shared(ctx);
        let detail = self.detail(ctx).await?;
        let round = detail.as_ref().map_or(0, |d| d.round) as i32;
        let rows = job_attempts::Entity::find()
            .filter(job_attempts::Column::JobId.eq(&self.id))
            .filter(job_attempts::Column::Round.eq(round))
            .order_by_asc(job_attempts::Column::Attempt)
            .all(&shared.db)
            .await
            .map_err(ApiError::from)?;
        if rows.is_empty()
            && let Some(detail) = detail
        {
            return Ok(detail
                .errors
                .iter()
                .map(|e| Attempt {
                    attempt: e.attempt,
                    started_at: None,
                    ended_at: Some(ms_time(e.at)),
                    outcome: None,
                    error: Some(e.error.clone()),
                    worker: None,
                })
                .collect());
        }
        Ok(rows
            .into_iter()
            .map(|a| Attempt {
                attempt: a.attempt.max(0) as u32,
                started_at: Some(a.started_at),
                ended_at: a.ended_at,
                outcome: a.outcome,
                error: a.error,
                worker: a.worker,
            })
            .collect())
    }
}
