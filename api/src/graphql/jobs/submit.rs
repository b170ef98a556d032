//! Submitting jobs (validated at the field they break) and cancelling them.

use std::time::Duration;

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use queue::{CancelOutcome, KeyScope, NewJob};
use workflows::jobs::ingest::Ingest;

use super::{Job, JobControls, JobDetail, JobKind, JobPriority, find, ms_time};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    graphql::{require, shared},
    state::Shared,
};

/// Items `submitJobs` takes in one call.
pub const MAX_BATCH: usize = 1000;

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
    /// Default: normal. A higher level is leased first within the job's queue.
    pub priority: Option<JobPriority>,
    /// How long one attempt may run, in milliseconds (1 ms to 7 days; default: the kind's).
    /// Past it the attempt is asked to stop, then abandoned and retried.
    pub timeout_ms: Option<i64>,
    /// What the queue's per-key concurrency and rate limits count this job under (a
    /// sensor, a webhook host); 1 to 200 bytes.
    pub limit_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct SubmitResult {
    pub job: Job,
    /// An earlier submission with the same idempotency key answered for this one.
    pub duplicate: bool,
}

/// An ingest job under a ULID chosen here, which also names the workflow run it starts (and
/// rides on every job of that run). GraphQL and the device endpoint both submit through it.
pub(crate) fn ingest_job(ingest: &Ingest) -> ApiResult<NewJob> {
    Ok(workflows::jobs::ingest_submission(ingest)?)
}

/// Validates one input into the job to push; errors name the input's path (`inputs.3...`).
pub(crate) fn build(input: &SubmitJobInput, path: &str) -> ApiResult<NewJob> {
    let mut job = workflows::jobs::submission(input.kind.name(), input.payload.0.clone())
        .map_err(|e| ApiError::bad_input(format!("{path}.{}", e.field), e.message))?;
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
    if let Some(priority) = input.priority {
        job = job.with_priority(priority.into());
    }
    if let Some(ms) = input.timeout_ms {
        if ms < 1 || ms as u128 > queue::MAX_TIMEOUT.as_millis() {
            return Err(ApiError::bad_input(
                format!("{path}.timeoutMs"),
                "a timeout is from 1 ms to 7 days (604800000 ms)",
            ));
        }
        job = job.with_timeout(Duration::from_millis(ms as u64));
    }
    if let Some(key) = &input.limit_key {
        if key.is_empty() || key.len() > queue::MAX_LIMIT_KEY_BYTES {
            return Err(ApiError::bad_input(
                format!("{path}.limitKey"),
                "a limit key has 1 to 200 bytes",
            ));
        }
        crate::auth::reject_nul(&format!("{path}.limitKey"), key)?;
        job = job.with_limit_key(key);
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
    let settings: Vec<(u32, queue::Priority, JobControls)> = jobs
        .iter()
        .map(|j| {
            let controls = JobControls {
                timeout_ms: j.timeout.map(|t| t.as_millis() as u64),
                limit_key: j.limit_key.clone(),
                waiting_for_key: false,
                attempt_deadline: None,
            };
            (j.max_attempts, j.priority, controls)
        })
        .collect();
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
        .zip(settings)
        .map(
            |((outcome, (kind, run_at_ms)), (max_attempts, priority, controls))| {
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
                            priority,
                            progress: None,
                            controls: Some(controls),
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
            },
        )
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
