//! Alerts an operator opens or resolves by hand, each audited. One opened by hand is an alert
//! like a raised one: the rule's open alert for its sensor (one at most), opened at the sensor's
//! newest reading, its channels notified under the same keys a raised alert would use, and
//! `alert_opened` published. Later breaches raise its count and the rule's next clear resolves
//! it, as for any alert. Resolving by hand ends the rule's episode (the pending signals are set
//! aside), so a condition that persists opens a fresh alert at the next breaching reading.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::Utc;
use entities::{alerts, readings, rules, states::AlertState};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};
use serde_json::json;
use workflows::jobs::alert::{end_episode, notify_channels, publish_alert_event};

use super::{alerts::Alert, require, row_id, row_or_not_found, rules::lock_sensor, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
};

#[derive(Debug, Clone, InputObject)]
pub struct CreateAlertInput {
    /// The rule the alert belongs to; it notifies that rule's channels.
    pub rule_id: ID,
    /// Why, for the audit log (up to 500 characters).
    pub note: Option<String>,
}

/// Takes the sensor's, then the rule's row lock: the order `evaluate` and the alert jobs
/// take them, so a hand-made change and the pipeline's apply one after the other.
/// Answers the sensor.
async fn lock_rule(
    txn: &DatabaseTransaction,
    rule: &rules::Model,
) -> ApiResult<entities::sensors::Model> {
    let sensor = lock_sensor(txn, rule.sensor_id).await?;
    rules::Entity::update_many()
        .col_expr(rules::Column::Id, Expr::col(rules::Column::Id))
        .filter(rules::Column::Id.eq(rule.id))
        .exec(txn)
        .await?;
    Ok(sensor)
}

fn note_of(note: Option<&str>) -> ApiResult<Option<String>> {
    let Some(note) = note else { return Ok(None) };
    crate::auth::reject_nul("input.note", note)?;
    let note = note.trim();
    if note.chars().count() > 500 {
        return Err(ApiError::bad_input("input.note", "at most 500 characters"));
    }
    Ok(Some(note.to_owned()).filter(|n| !n.is_empty()))
}

#[derive(Default)]
pub struct AlertByHandMutation;

#[Object]
impl AlertByHandMutation {
    /// Opens an alert for a rule by hand (operator), at its sensor's newest reading, and
    /// notifies the rule's channels as a raised alert would. Refused while the rule has an
    /// open alert (acknowledge or resolve that one), for a rule switched off or archived, and
    /// for a sensor with no reading yet.
    async fn create_alert(
        &self,
        ctx: &Context<'_>,
        input: CreateAlertInput,
    ) -> async_graphql::Result<Alert> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let rule_id = row_id("input.ruleId", &input.rule_id)?;
        let note = note_of(input.note.as_deref())?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let rule = rules::Entity::find_by_id(rule_id)
            .filter(rules::Column::ArchivedAt.is_null())
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::bad_input("input.ruleId", "no rule has this id"))?;
        if !rule.enabled {
            return Err(ApiError::bad_input(
                "input.ruleId",
                "the rule is switched off: enable it first",
            )
            .into());
        }
        let sensor = lock_rule(&txn, &rule).await?;
        let open_key = format!("{}:{}", rule.id, sensor.id);
        if let Some(open) = alerts::Entity::find()
            .filter(alerts::Column::OpenKey.eq(&open_key))
            .one(&txn)
            .await
            .map_err(ApiError::from)?
        {
            return Err(ApiError::bad_input(
                "input.ruleId",
                format!("alert {} is open for this rule already", open.id),
            )
            .into());
        }
        let reading = readings::Entity::find()
            .filter(readings::Column::SensorId.eq(sensor.id))
            .order_by_desc(readings::Column::Id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                ApiError::bad_input("input.ruleId", "the rule's sensor has no reading yet")
            })?;
        let now = Utc::now();
        let alert = alerts::ActiveModel {
            rule_id: Set(rule.id),
            sensor_id: Set(sensor.id),
            state: Set(AlertState::Open.as_str().into()),
            open_key: Set(Some(open_key)),
            count: Set(1),
            opened_reading_id: Set(reading.id),
            last_reading_id: Set(reading.id),
            workflow_run_id: Set(None),
            opened_at: Set(now),
            updated_at: Set(now),
            resolved_at: Set(None),
            acknowledged_by: Set(None),
            acknowledged_at: Set(None),
            last_notified_at: Set(Some(now)),
            last_notified_reading_id: Set(Some(reading.id)),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(session.user_id),
                "alert.create",
                &format!("alert:{}", alert.id),
                json!({ "rule": rule.id, "sensor": sensor.key, "reading": reading.id, "note": note }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        // After the commit, as the alert job does: a failed push is retried by the caller, and
        // a second push of the same keys queues nothing.
        notify_channels(
            &shared.db,
            &shared.engine,
            rule.id,
            &[(alert.id, reading.id, None)],
        )
        .await
        .map_err(ApiError::internal)?;
        if let Err(e) =
            publish_alert_event(&shared.engine, "alert_opened", &alert, &sensor.key).await
        {
            tracing::warn!(error = %e, alert = alert.id, "alert_opened not published");
        }
        Ok(alert.into())
    }

    /// Resolves an open alert by hand (operator). Its rule's episode ends with it, so if the
    /// readings still breach, the next breaching reading opens a new alert. Resolving a
    /// resolved alert changes nothing.
    async fn resolve_alert(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Alert> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let alert = row_or_not_found::<alerts::Entity>(&txn, id, "alert").await?;
        if alert.open_key.is_none() {
            return Ok(alert.into());
        }
        let rule = row_or_not_found::<rules::Entity>(&txn, alert.rule_id, "rule").await?;
        let sensor = lock_rule(&txn, &rule).await?;
        let resolved = end_episode(&txn, rule.id)
            .await
            .map_err(ApiError::internal)?;
        // Under the locks the open alert is the one read, unless the pipeline resolved it first.
        let alert = match resolved {
            Some(resolved) if resolved.id == alert.id => resolved,
            _ => row_or_not_found::<alerts::Entity>(&txn, id, "alert").await?,
        };
        shared
            .audit(
                &txn,
                Some(session.user_id),
                "alert.resolve",
                &format!("alert:{id}"),
                json!({ "rule": rule.id, "sensor": sensor.key }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        if let Err(e) =
            publish_alert_event(&shared.engine, "alert_resolved", &alert, &sensor.key).await
        {
            tracing::warn!(error = %e, alert = alert.id, "alert_resolved not published");
        }
        Ok(alert.into())
    }
}
