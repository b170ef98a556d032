//! Notification deliveries. `idempotency_key` is stable per delivery and is sent as the
//! webhook's `Idempotency-Key`, so a repeated POST is applied once by the receiver.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub alert_id: Option<i64>,
    pub channel_id: i64,
    #[sea_orm(unique)]
    pub idempotency_key: String,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub job_id: String,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
