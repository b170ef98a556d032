//! Workflow runs: one per ingest, with a step per job it caused (evaluate, alert, notify).

use async_graphql::{ComplexObject, Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{workflow_runs, workflow_steps};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    jobs::{Job, JobKind, JobState, find},
    page, require, shared,
};
use crate::{auth::Role, error::ApiError};

#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct WorkflowRun {
    pub id: ID,
    /// The workflow's name (`sensor_pipeline`).
    pub workflow: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` (a step died) or `CANCELLED`.
    pub state: String,
    pub steps_total: i32,
    pub steps_finished: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<workflow_runs::Model> for WorkflowRun {
    fn from(r: workflow_runs::Model) -> Self {
        Self {
            id: ID(r.id),
            workflow: r.workflow,
            state: r.state,
            steps_total: r.steps_total,
            steps_finished: r.steps_finished,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// One job of a run.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct WorkflowStep {
    pub job_id: ID,
    pub kind: Option<JobKind>,
    pub state: Option<JobState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl WorkflowStep {
    /// The step's job, current to the moment.
    async fn job(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Job>> {
        Ok(find(shared(ctx), &self.job_id).await?)
    }
}

#[ComplexObject]
impl WorkflowRun {
    /// Its steps in the order they were created.
    #[graphql(complexity = "page::list_complexity(page::expected::CHILDREN, child_complexity)")]
    async fn steps(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WorkflowStep>> {
        let rows = workflow_steps::Entity::find()
            .filter(workflow_steps::Column::RunId.eq(self.id.as_str()))
            .order_by_asc(workflow_steps::Column::Id)
            .limit(1000)
            .all(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|s| WorkflowStep {
                job_id: ID(s.job_id),
                kind: JobKind::parse(&s.kind),
                state: s.state.parse::<queue::JobState>().ok().map(Into::into),
                created_at: s.created_at,
                updated_at: s.updated_at,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct RunQuery;

#[Object]
impl RunQuery {
    /// A run by id (the id of the ingest job that started it), or null.
    async fn workflow_run(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<WorkflowRun>> {
        require(ctx, Role::Viewer)?;
        Ok(workflow_runs::Entity::find_by_id(id.to_string())
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .map(Into::into))
    }

    /// Runs, newest first.
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn workflow_runs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<WorkflowRun>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let limit = page::first(first)?;
        let event_cursor = page::event_cursor(&shared.engine).await;
        let mut query = workflow_runs::Entity::find().order_by_desc(workflow_runs::Column::Id);
        if let Some(after) = &after {
            query = query.filter(workflow_runs::Column::Id.lt(after.as_str()));
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            event_cursor,
            |r| r.id.clone(),
            WorkflowRun::from,
        )
        .await?)
    }
}
