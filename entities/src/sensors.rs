//! Sensors, by their unique key. `eval_cursor` is the id of the last reading evaluated: advanced
//! by compare-and-set in the same transaction as the evaluation's effects.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sensors")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub key: String,
    pub name: String,
    pub unit: String,
    pub device_id: Option<i64>,
    pub eval_cursor: i64,
    pub last_reading_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    /// Raised by every update, which names the version it read: a stale one is refused.
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
    /// Set by an admin: its readings are refused (by the API and by `ingest`), and it is never
    /// reported silent.
    pub disabled_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
