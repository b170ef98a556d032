//! Devices that push readings with an API key (stored hashed; shown once at creation).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    #[sea_orm(unique)]
    pub api_key_hash: String,
    pub created_at: DateTimeUtc,
    /// Set by an admin: the key is refused from then on (a rotation replaces the hash instead).
    pub revoked_at: Option<DateTimeUtc>,
    /// Raised by every change, which names the version it read: a stale one is refused.
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
