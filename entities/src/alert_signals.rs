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
}

impl ActiveModelBehavior for ActiveModel {}
