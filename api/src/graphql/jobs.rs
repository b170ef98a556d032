//! Jobs: look up, list, submit (one or a thousand at a time), cancel, and watch live.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, TimeZone, Utc};
use entities::{job_attempts, jobs};
use futures::{Stream, StreamExt};
use queue::{CancelOutcome, JobEvent, JobRecord, KeyScope, NewJob};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use tokio::sync::OnceCell;
use workflows::{
    BackgroundJob, decode_payload,
    jobs::{alert::Alert, evaluate::Evaluate, ingest::Ingest, notify::Notify},
};

use super::{page, require, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    hub::{JobFilter, event_run},
    state::Shared,
};

/// Items `submitJobs` takes in one call.
pub const MAX_BATCH: usize = 1000;

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

/// The rest of a job, loaded only when asked for (a subscription event carries the basics).
#[derive(Debug, Clone)]
struct JobDetail {
    max_attempts: u32,
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

#[derive(Debug, Clone, Default, InputObject)]
pub struct JobsFilter {
    pub kinds: Option<Vec<JobKind>>,
    pub states: Option<Vec<JobState>>,
    pub workflow_run_id: Option<ID>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct JobQuery;

#[Object]
impl JobQuery {
    /// A job by id, or null when nothing has that id.
    async fn job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Job>> {
        require(ctx, Role::Viewer)?;
        Ok(find(shared(ctx), &id).await?)
    }

