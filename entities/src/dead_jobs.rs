//! Dead jobs, written before Redis may forget them: a requeue works from this record even
//! after Redis lost its data.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_jobs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: String,
    pub kind: String,
    pub queue: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    pub payload_version: i32,
    pub max_attempts: i32,
    /// `high`, `normal` or `low` (`queue::Priority`).
    pub priority: String,
    pub attempts: i32,
    pub error: String,
    /// Kind plus the error with numbers and ids stripped, hashed: groups dead jobs.
    pub fingerprint: String,
    /// Every attempt's error: `[{attempt, error, at}]`.
    #[sea_orm(column_type = "JsonBinary")]
    pub errors: Json,
    pub workflow_run_id: Option<String>,
    pub died_at: DateTimeUtc,
    pub requeued_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
