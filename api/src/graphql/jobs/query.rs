//! Looking jobs up: one by id (from Redis while it is live, from the ledger after), and lists.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::{DateTime, Utc};
use entities::jobs;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{Job, JobKind, JobState, find};
use crate::{
    auth::Role,
    graphql::{page, require, shared},
};

#[derive(Debug, Clone, Default, InputObject)]
pub struct JobsFilter {
    pub kinds: Option<Vec<JobKind>>,
    pub states: Option<Vec<JobState>>,
    pub workflow_run_id: Option<ID>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// What the job is about: a sensor key, or `channel:<id>` for a notify (indexed).
    pub subject: Option<String>,
    /// The key as the job shows it (`api:` prefixes a submitter's own; indexed).
    pub idempotency_key: Option<String>,
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
        if let Some(subject) = &filter.subject {
            query = query.filter(jobs::Column::Subject.eq(subject.as_str()));
        }
        if let Some(key) = &filter.idempotency_key {
            query = query.filter(jobs::Column::IdempotencyKey.eq(key.as_str()));
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
