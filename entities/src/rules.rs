//! Alert rules of a sensor: `ABOVE` / `BELOW` a threshold for N consecutive readings,
//! `RATE_OF_CHANGE` per minute, or `SILENCE` (no reading for a duration). An alert clears at
//! `clear_threshold` (hysteresis).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "rules")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub sensor_id: i64,
    pub kind: String,
    pub threshold: Option<f64>,
    pub clear_threshold: Option<f64>,
    pub for_readings: i32,
    pub silence_seconds: Option<i32>,
    /// At most one notification per alert per this many seconds after the first.
    pub throttle_seconds: i32,
    pub enabled: bool,
    /// Whether the readings evaluated so far leave this rule inside a breach episode. Moved by
    /// `evaluate` in the same transaction as the sensor's cursor, so episodes never depend on
    /// how far the alert jobs have got.
    pub in_breach: bool,
    /// The sensor's cursor when `in_breach` was written: an evaluation that read an older
    /// cursor than this read the two apart, and starts over.
    pub evaluated_to: i64,
    pub created_at: DateTimeUtc,
    /// Raised by every update, which names the version it read: a stale one is refused.
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
    /// Set when deleted: the rule is kept for its alerts' history, hidden and never evaluated.
    pub archived_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
