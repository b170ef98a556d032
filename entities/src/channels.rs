//! Where notifications go: a signed webhook (`WEBHOOK`, with URL and secret) or the web app
//! (`IN_APP`).
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "channels")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub created_at: DateTimeUtc,
    /// Set by an admin: notifications to it are skipped, not sent.
    pub disabled_at: Option<DateTimeUtc>,
    /// Raised by every update, which names the version it read: a stale one is refused.
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
