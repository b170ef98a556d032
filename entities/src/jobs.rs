//! The job ledger: every job, as the recorder last saw it on the job-event stream.
//! `last_event_id` (the stream id, zero-padded so it sorts as text) makes recording idempotent:
//! an event at or before it is already applied.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub queue: String,
    /// One of the lifecycle states (`QUEUED` ... `CANCELLED`).
    pub state: String,
    pub attempt: i32,
    /// Requeues from dead so far; attempts restart at 1 in each round.
    pub round: i32,
    pub max_attempts: i32,
    /// `high`, `normal` or `low` (`queue::Priority`).
    pub priority: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub result: Option<Json>,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    /// What the job is about, to find it by: the sensor of an ingest (when all its readings
    /// are of one), evaluate or alert; `channel:<id>` for a notify.
    pub subject: Option<String>,
    pub workflow_run_id: Option<String>,
    pub run_at: Option<DateTimeUtc>,
    pub last_event_id: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
