//! One row per started attempt. `round` counts requeues from dead (attempts restart at 1).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub job_id: String,
    pub round: i32,
    pub attempt: i32,
    pub worker: Option<String>,
    pub started_at: DateTimeUtc,
    pub ended_at: Option<DateTimeUtc>,
    /// The event that ended it: `succeeded`, `retry_scheduled`, `died`, `snoozed`, ...
    pub outcome: Option<String>,
    pub error: Option<String>,
}

impl ActiveModelBehavior for ActiveModel {}
