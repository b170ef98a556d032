//! Switching notification channels off and removing them (admin, audited). A disabled
//! channel's notify jobs complete without sending; a deleted channel's pending ones die as
//! "unknown channel", and its delivery history goes with it.

use async_graphql::{Context, ID, Object};
use chrono::Utc;
use entities::{channels, deliveries, rule_channels};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait,
};
use serde_json::json;

use super::{
    require, row_id,
    sensors::{Channel, redacted_url},
    shared,
};
use crate::{auth::Role, error::ApiError};

#[derive(Default)]
pub struct ChannelMutation;

#[Object]
impl ChannelMutation {
    /// Disables a channel (its notifications are skipped, not sent) or enables it again.
    async fn set_channel_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
    ) -> async_graphql::Result<Channel> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let channel = channels::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no channel has id {id}")))?;
        let was_enabled = channel.disabled_at.is_none();
        let mut active: channels::ActiveModel = channel.into();
        active.disabled_at = Set((!enabled).then(Utc::now));
        let channel = active.update(&txn).await.map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                if enabled {
                    "channel.enable"
                } else {
                    "channel.disable"
                },
                &format!("channel:{id}"),
                json!({ "name": channel.name, "wasEnabled": was_enabled }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(Channel::view(channel, admin.role))
    }

    /// Deletes a channel, its links to rules and its deliveries; answers whether it existed.
    async fn delete_channel(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let Some(channel) = channels::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
        else {
            return Ok(false);
        };
        let deliveries = deliveries::Entity::find()
            .filter(deliveries::Column::ChannelId.eq(id))
            .count(&txn)
            .await
            .map_err(ApiError::from)?;
        let rules: Vec<i64> = rule_channels::Entity::find()
            .filter(rule_channels::Column::ChannelId.eq(id))
            .all(&txn)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|l| l.rule_id)
            .collect();
        channels::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "channel.delete",
                &format!("channel:{id}"),
                json!({
                    "name": channel.name,
                    "kind": channel.kind,
                    "url": channel.url.as_deref().map(redacted_url),
                    "rules": rules,
                    "deliveries": deliveries,
                }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(true)
    }
}
