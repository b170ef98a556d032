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

/// Appends one entry, now: the one way the API and the command line write the audit log.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: Option<i64>,
    action: &str,
    target: &str,
    details: Json,
) -> Result<(), DbErr> {
    ActiveModel {
        actor_user_id: sea_orm::Set(actor),
        action: sea_orm::Set(action.to_owned()),
        target: sea_orm::Set(target.to_owned()),
        details: sea_orm::Set(details),
        at: sea_orm::Set(chrono::Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
