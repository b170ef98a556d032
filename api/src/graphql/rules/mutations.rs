//! Creating, editing, switching off and archiving rules (admin), each audited with the rule
//! before and after. An edit names the version it read and changes nothing if the rule moved
//! on since. An edit that changes how the rule judges readings, switching it off, or archiving
//! it ends its breach episode in the same transaction (`workflows::jobs::alert::end_episode`):
//! the open alert is resolved, and the next evaluation judges by the rule as it is now.

use async_graphql::{Context, ID, InputObject, Object};
use chrono::Utc;
use entities::{rules, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    Set,
};
use serde_json::json;
use workflows::jobs::alert::{end_episode, publish_alert_event};

use super::{
    Judgement, Rule, RuleFields, RuleKind, audited, check_channels, check_spec, link_channels,
    links_of, lock_sensor, rule_view,
};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    graphql::{check_version, require, row_id, shared, update_if_version},
    state::SharedState,
};

#[derive(Debug, Clone, InputObject)]
pub struct CreateRuleInput {
    /// The sensor's key.
    pub sensor: String,
    pub kind: RuleKind,
    pub threshold: Option<f64>,
    /// Where a breach ends (hysteresis); defaults to `threshold`.
    pub clear_threshold: Option<f64>,
    /// Consecutive breaching readings before an alert (default 1).
    pub for_readings: Option<i32>,
    pub silence_seconds: Option<i32>,
    /// At most one notification per alert per this many seconds after the first (default 300).
    pub throttle_seconds: Option<i32>,
    pub channel_ids: Option<Vec<ID>>,
}

/// The fields to change; absent ones keep their value. The rule is checked whole afterwards,
/// as on creation.
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateRuleInput {
    pub kind: Option<RuleKind>,
    pub threshold: Option<f64>,
    pub clear_threshold: Option<f64>,
    pub for_readings: Option<i32>,
    pub silence_seconds: Option<i32>,
    pub throttle_seconds: Option<i32>,
    /// The rule's channels, all of them (replacing the ones it has).
    pub channel_ids: Option<Vec<ID>>,
}

fn judgement_of(rule: &rules::Model) -> Option<Judgement> {
    Some(Judgement {
        kind: RuleKind::parse(&rule.kind)?,
        threshold: rule.threshold,
        clear: rule.clear_threshold,
        for_readings: rule.for_readings,
        silence: rule.silence_seconds,
    })
}

/// A rule that is not archived, read in `txn`, or `NOT_FOUND`.
async fn live_rule(txn: &DatabaseTransaction, id: i64) -> ApiResult<rules::Model> {
    rules::Entity::find_by_id(id)
        .filter(rules::Column::ArchivedAt.is_null())
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule has id {id}")))
}

/// Raises the rule's version and writes it if it is still at `expected`.
async fn write_if_current(
    txn: &DatabaseTransaction,
    mut active: rules::ActiveModel,
    expected: i64,
) -> ApiResult<rules::Model> {
    active.version = Set(expected + 1);
    active.updated_at = Set(Some(Utc::now()));
    update_if_version(txn, active, rules::Column::Version, expected, "rule").await
}

/// What an edit did, for the audit log and the subscribers.
struct Edited {
    rule: rules::Model,
    links: Vec<entities::rule_channels::Model>,
    resolved: Option<entities::alerts::Model>,
    sensor: sensors::Model,
}

async fn publish_resolved(shared: &SharedState, edited: &Edited) {
    if let Some(alert) = &edited.resolved {
        // The alert is resolved in SQL already; a lost event only delays live pages until they
        // reload.
        if let Err(e) =
            publish_alert_event(&shared.engine, "alert_resolved", alert, &edited.sensor.key).await
        {
            tracing::warn!(error = %e, alert = alert.id, "alert_resolved not published");
        }
    }
}

/// Runs `change` on rule `id` in one transaction holding the sensor's and the rule's locks,
/// audits it with the rule before and after, and after the commit publishes the alert it
/// resolved; `change` answers the rule to write, its new channels (`None`: as they are) and
/// whether its episode ends.
async fn edit_rule(
    shared: &SharedState,
    actor: i64,
    action: &str,
    id: i64,
    expected: i64,
    change: impl AsyncFnOnce(
        &DatabaseTransaction,
        &rules::Model,
    ) -> ApiResult<(rules::ActiveModel, Option<Vec<i64>>, bool)>,
) -> ApiResult<Edited> {
    let txn = entities::begin_write(&shared.db).await?;
    let before = live_rule(&txn, id).await?;
    check_version("rule", before.version, expected)?;
    let sensor = lock_sensor(&txn, before.sensor_id).await?;
    let channels_before: Vec<i64> = links_of(&txn, id)
        .await?
        .iter()
        .map(|l| l.channel_id)
        .collect();
    let (active, channels, ends_episode) = change(&txn, &before).await?;
    let rule = write_if_current(&txn, active, expected).await?;
    let links = match channels {
        Some(channels) => link_channels(&txn, id, &channels).await?,
        None => links_of(&txn, id).await?,
    };
    let resolved = if ends_episode {
        end_episode(&txn, id).await.map_err(ApiError::internal)?
    } else {
        None
    };
    // end_episode moved `in_breach`: answer the rule as stored.
    let rule = if ends_episode {
        live_or_archived(&txn, id).await?
    } else {
        rule
    };
    let channels_after: Vec<i64> = links.iter().map(|l| l.channel_id).collect();
    shared
        .audit(
            &txn,
            Some(actor),
            action,
            &format!("rule:{id}"),
            json!({
                "sensor": sensor.key,
                "before": audited(&before, &channels_before),
                "after": audited(&rule, &channels_after),
                "episodeEnded": ends_episode,
                "resolvedAlert": resolved.as_ref().map(|a| a.id),
            }),
        )
        .await?;
    txn.commit().await?;
    let edited = Edited {
        rule,
        links,
        resolved,
        sensor,
    };
    publish_resolved(shared, &edited).await;
    Ok(edited)
}

