//! A workflow run: one ingest job and every job it causes. Its id is the ingest job's id.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "workflow_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub workflow: String,
    /// `RUNNING`, `SUCCEEDED`, `FAILED` (a step died) or `CANCELLED`.
    pub state: String,
    pub steps_total: i32,
    pub steps_finished: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
