//! Sensor readings, stored once: `natural_key` is `seq:<n>` when the device numbers its
//! readings, `ts:<RFC 3339>` otherwise, unique per sensor.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "readings")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub sensor_id: i64,
    pub ts: DateTimeUtc,
    pub value: f64,
    pub seq: Option<i64>,
    pub natural_key: String,
    /// The ingest job that stored it (the workflow run it belongs to).
    pub ingest_job_id: String,
    pub created_at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