async fn live_or_archived(txn: &DatabaseTransaction, id: i64) -> ApiResult<rules::Model> {
    rules::Entity::find_by_id(id)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no rule has id {id}")))
}

#[derive(Default)]
pub struct RuleMutation;

#[Object]
impl RuleMutation {
    async fn create_rule(
        &self,
        ctx: &Context<'_>,
        input: CreateRuleInput,
    ) -> async_graphql::Result<Rule> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let spec = check_spec(RuleFields {
            kind: input.kind,
            threshold: input.threshold,
            clear: input.clear_threshold,
            for_readings: input.for_readings.unwrap_or(1),
            silence: input.silence_seconds,
            throttle: input.throttle_seconds.unwrap_or(300),
        })?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
        let sensor = sensors::Entity::find()
            .filter(sensors::Column::Key.eq(&input.sensor))
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::bad_input("input.sensor", "no sensor has this key"))?;
        let channels = check_channels(&txn, input.channel_ids.as_deref().unwrap_or(&[])).await?;
        let judgement = spec.judgement;
        let rule = rules::ActiveModel {
            sensor_id: Set(sensor.id),
            kind: Set(judgement.kind.name().to_owned()),
            threshold: Set(judgement.threshold),
            clear_threshold: Set(judgement.clear),
            for_readings: Set(judgement.for_readings),
            silence_seconds: Set(judgement.silence),
            throttle_seconds: Set(spec.throttle),
            enabled: Set(true),
            in_breach: Set(false),
            evaluated_to: Set(0),
            version: Set(1),
            updated_at: Set(None),
            archived_at: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        let links = link_channels(&txn, rule.id, &channels).await?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "rule.create",
                &format!("rule:{}", rule.id),
                json!({ "sensor": sensor.key, "after": audited(&rule, &channels) }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(rule_view(rule, &links))
    }

    /// Changes a rule (admin). `expectedVersion` is the version the change was made against:
    /// if the rule changed since, nothing is written and the answer is `CONFLICT`. A change of
    /// kind, thresholds, `forReadings` or `silenceSeconds` resolves the rule's open alert and
    /// applies from the next evaluation; throttle and channels apply to the open alert.
    async fn update_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
        input: UpdateRuleInput,
    ) -> async_graphql::Result<Rule> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let edited = edit_rule(
            shared,
            admin.user_id,
            "rule.update",
            id,
            expected_version,
            async |txn, before| {
                let kind = input
                    .kind
                    .or_else(|| RuleKind::parse(&before.kind))
                    .ok_or_else(|| {
                        ApiError::bad_input("input.kind", "the rule's stored kind is unknown")
                    })?;
                let spec = check_spec(RuleFields {
                    kind,
                    threshold: input.threshold.or(before.threshold),
                    clear: input.clear_threshold.or(before.clear_threshold),
                    for_readings: input.for_readings.unwrap_or(before.for_readings),
                    silence: input.silence_seconds.or(before.silence_seconds),
                    throttle: input.throttle_seconds.unwrap_or(before.throttle_seconds),
                })?;
                let channels = match &input.channel_ids {
                    Some(ids) => Some(check_channels(txn, ids).await?),
                    None => None,
                };
                let judged_otherwise = judgement_of(before).as_ref() != Some(&spec.judgement);
                let mut active = before.clone().into_active_model();
                let judgement = spec.judgement;
                active.kind = Set(judgement.kind.name().to_owned());
                active.threshold = Set(judgement.threshold);
                active.clear_threshold = Set(judgement.clear);
                active.for_readings = Set(judgement.for_readings);
                active.silence_seconds = Set(judgement.silence);
                active.throttle_seconds = Set(spec.throttle);
                Ok((active, channels, judged_otherwise))
            },
        )
        .await?;
        Ok(rule_view(edited.rule, &edited.links))
    }

    /// Switches a rule off or on again (admin). A rule switched off raises nothing and its
    /// open alert is resolved; switched on, it judges from the next evaluation.
    async fn set_rule_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
        expected_version: i64,
    ) -> async_graphql::Result<Rule> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let edited = edit_rule(
            shared,
            admin.user_id,
            if enabled {
                "rule.enable"
            } else {
                "rule.disable"
            },
            id,
            expected_version,
            async |_, before| {
                let mut active = before.clone().into_active_model();
                active.enabled = Set(enabled);
                Ok((active, None, before.enabled && !enabled))
            },
        )
        .await?;
        Ok(rule_view(edited.rule, &edited.links))
    }

    /// Deletes a rule (admin): it is archived, not removed, because its alerts keep referring
    /// to it. It stops judging, its open alert is resolved, and it is no longer listed.
    async fn archive_rule(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
    ) -> async_graphql::Result<bool> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        edit_rule(
            shared,
            admin.user_id,
            "rule.archive",
            id,
            expected_version,
            async |_, before| {
                let mut active = before.clone().into_active_model();
                active.enabled = Set(false);
                active.archived_at = Set(Some(Utc::now()));
                Ok((active, None, true))
            },
        )
        .await?;
        Ok(true)
    }
}
