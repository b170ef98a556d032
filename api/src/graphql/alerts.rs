//! Alerts (open and resolved breach episodes), their deliveries, acknowledgement, and
//! `alertUpdates`, pushed as the alert jobs open, update and resolve them.

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use entities::{alerts, deliveries, sensors};
use std::sync::Arc;

use futures::Stream;
use sea_orm::DatabaseConnection;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::{page, require, row_id, row_or_not_found, shared};
use crate::{auth::Role, error::ApiError, hub::Hub};

// Mirrors the stored `entities::states::AlertState` (conversions both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::states::AlertState")]
pub enum AlertState {
    Open,
    Resolved,
}

#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Alert {
    pub id: ID,
    pub rule_id: ID,
    pub state: AlertState,
    /// Breaching readings seen while open.
    pub count: i32,
    pub workflow_run_id: Option<ID>,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<ID>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub last_notified_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    sensor_id: i64,
    #[graphql(skip)]
    row_id: i64,
}

impl From<alerts::Model> for Alert {
    fn from(a: alerts::Model) -> Self {
        Self {
            id: ID(a.id.to_string()),
            rule_id: ID(a.rule_id.to_string()),
            state: entities::states::AlertState::parse(&a.state)
                .unwrap_or(entities::states::AlertState::Resolved)
                .into(),
            count: a.count,
            workflow_run_id: a.workflow_run_id.map(ID),
            opened_at: a.opened_at,
            updated_at: a.updated_at,
            resolved_at: a.resolved_at,
            acknowledged_by: a.acknowledged_by.map(|u| ID(u.to_string())),
            acknowledged_at: a.acknowledged_at,
            last_notified_at: a.last_notified_at,
            sensor_id: a.sensor_id,
            row_id: a.id,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Delivery {
    pub id: ID,
    pub alert_id: Option<ID>,
    pub channel_id: ID,
    /// Sent as `Idempotency-Key`: the same on every retry of one notification.
    pub idempotency_key: String,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub job_id: ID,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

impl From<deliveries::Model> for Delivery {
    fn from(d: deliveries::Model) -> Self {
        Self {
            id: ID(d.id.to_string()),
            alert_id: d.alert_id.map(|a| ID(a.to_string())),
            channel_id: ID(d.channel_id.to_string()),
            idempotency_key: d.idempotency_key,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status_code,
            last_error: d.last_error,
            job_id: ID(d.job_id),
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

async fn deliveries_of(ctx: &Context<'_>, alert: i64) -> async_graphql::Result<Vec<Delivery>> {
    Ok(deliveries::Entity::find()
        .filter(deliveries::Column::AlertId.eq(alert))
        .order_by_asc(deliveries::Column::Id)
        .limit(1000)
        .all(&shared(ctx).db)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(Into::into)
        .collect())
}

#[ComplexObject]
impl Alert {
    /// The sensor's key.
    async fn sensor(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(sensors::Entity::find_by_id(self.sensor_id)
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .map(|s| s.key))
    }

    #[graphql(complexity = "page::list_complexity(page::expected::CHILDREN, child_complexity)")]
    async fn deliveries(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Delivery>> {
        deliveries_of(ctx, self.row_id).await
    }
}

#[derive(Debug, Clone, Default, InputObject)]
pub struct AlertsFilter {
    pub state: Option<AlertState>,
    /// A sensor's key.
    pub sensor: Option<String>,
}

#[derive(Default)]
pub struct AlertQuery;

#[Object]
impl AlertQuery {
    /// Alerts, newest first.
    #[graphql(complexity = "page::complexity(first, child_complexity)")]
    async fn alerts(
        &self,
        ctx: &Context<'_>,
        filter: Option<AlertsFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<page::Page<Alert>> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let limit = page::first(first)?;
        let after = page::int_cursor(after.as_deref())?;
        let event_cursor = page::event_cursor(&shared.engine).await;
        let filter = filter.unwrap_or_default();
        let mut query = alerts::Entity::find().order_by_desc(alerts::Column::Id);
        if let Some(state) = filter.state {
            query =
                query.filter(alerts::Column::State.eq(entities::states::AlertState::from(state)));
        }
        if let Some(key) = &filter.sensor {
            let sensor = sensors::Entity::find()
                .filter(sensors::Column::Key.eq(key.as_str()))
                .one(&shared.db)
                .await
                .map_err(ApiError::from)?;
            query = query.filter(alerts::Column::SensorId.eq(sensor.map_or(-1, |s| s.id)));
        }
        if let Some(after) = after {
            query = query.filter(alerts::Column::Id.lt(after));
        }
        Ok(page::fetch(
            &shared.db,
            query,
            limit,
            event_cursor,
            |a| a.id.to_string(),
            Alert::from,
        )
        .await?)
    }

    /// An alert by id, or null.
    async fn alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Alert>> {
        require(ctx, Role::Viewer)?;
        let id = row_id("id", &id)?;
        Ok(alerts::Entity::find_by_id(id)
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .map(Into::into))
    }

    /// The notifications of an alert, one per channel and notifying reading.
    #[graphql(complexity = "page::list_complexity(page::expected::CHILDREN, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        alert_id: ID,
    ) -> async_graphql::Result<Vec<Delivery>> {
        require(ctx, Role::Viewer)?;
        let id = row_id("alertId", &alert_id)?;
        deliveries_of(ctx, id).await
    }
}

#[derive(Default)]
pub struct AlertMutation;

#[Object]
impl AlertMutation {
    /// Marks an alert as seen by the caller (operator).
    async fn acknowledge_alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Alert> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let alert = row_or_not_found::<alerts::Entity>(&shared.db, id, "alert").await?;
        if alert.acknowledged_at.is_some() {
            return Ok(alert.into());
        }
        let mut active: alerts::ActiveModel = alert.into();
        active.acknowledged_by = Set(Some(session.user_id));
        active.acknowledged_at = Set(Some(Utc::now()));
        let alert = active.update(&shared.db).await.map_err(ApiError::from)?;
        Ok(alert.into())
    }
}

/// An alert opened, updated (another breaching reading) or resolved.
#[derive(SimpleObject)]
pub struct AlertUpdate {
    /// `alert_opened`, `alert_updated` or `alert_resolved`.
    pub event: String,
    pub alert: Option<Alert>,
}

/// Alert events with their alert loaded, once per process: every `alertUpdates` subscriber
/// shares the one read.
#[derive(Debug, Clone)]
pub struct AlertFeed {
    updates: broadcast::Sender<Arc<(String, Option<alerts::Model>)>>,
}

impl AlertFeed {
    pub fn start(hub: &Hub, db: DatabaseConnection, stop: CancellationToken) -> Self {
        let (updates, _) = broadcast::channel(256);
        let feed = Self { updates };
        let (tx, mut events) = (feed.updates.clone(), hub.alerts());
        tokio::spawn(async move {
            loop {
                let entry = tokio::select! {
                    () = stop.cancelled() => return,
                    entry = events.recv() => match entry {
                        Ok(entry) => entry,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    },
                };
                let event = entry.fields.get("type").cloned().unwrap_or_default();
                let alert = match entry
                    .fields
                    .get("alert")
                    .and_then(|a| a.parse::<i64>().ok())
                {
                    Some(id) => alerts::Entity::find_by_id(id).one(&db).await.ok().flatten(),
                    None => None,
                };
                // No subscriber is fine: nobody is watching.
                let _ = tx.send(Arc::new((event, alert)));
            }
        });
        feed
    }

    /// The updates from now on; a subscriber that falls behind skips what it missed (alerts
    /// are few, and a client that needs every one lists them).
    fn updates(&self) -> impl Stream<Item = AlertUpdate> + Send + 'static {
        futures::stream::unfold(self.updates.subscribe(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(update) => {
                        let (event, alert) = update.as_ref().clone();
                        let alert = alert.map(Alert::from);
                        return Some((AlertUpdate { event, alert }, rx));
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
    }
}

#[derive(Default)]
pub struct AlertSubscription;

#[Subscription]
impl AlertSubscription {
    async fn alert_updates(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = AlertUpdate>> {
        require(ctx, Role::Viewer)?;
        Ok(shared(ctx).alert_feed.updates())
    }
}
