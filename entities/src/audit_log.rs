//! Who did what, as an admin: requeues, discards, changes to sensors, rules, channels, devices
//! and roles.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub actor_user_id: Option<i64>,
    pub action: String,
    pub target: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub details: Json,
    pub at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
