//! Dead jobs: list them, see them grouped by how they failed, requeue or discard them (admin).

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::dead_jobs;
use queue::{DeadFilter, DeadOpOutcome};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use workflows::ledger::{RequeueFromLedger, requeue_dead};

use super::{
    jobs::{Job, JobKind, find, ms_time},
    page, require, shared,
};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    state::Shared,
};

/// Ids `requeueDeadJobs` and `discardDeadJobs` take in one call.
const MAX_IDS: usize = 1000;

/// A job that ran out of attempts or failed permanently, as the ledger recorded it.
#[derive(Debug, Clone, SimpleObject)]
pub struct DeadJob {
    /// The job's id: `job(id)` has the rest.
    pub id: ID,
    pub kind: Option<JobKind>,
    pub error: String,
    /// Groups jobs that failed the same way (kind plus the error without numbers and ids).
    pub fingerprint: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub payload: Json<serde_json::Value>,
    /// Every attempt's error: `[{attempt, error, at}]`.
    pub errors: Json<serde_json::Value>,
    pub workflow_run_id: Option<ID>,
    pub died_at: DateTime<Utc>,
}

impl From<dead_jobs::Model> for DeadJob {
    fn from(d: dead_jobs::Model) -> Self {
        Self {
            id: ID(d.job_id),
            kind: JobKind::parse(&d.kind),
            error: d.error,
            fingerprint: d.fingerprint,
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            payload: Json(d.payload),
            errors: Json(d.errors),
            workflow_run_id: d.workflow_run_id.map(ID),
            died_at: d.died_at,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct DeadJobGroup {
    pub kind: Option<JobKind>,
    pub fingerprint: String,
    pub count: u64,
    pub sample_error: String,
    pub last_died_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, InputObject)]
pub struct DeadJobsFilter {
    pub kinds: Option<Vec<JobKind>>,
    pub fingerprint: Option<String>,
    /// Died at or after.
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, InputObject)]
pub struct RequeueDeadJobsFilter {
    pub kinds: Option<Vec<JobKind>>,
    pub fingerprint: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// These jobs only (at most 1,000); the other conditions are then ignored.
    pub ids: Option<Vec<ID>>,
}

fn kinds_or_all(kinds: Option<&Vec<JobKind>>) -> Vec<&'static str> {
    match kinds {
        Some(kinds) => kinds.iter().map(|k| k.name()).collect(),
        None => runtime::QUEUES.to_vec(),
    }
}

/// `<died at ms>:<job id>`: the keyset of the list, newest death first.
fn dead_cursor(d: &dead_jobs::Model) -> String {
    format!("{}:{}", d.died_at.timestamp_millis(), d.job_id)
}

fn parse_dead_cursor(after: &str) -> ApiResult<(DateTime<Utc>, String)> {
    let bad = || ApiError::bad_input("after", "not a cursor of this list");
    let (ms, id) = after.split_once(':').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let at = DateTime::<Utc>::from_timestamp_millis(ms).ok_or_else(bad)?;
    Ok((at, id.to_owned()))
}

#[derive(Default)]
pub struct DeadQuery;

