//! Recurring jobs: a cron expression in a time zone, the kind and payload each tick submits,
//! what to do about ticks missed while nothing ran, and the tick due next.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    /// Five fields (minute granularity) or six (seconds first).
    pub cron: String,
    /// An IANA zone name (`Europe/Berlin`, `UTC`): the cron's wall clock.
    pub time_zone: String,
    pub kind: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    /// `skip` or `catch_up_once` (see `workflows::schedules::Missed`).
    pub missed: String,
    /// A paused schedule keeps its definition and makes no jobs.
    pub enabled: bool,
    /// The tick due next (null while paused).
    pub next_run_at: Option<DateTimeUtc>,
    /// The last tick that made a job, and that job.
    pub last_run_at: Option<DateTimeUtc>,
    pub last_job_id: Option<String>,
    /// Ticks claimed and not yet pushed: a JSON array of Unix ms (null when none).
    pub pending: Option<String>,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
