//! The audit log: who did which admin action, when.

use async_graphql::{Context, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{page, require, shared};
use crate::auth::Role;

#[derive(Debug, Clone, SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub actor_user_id: Option<ID>,
    /// `dead_job.requeue`, `user.set_role`, `sensor.create`, ...
    pub action: String,
    pub target: String,
    pub details: Json<serde_json::Value>,
    pub at: DateTime<Utc>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Newest first (admin).
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Only actions starting with this, e.g. `dead_job.`")]
        action_prefix: Option<String>,
    ) -> async_graphql::Result<page::Page<AuditEntry>> {
        require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let limit = page::first(first)?;
        let after = page::int_cursor(after.as_deref())?;
        let mut query = audit_log::Entity::find().order_by_desc(audit_log::Column::Id);
        if let Some(after) = after {
            query = query.filter(audit_log::Column::Id.lt(after));
        }
        if let Some(prefix) = action_prefix.filter(|p| !p.is_empty()) {
            query = query.filter(audit_log::Column::Action.starts_with(prefix));
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            None,
            |a| a.id.to_string(),
            |a| AuditEntry {
                id: ID(a.id.to_string()),
                actor_user_id: a.actor_user_id.map(|u| ID(u.to_string())),
                action: a.action,
                target: a.target,
                details: Json(a.details),
                at: a.at,
            },
        )
        .await?)
    }
}
