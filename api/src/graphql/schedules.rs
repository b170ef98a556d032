//! Schedules: recurring jobs (a cron expression in a time zone, a kind and its payload). Every
//! worker process makes their jobs, one per tick however many run (docs/design.md). Bad input
//! (an invalid cron, an unknown time zone, a payload its kind refuses) is answered at its
//! field with nothing stored.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{manage::Actor, schedules};
use workflows::schedules::{
    Missed, Timing,
    manage::{self, ScheduleSpec},
};

use super::{jobs::JobKind, require, row_id, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
};

/// What a schedule does about ticks that passed while nothing ran (a deployment down, a clock
/// jumped forward).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
pub enum MissedTicks {
    /// They make no job; the schedule goes on from its next tick.
    Skip,
    /// All of them together make one job, at once.
    CatchUpOnce,
}

impl From<MissedTicks> for Missed {
    fn from(m: MissedTicks) -> Self {
        match m {
            MissedTicks::Skip => Missed::Skip,
            MissedTicks::CatchUpOnce => Missed::CatchUpOnce,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Schedule {
    pub id: ID,
    pub name: String,
    /// Five fields (minute hour day month weekday; Sunday is 0 or 7) or six (seconds first).
    pub cron: String,
    /// The IANA zone whose wall clock the cron reads.
    pub time_zone: String,
    /// A reading of the cron for people ("At 09:00 on Monday through Friday").
    pub description: String,
    pub kind: JobKind,
    pub payload: Json<serde_json::Value>,
    pub missed: MissedTicks,
    /// A paused schedule keeps its definition and makes no jobs.
    pub enabled: bool,
    /// The tick due next (null while paused).
    pub next_run_at: Option<DateTime<Utc>>,
    /// The latest tick that made a job, and that job.
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<ID>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
}

impl From<schedules::Model> for Schedule {
    fn from(s: schedules::Model) -> Self {
        let description = Timing::parse(&s.cron, &s.time_zone)
            .map(|t| t.describe())
            .unwrap_or_default();
        Self {
            id: ID(s.id.to_string()),
            name: s.name,
            cron: s.cron,
            time_zone: s.time_zone,
            description,
            kind: JobKind::parse(&s.kind).unwrap_or(JobKind::Ingest),
            payload: Json(s.payload),
            missed: match Missed::parse(&s.missed) {
                Some(Missed::CatchUpOnce) => MissedTicks::CatchUpOnce,
                _ => MissedTicks::Skip,
            },
            enabled: s.enabled,
            next_run_at: s.next_run_at,
            last_run_at: s.last_run_at,
            last_job_id: s.last_job_id.map(ID),
            version: s.version,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Clone, InputObject)]
pub struct ScheduleInput {
    /// Unique, 1 to 100 characters.
    pub name: String,
    pub cron: String,
    /// Default: UTC.
    pub time_zone: Option<String>,
    pub kind: JobKind,
    /// The kind's payload, checked as a submission of that kind would be.
    pub payload: Json<serde_json::Value>,
    /// Default: SKIP.
    pub missed: Option<MissedTicks>,
}

impl ScheduleInput {
    fn spec(&self) -> ScheduleSpec {
        ScheduleSpec {
            name: self.name.clone(),
            cron: self.cron.clone(),
            time_zone: self.time_zone.clone().unwrap_or_else(|| "UTC".into()),
            kind: self.kind.name().to_owned(),
            payload: self.payload.0.clone(),
            missed: self.missed.unwrap_or(MissedTicks::Skip).into(),
        }
    }
}

/// Errors of the input's fields are named under `input.`.
fn in_input(e: entities::manage::ManageError) -> ApiError {
    let mut e = ApiError::from(e);
    if let Some(field) = e.field.take() {
        e.field = Some(format!("input.{field}"));
    }
    e
}

fn actor(ctx: &Context<'_>) -> ApiResult<Actor> {
    Ok(Actor::User(require(ctx, Role::Operator)?.user_id))
}

#[derive(Default)]
pub struct ScheduleQuery;

#[Object]
impl ScheduleQuery {
    /// Every schedule, by name.
    async fn schedules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Schedule>> {
        require(ctx, Role::Viewer)?;
        let all = manage::list(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?;
        Ok(all.into_iter().map(Schedule::from).collect())
    }
}

#[derive(Default)]
pub struct ScheduleMutation;

#[Object]
impl ScheduleMutation {
    /// A new schedule, running from its next tick (operator). Audited.
    async fn create_schedule(
        &self,
        ctx: &Context<'_>,
        input: ScheduleInput,
    ) -> async_graphql::Result<Schedule> {
        let actor = actor(ctx)?;
        let created = manage::create(&shared(ctx).db, &actor, &input.spec())
            .await
            .map_err(in_input)?;
        Ok(created.into())
    }

    /// Replaces a schedule's definition, against the version you read (operator); its next
    /// tick is worked out afresh. Audited.
    async fn update_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
        input: ScheduleInput,
    ) -> async_graphql::Result<Schedule> {
        let actor = actor(ctx)?;
        let id = row_id("id", &id)?;
        let edited = manage::update(&shared(ctx).db, &actor, id, expected_version, &input.spec())
            .await
            .map_err(in_input)?;
        Ok(edited.into())
    }

    /// Pauses (`enabled: false`) or resumes a schedule (operator). A resumed schedule goes on
    /// from its next tick: ticks that passed while paused make no jobs. Audited.
    async fn set_schedule_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Schedule> {
        let actor = actor(ctx)?;
        let id = row_id("id", &id)?;
        let changed = manage::set_enabled(&shared(ctx).db, &actor, id, enabled, expected_version)
            .await
            .map_err(ApiError::from)?;
        Ok(changed.into())
    }

    /// Deletes a schedule (operator); the jobs it made stay. Answers its id. Audited.
    async fn delete_schedule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<ID> {
        let actor = actor(ctx)?;
        let row = row_id("id", &id)?;
        manage::delete(&shared(ctx).db, &actor, row, expected_version)
            .await
            .map_err(ApiError::from)?;
        Ok(id)
    }
}
