//! People who sign in. The first registered user is an admin; later ones start as viewers.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub email: String,
    pub password_hash: String,
    /// `VIEWER`, `OPERATOR` or `ADMIN`.
    pub role: String,
    pub created_at: DateTimeUtc,
    /// Set by an admin: the user cannot sign in, refresh or keep a socket open.
    pub disabled_at: Option<DateTimeUtc>,
    /// Raised by every change, which names the version it read: a stale one is refused.
    pub version: i64,
    pub updated_at: Option<DateTimeUtc>,
}

impl ActiveModelBehavior for ActiveModel {}
