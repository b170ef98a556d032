//! Ledger entries the database refused, kept in quarantine instead of stopping the recorder
//! (admin): what to look at when `steadfast_ledger_quarantined_total` rises.

use async_graphql::{Context, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::ledger_quarantine;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{page, require, shared};
use crate::auth::Role;

#[derive(Debug, Clone, SimpleObject)]
pub struct QuarantinedEvent {
    pub id: ID,
    /// The job-event stream entry's id.
    pub stream_id: String,
    /// The event's fields as JSON, with characters the database refuses escaped.
    pub event: String,
    /// What the database answered.
    pub error: String,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub struct LedgerQuery;

#[Object]
impl LedgerQuery {
    /// Newest first (admin).
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn quarantined_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<QuarantinedEvent>> {
        require(ctx, Role::Admin)?;
        let limit = page::first(first)?;
        let after = page::int_cursor(after.as_deref())?;
        let mut query =
            ledger_quarantine::Entity::find().order_by_desc(ledger_quarantine::Column::Id);
        if let Some(after) = after {
            query = query.filter(ledger_quarantine::Column::Id.lt(after));
        }
        Ok(page::fetch(
            &shared(ctx).db,
            query,
            limit,
            None,
            |q| q.id.to_string(),
            |q| QuarantinedEvent {
                id: ID(q.id.to_string()),
                stream_id: q.stream_id,
                event: q.event,
                error: q.error,
                at: q.at,
            },
        )
        .await?)
    }
}
