//! Job events the ledger could not record (the database refused them): kept with the error,
//! for admins, so one bad event never stops the ledger.
use sea_orm::entity::prelude::*;

#[sea_orm::model]
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_quarantine")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The job-event stream entry's id.
    #[sea_orm(unique)]
    pub stream_id: String,
    /// The event as JSON, with characters the database refuses escaped.
    #[sea_orm(column_type = "Text")]
    pub event: String,
    #[sea_orm(column_type = "Text")]
    pub error: String,
    pub at: DateTimeUtc,
}

impl ActiveModelBehavior for ActiveModel {}