    /// Jobs from the ledger, newest first. The ledger follows Redis a moment behind: subscribe
    /// from `eventCursor` to keep the rows current.
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        filter: Option<JobsFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<Job>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let limit = page::first(first)?;
        let event_cursor = page::event_cursor(&shared.engine).await;
        let filter = filter.unwrap_or_default();
        let mut query = jobs::Entity::find().order_by_desc(jobs::Column::Id);
        if let Some(kinds) = &filter.kinds {
            query = query.filter(jobs::Column::Kind.is_in(kinds.iter().map(|k| k.name())));
        }
        if let Some(states) = &filter.states {
            query = query.filter(
                jobs::Column::State
                    .is_in(states.iter().map(|s| queue::JobState::from(*s).as_str())),
            );
        }
        if let Some(run) = &filter.workflow_run_id {
            query = query.filter(jobs::Column::WorkflowRunId.eq(run.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(jobs::Column::CreatedAt.gte(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(jobs::Column::CreatedAt.lt(until));
        }
        if let Some(after) = &after {
            query = query.filter(jobs::Column::Id.lt(after.as_str()));
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            event_cursor,
            |row| row.id.clone(),
            Job::from_row,
        )
        .await?)
    }
}

#[derive(Debug, Clone, InputObject)]
pub struct SubmitJobInput {
    pub kind: JobKind,
    /// The kind's payload; checked before anything is queued.
    pub payload: Json<serde_json::Value>,
    /// Submitting again with the same key within 24 h answers the first job
    /// (`duplicate: true`) and queues nothing.
    pub idempotency_key: Option<String>,
    /// 1 to 100 (default: the kind's policy).
    pub max_attempts: Option<i32>,
    /// Run no earlier than this.
    pub run_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct SubmitResult {
    pub job: Job,
    /// An earlier submission with the same idempotency key answered for this one.
    pub duplicate: bool,
}

/// Decodes and validates `payload` as a `J`; errors name the field under `{path}.payload`.
fn decoded<J: BackgroundJob>(payload: serde_json::Value, path: &str) -> ApiResult<J> {
    decode_payload(payload).map_err(|e| {
        let field = if e.field == "payload" {
            format!("{path}.payload")
        } else {
            format!("{path}.payload.{}", e.field)
        };
        ApiError::bad_input(field, e.message)
    })
}

/// The job to push for a valid payload, with its kind's version and attempts.
fn new_job<J: BackgroundJob>(job: &J) -> ApiResult<NewJob> {
    Ok(job.to_submission()?)
}

fn typed<J: BackgroundJob>(payload: serde_json::Value, path: &str) -> ApiResult<NewJob> {
    new_job(&decoded::<J>(payload, path)?)
}

/// An ingest job under a ULID chosen here, which also names the workflow run it starts (and
/// rides on every job of that run). GraphQL and the device endpoint both submit through it.
pub(crate) fn ingest_job(ingest: &Ingest) -> ApiResult<NewJob> {
    let id = ulid::Ulid::new().to_string();
    Ok(new_job(ingest)?.with_id(&id).with_workflow_id(&id))
}

/// Validates one input into the job to push; errors name the input's path (`inputs.3...`).
pub(crate) fn build(input: &SubmitJobInput, path: &str) -> ApiResult<NewJob> {
    let payload = input.payload.0.clone();
    let mut job = match input.kind {
        JobKind::Ingest => ingest_job(&decoded::<Ingest>(payload, path)?)?,
        JobKind::Evaluate => typed::<Evaluate>(payload, path)?,
        JobKind::Alert => typed::<Alert>(payload, path)?,
        JobKind::Notify => typed::<Notify>(payload, path)?,
        JobKind::SilenceCheck => {
            return Err(ApiError::bad_input(
                format!("{path}.kind"),
                "silence checks are scheduled by the workers; submit INGEST, EVALUATE, ALERT or NOTIFY",
            ));
        }
    };
    if let Some(max) = input.max_attempts {
        if !(1..=100).contains(&max) {
            return Err(ApiError::bad_input(
                format!("{path}.maxAttempts"),
                "maxAttempts must be between 1 and 100",
            ));
        }
        job = job.with_max_attempts(max as u32);
    }
    if let Some(key) = &input.idempotency_key {
        if key.is_empty() || key.len() > 512 {
            return Err(ApiError::bad_input(
                format!("{path}.idempotencyKey"),
                "an idempotency key has 1 to 512 bytes",
            ));
        }
        crate::auth::reject_nul(&format!("{path}.idempotencyKey"), key)?;
        job = job.with_idempotency_key(submitter_key(key), KeyScope::For(None));
    }
    if let Some(run_at) = input.run_at {
        let ms = run_at.timestamp_millis();
        if ms < 0 {
            return Err(ApiError::bad_input(
                format!("{path}.runAt"),
                "runAt must be after 1970",
            ));
        }
        job = job.with_run_at_ms(ms as u64);
    }
    Ok(job)
}

/// The namespace of idempotency keys given by GraphQL submitters. Devices' keys live under
/// `device:<id>:` and the pipeline's own (`sensor:…`, alert keys) under theirs, so a submitter
/// can neither answer for a device's submission nor hold back the pipeline's deduplication.
pub const SUBMITTER_KEYS: &str = "api:";

fn submitter_key(key: &str) -> String {
    format!("{SUBMITTER_KEYS}{key}")
}

/// Pushes, answering `UNAVAILABLE` if Redis does not within the configured time. A push that
/// timed out may still have happened: idempotency keys make the client's retry safe.
pub(crate) async fn push_all(shared: &Shared, jobs: Vec<NewJob>) -> ApiResult<Vec<SubmitResult>> {
    let described: Vec<(String, Option<u64>)> =
        jobs.iter().map(|j| (j.kind.clone(), j.run_at_ms)).collect();
    let max_attempts: Vec<u32> = jobs.iter().map(|j| j.max_attempts).collect();
    let pushed = tokio::time::timeout(
        shared.config.redis_timeout() + Duration::from_millis(500),
        shared.engine.push_many(jobs),
    )
    .await
    .map_err(|_| ApiError::unavailable("the job queue (Redis) did not answer in time", 2))??;
    let now = Utc::now();
    Ok(pushed
        .into_iter()
        .zip(described)
        .zip(max_attempts)
        .map(|((outcome, (kind, run_at_ms)), max_attempts)| {
            let job = if outcome.duplicate {
                // The existing job's details load if asked for.
                Job::with_detail(outcome.id, kind, queue::JobState::Queued, 0, None)
            } else {
                let run_at = run_at_ms.map(ms_time).filter(|t| *t > now);
                let state = if run_at.is_some() {
                    queue::JobState::Scheduled
                } else {
                    queue::JobState::Queued
                };
                let id = outcome.id;
                Job::with_detail(
                    id.clone(),
                    kind.clone(),
                    state,
                    0,
                    Some(JobDetail {
                        max_attempts,
                        round: 0,
                        payload: serde_json::Value::Null,
                        result: None,
                        last_error: None,
                        idempotency_key: None,
                        workflow_run_id: workflows::run_of(&kind, &id, None).map(str::to_owned),
                        run_at,
                        next_run_at: run_at,
                        created_at: now,
                        updated_at: now,
                        errors: Vec::new(),
                    }),
                )
            };
            SubmitResult {
                job,
                duplicate: outcome.duplicate,
            }
        })
        .collect())
}

#[derive(Default)]
pub struct JobMutation;

#[Object]
impl JobMutation {
    /// Queues one job (operator). A payload that does not fit its kind is refused with
    /// `BAD_USER_INPUT` naming the field, and nothing is queued.
    async fn submit_job(
        &self,
        ctx: &Context<'_>,
        input: SubmitJobInput,
    ) -> async_graphql::Result<SubmitResult> {
        require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let job = build(&input, "input")?;
        let mut submitted = push_all(shared, vec![job]).await?;
        let mut result = submitted
            .pop()
            .ok_or_else(|| ApiError::internal("push answered nothing"))?;
        // Answer with the job as stored (its payload and key), not only what was sent.
        if let Some(stored) = find(shared, &result.job.id).await? {
            result.job = stored;
        }
        Ok(result)
    }

    /// Queues up to 1,000 jobs (operator). All are validated first: one bad item refuses the
    /// whole call, naming it (`inputs.3.payload.readings.0.ts`). Then one Redis round trip per
    /// chunk; a chunk is atomic, the call is not, so give items idempotency keys to retry safely.
    async fn submit_jobs(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<SubmitJobInput>,
    ) -> async_graphql::Result<Vec<SubmitResult>> {
        require(ctx, Role::Operator)?;
        if inputs.len() > MAX_BATCH {
            return Err(ApiError::limit(format!(
                "submitJobs takes at most {MAX_BATCH} inputs per call, got {}",
                inputs.len()
            ))
            .into());
        }
        let jobs = inputs
            .iter()
            .enumerate()
            .map(|(i, input)| build(input, &format!("inputs.{i}")))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(push_all(shared(ctx), jobs).await?)
    }

    /// Cancels a waiting job at once, or asks a running one to stop (operator).
    async fn cancel_job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Job> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let outcome = shared.redis(shared.engine.cancel(&id)).await?;
        match outcome {
            CancelOutcome::Cancelled | CancelOutcome::Requested => {}
            CancelOutcome::NotCancellable(state) => {
                return Err(ApiError::bad_input(
                    "id",
                    format!("the job is {state}: only waiting or running jobs can be cancelled"),
                )
                .into());
            }
            CancelOutcome::Missing => {
                return Err(match find(shared, &id).await? {
                    Some(job) => ApiError::bad_input(
                        "id",
                        format!(
                            "the job is {}: only waiting or running jobs can be cancelled",
                            job.state
                        ),
                    ),
                    None => ApiError::not_found(format!("no job has id {}", id.as_str())),
                }
                .into());
            }
        }
        tracing::info!(job_id = %id.as_str(), user = session.user_id, "job cancel requested");
        find(shared, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job has id {}", id.as_str())).into())
    }
}

#[derive(Debug, Clone, Default, InputObject)]
pub struct JobUpdatesFilter {
    pub ids: Option<Vec<ID>>,
    pub kinds: Option<Vec<JobKind>>,
    pub states: Option<Vec<JobState>>,
    pub workflow_run_id: Option<ID>,
}

impl From<JobUpdatesFilter> for JobFilter {
    fn from(f: JobUpdatesFilter) -> Self {
        JobFilter {
            ids: f
                .ids
                .map(|ids| ids.into_iter().map(|id| id.0).collect::<HashSet<_>>()),
            kinds: f.kinds.map(|kinds| {
                kinds
                    .into_iter()
                    .map(|k| k.name().to_owned())
                    .collect::<HashSet<_>>()
            }),
            states: f.states.map(|states| {
                states
                    .into_iter()
                    .map(queue::JobState::from)
                    .collect::<HashSet<_>>()
            }),
            workflow_run_id: f.workflow_run_id.map(|id| id.0),
        }
    }
}

/// One transition of one job.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct JobUpdate {
    /// The stream position: resubscribe with `after: cursor` to resume right after it.
    pub cursor: String,
    pub job: Job,
    /// `enqueued`, `scheduled`, `promoted`, `started`, `succeeded`, `retry_scheduled`,
    /// `lease_expired`, `snoozed`, `died`, `cancelled`, `requeued`, `released`, `discarded`.
    pub event: String,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    run: Option<String>,
}

#[ComplexObject]
impl JobUpdate {
    async fn workflow_run_id(&self) -> Option<ID> {
        self.run.clone().map(ID)
    }
}

impl From<&JobEvent> for JobUpdate {
    fn from(event: &JobEvent) -> Self {
        Self {
            cursor: event.cursor.clone(),
            job: Job::from_event(event),
            event: event.event.clone(),
            at: ms_time(event.at_ms),
            error: event.error.clone(),
            next_run_at: event.next_run_at_ms.map(ms_time),
            run: event_run(event).map(str::to_owned),
        }
    }
}

fn valid_cursor(cursor: &str) -> bool {
    let mut parts = cursor.splitn(2, '-');
    let ms = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let seq = parts
        .next()
        .is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ms && seq && cursor.len() <= 42
}

#[derive(Default)]
pub struct JobSubscription;

#[Subscription]
impl JobSubscription {
    /// Every transition of the jobs the filter matches. With `after` (a `cursor` or a list's
    /// `eventCursor`), first what the stream holds after it, then live: no gap, no repeat.
    async fn job_updates(
        &self,
        ctx: &Context<'_>,
        filter: Option<JobUpdatesFilter>,
        after: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<JobUpdate>>> {
        require(ctx, Role::Viewer)?;
        if let Some(after) = &after
            && !valid_cursor(after)
        {
            return Err(ApiError::bad_input("after", "not an event cursor").into());
        }
        let filter = JobFilter::from(filter.unwrap_or_default());
        Ok(shared(ctx)
            .hub
            .job_updates(filter, after)
            .map(|item| match item {
                Ok(event) => Ok(JobUpdate::from(event.as_ref())),
                Err(e) => Err(e.into()),
            }))
    }
}