#[Object]
impl DeadQuery {
    /// Dead jobs not yet requeued, most recent death first.
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn dead_jobs(
        &self,
        ctx: &Context<'_>,
        filter: Option<DeadJobsFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<DeadJob>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let limit = page::first(first)?;
        let event_cursor = page::event_cursor(&shared.engine).await;
        let filter = filter.unwrap_or_default();
        let mut query = dead_jobs::Entity::find()
            .filter(dead_jobs::Column::RequeuedAt.is_null())
            .order_by_desc(dead_jobs::Column::DiedAt)
            .order_by_desc(dead_jobs::Column::JobId);
        if let Some(kinds) = &filter.kinds {
            query = query.filter(dead_jobs::Column::Kind.is_in(kinds.iter().map(|k| k.name())));
        }
        if let Some(fp) = &filter.fingerprint {
            query = query.filter(dead_jobs::Column::Fingerprint.eq(fp.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(dead_jobs::Column::DiedAt.gte(since));
        }
        if let Some(after) = &after {
            let (at, id) = parse_dead_cursor(after)?;
            query = query.filter(
                Condition::any().add(dead_jobs::Column::DiedAt.lt(at)).add(
                    Condition::all()
                        .add(dead_jobs::Column::DiedAt.eq(at))
                        .add(dead_jobs::Column::JobId.lt(id)),
                ),
            );
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            event_cursor,
            dead_cursor,
            DeadJob::from,
        )
        .await?)
    }

    /// Dead jobs grouped by kind and error fingerprint, largest group first (from Redis, so
    /// exact to the moment).
    async fn dead_job_groups(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DeadJobGroup>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        // The queues' groups read concurrently: one pipelined burst on the shared connection.
        let per_queue = futures::future::try_join_all(
            runtime::QUEUES.map(|queue| shared.redis(shared.engine.dead_groups(queue))),
        )
        .await?;
        let mut groups: Vec<DeadJobGroup> = per_queue
            .into_iter()
            .flatten()
            .map(|g| DeadJobGroup {
                kind: JobKind::parse(&g.queue),
                fingerprint: g.fingerprint,
                count: g.count,
                sample_error: g.sample_error,
                last_died_at: ms_time(g.last_died_at_ms),
            })
            .collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        Ok(groups)
    }
}

#[derive(Default)]
pub struct DeadMutation;

#[Object]
impl DeadMutation {
    /// Requeues a dead job (admin): same id, its history kept, a new round of attempts. Works
    /// from the ledger's record if Redis lost the job.
    async fn requeue_dead_job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Job> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let outcome = requeue_dead(&shared.db, &shared.engine, &id)
            .await
            .map_err(ApiError::from)?;
        match outcome {
            RequeueFromLedger::Requeued | RequeueFromLedger::Restored => {}
            RequeueFromLedger::NotDead(state) => {
                return Err(ApiError::bad_input(
                    "id",
                    format!("the job is {state}, not dead: nothing to requeue"),
                )
                .into());
            }
            RequeueFromLedger::Unknown => {
                return Err(
                    ApiError::not_found(format!("no dead job has id {}", id.as_str())).into(),
                );
            }
        }
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "dead_job.requeue",
                &format!("job:{}", id.as_str()),
                json!({ "from": format!("{outcome:?}") }),
            )
            .await?;
        find(shared, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no job has id {}", id.as_str())).into())
    }

