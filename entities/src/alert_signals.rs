//! Breach and clear signals of a rule, pending until an `alert` job applies them in reading
//! order (`applied_at` set).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_signals")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub rule_id: i64,
    pub reading_id: i64,
    pub breach: bool,
    pub created_at: DateTimeUtc,
    pub applied_at: Option<DateTimeUtc>,
    /// The alert job that applied this signal, named by that job's own signal.
    pub applied_by: Option<i64>,
    /// The alert this signal notified the rule's channels about, if it did.
    pub notified_alert_id: Option<i64>,
}

impl ActiveModelBehavior for ActiveModel {}
