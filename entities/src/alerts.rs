//! One alert per rule and sensor while open: `open_key` (`<rule>:<sensor>`) is set while the
//! alert is `OPEN` and cleared when it resolves, and is unique.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub rule_id: i64,
    pub sensor_id: i64,
    /// `OPEN` or `RESOLVED`.
    pub state: String,
    pub open_key: Option<String>,
    /// Breaching readings seen while open.
    pub count: i32,
    pub opened_reading_id: i64,
    pub last_reading_id: i64,
    pub workflow_run_id: Option<String>,
    pub opened_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub resolved_at: Option<DateTimeUtc>,
    pub acknowledged_by: Option<i64>,
    pub acknowledged_at: Option<DateTimeUtc>,
    pub last_notified_at: Option<DateTimeUtc>,
    /// The reading whose alert job sent the last notification: a retry of that job re-sends
    /// its notify jobs (same keys), so a crash between commit and enqueue loses nothing.
    pub last_notified_reading_id: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