    /// Requeues every dead job matching the filter (admin); answers how many.
    async fn requeue_dead_jobs(
        &self,
        ctx: &Context<'_>,
        filter: RequeueDeadJobsFilter,
    ) -> async_graphql::Result<u64> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let count = if let Some(ids) = &filter.ids {
            if ids.len() > MAX_IDS {
                return Err(ApiError::limit(format!(
                    "requeueDeadJobs takes at most {MAX_IDS} ids per call"
                ))
                .into());
            }
            // One round trip for every id Redis holds; the ledger's record only for the rest.
            let ids: Vec<String> = ids.iter().map(|id| id.0.clone()).collect();
            let outcomes = shared.redis(shared.engine.requeue_dead(&ids)).await?;
            let mut count = 0u64;
            for (id, outcome) in ids.iter().zip(outcomes) {
                let requeued = match outcome {
                    DeadOpOutcome::Done => true,
                    DeadOpOutcome::NotDead(_) => false,
                    DeadOpOutcome::Missing => matches!(
                        requeue_dead(&shared.db, &shared.engine, id)
                            .await
                            .map_err(ApiError::from)?,
                        RequeueFromLedger::Restored | RequeueFromLedger::Requeued
                    ),
                };
                count += u64::from(requeued);
            }
            count
        } else {
            let mut count = 0u64;
            for queue in kinds_or_all(filter.kinds.as_ref()) {
                let dead = DeadFilter {
                    queue: queue.to_owned(),
                    since_ms: filter.since.map(|t| t.timestamp_millis().max(0) as u64),
                    until_ms: None,
                    fingerprint: filter.fingerprint.clone(),
                };
                count += shared
                    .engine
                    .requeue_dead_matching(&dead, 500)
                    .await
                    .map_err(ApiError::from)?;
            }
            count
        };
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "dead_job.requeue_many",
                "jobs",
                json!({
                    "count": count,
                    "kinds": filter.kinds.as_ref().map(|k| k.iter().map(|k| k.name()).collect::<Vec<_>>()),
                    "fingerprint": filter.fingerprint,
                    "since": filter.since,
                    "ids": filter.ids.as_ref().map(|ids| ids.len()),
                }),
            )
            .await?;
        Ok(count)
    }

    /// Deletes a dead job for good (admin).
    async fn discard_dead_job(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let outcome = discard(shared, std::slice::from_ref(&id.0))
            .await?
            .pop()
            .unwrap_or(DeadOpOutcome::Missing);
        match outcome {
            DeadOpOutcome::Done => {}
            DeadOpOutcome::NotDead(state) => {
                return Err(ApiError::bad_input(
                    "id",
                    format!("the job is {state}, not dead: only dead jobs can be discarded"),
                )
                .into());
            }
            DeadOpOutcome::Missing => {
                return Err(
                    ApiError::not_found(format!("no dead job has id {}", id.as_str())).into(),
                );
            }
        }
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "dead_job.discard",
                &format!("job:{}", id.as_str()),
                json!({}),
            )
            .await?;
        Ok(true)
    }

    /// Deletes up to 1,000 dead jobs for good (admin); answers how many were dead and are
    /// gone. Ids that are not dead, or unknown, are skipped.
    async fn discard_dead_jobs(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<u64> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        if ids.len() > MAX_IDS {
            return Err(ApiError::limit(format!(
                "discardDeadJobs takes at most {MAX_IDS} ids per call"
            ))
            .into());
        }
        let ids: Vec<String> = ids.into_iter().map(|id| id.0).collect();
        let outcomes = discard(shared, &ids).await?;
        let count = outcomes
            .iter()
            .filter(|o| matches!(o, DeadOpOutcome::Done))
            .count() as u64;
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "dead_job.discard_many",
                "jobs",
                json!({ "count": count, "ids": ids.len() }),
            )
            .await?;
        Ok(count)
    }
}

/// Discards the dead jobs among `ids`: one Redis call for those Redis holds, the ledger's
/// record for those it lost (`Done` when either had it dead). The ledger rows go in one
/// statement: the recorder deletes them too when it reads the events, but lists must agree now.
async fn discard(shared: &Shared, ids: &[String]) -> ApiResult<Vec<DeadOpOutcome>> {
    let mut outcomes = shared.redis(shared.engine.discard_dead_many(ids)).await?;
    let lost: Vec<&String> = ids
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, DeadOpOutcome::Missing))
        .map(|(id, _)| id)
        .collect();
    if !lost.is_empty() {
        let known: std::collections::HashSet<String> = dead_jobs::Entity::find()
            .filter(dead_jobs::Column::JobId.is_in(lost))
            .filter(dead_jobs::Column::RequeuedAt.is_null())
            .all(&shared.db)
            .await?
            .into_iter()
            .map(|row| row.job_id)
            .collect();
        for (id, outcome) in ids.iter().zip(outcomes.iter_mut()) {
            if matches!(outcome, DeadOpOutcome::Missing) && known.contains(id) {
                *outcome = DeadOpOutcome::Done;
            }
        }
    }
    let gone: Vec<&String> = ids
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| matches!(o, DeadOpOutcome::Done))
        .map(|(id, _)| id)
        .collect();
    if !gone.is_empty() {
        dead_jobs::Entity::delete_many()
            .filter(dead_jobs::Column::JobId.is_in(gone))
            .exec(&shared.db)
            .await?;
    }
    Ok(outcomes)
}
