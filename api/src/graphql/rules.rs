//! Rules: what makes a sensor's readings breach, and which channels its alerts go to.
//! Creating one is an admin action, audited.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{channels, rule_channels, rules, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};
use serde_json::json;

use super::{require, row_id, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
};

/// What makes a rule breach.
// Mirrors the stored `entities::states::RuleKind` (conversions both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::states::RuleKind")]
pub enum RuleKind {
    /// Value above `threshold`; clears at or below `clearThreshold`.
    Above,
    /// Value below `threshold`; clears at or above `clearThreshold`.
    Below,
    /// Change from the previous reading larger than `threshold` (either way).
    RateOfChange,
    /// No reading for `silenceSeconds`.
    Silence,
}

impl RuleKind {
    fn name(self) -> &'static str {
        entities::states::RuleKind::from(self).as_str()
    }

    fn parse(raw: &str) -> Option<Self> {
        entities::states::RuleKind::parse(raw).map(Into::into)
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Rule {
    pub id: ID,
    pub sensor_id: ID,
    pub kind: Option<RuleKind>,
    pub threshold: Option<f64>,
    pub clear_threshold: Option<f64>,
    pub for_readings: i32,
    pub silence_seconds: Option<i32>,
    pub throttle_seconds: i32,
    pub enabled: bool,
    /// Whether the readings evaluated so far leave it inside a breach.
    pub in_breach: bool,
    pub channel_ids: Vec<ID>,
    pub created_at: DateTime<Utc>,
}

pub(crate) async fn rules_of(db: &DatabaseConnection, sensor_id: i64) -> ApiResult<Vec<Rule>> {
    let rows = rules::Entity::find()
        .filter(rules::Column::SensorId.eq(sensor_id))
        .order_by_asc(rules::Column::Id)
        .all(db)
        .await?;
    let links = rule_channels::Entity::find()
        .filter(rule_channels::Column::RuleId.is_in(rows.iter().map(|r| r.id)))
        .all(db)
        .await?;
    Ok(rows.into_iter().map(|r| rule_view(r, &links)).collect())
}

fn rule_view(r: rules::Model, links: &[rule_channels::Model]) -> Rule {
    Rule {
        id: ID(r.id.to_string()),
        sensor_id: ID(r.sensor_id.to_string()),
        kind: RuleKind::parse(&r.kind),
        threshold: r.threshold,
        clear_threshold: r.clear_threshold,
        for_readings: r.for_readings,
        silence_seconds: r.silence_seconds,
        throttle_seconds: r.throttle_seconds,
        enabled: r.enabled,
        in_breach: r.in_breach,
        channel_ids: links
            .iter()
            .filter(|l| l.rule_id == r.id)
            .map(|l| ID(l.channel_id.to_string()))
            .collect(),
        created_at: r.created_at,
    }
}

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

fn finite(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() => Err(ApiError::bad_input(field, "must be a finite number")),
        other => Ok(other),
    }
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
        let threshold = finite("input.threshold", input.threshold)?;
        let clear = finite("input.clearThreshold", input.clear_threshold)?;
        let for_readings = input.for_readings.unwrap_or(1);
        if !(1..=1000).contains(&for_readings) {
            return Err(
                ApiError::bad_input("input.forReadings", "must be between 1 and 1000").into(),
            );
        }
        let throttle = input.throttle_seconds.unwrap_or(300);
        if !(0..=86_400).contains(&throttle) {
            return Err(ApiError::bad_input(
                "input.throttleSeconds",
                "must be between 0 and 86400",
            )
            .into());
        }
        let (threshold, clear, silence) = match input.kind {
            RuleKind::Silence => {
                let seconds = input.silence_seconds.ok_or_else(|| {
                    ApiError::bad_input(
                        "input.silenceSeconds",
                        "a SILENCE rule needs silenceSeconds",
                    )
                })?;
                if !(1..=30 * 86_400).contains(&seconds) {
                    return Err(ApiError::bad_input(
                        "input.silenceSeconds",
                        "must be between 1 and 2592000",
                    )
                    .into());
                }
                (None, None, Some(seconds))
            }
            kind => {
                let threshold = threshold.ok_or_else(|| {
                    ApiError::bad_input(
                        "input.threshold",
                        format!("a {} rule needs a threshold", kind.name()),
                    )
                })?;
                let clear = clear.unwrap_or(threshold);
                let consistent = match kind {
                    RuleKind::Above => clear <= threshold,
                    RuleKind::Below => clear >= threshold,
                    _ => threshold > 0.0 && clear >= 0.0 && clear <= threshold,
                };
                if !consistent {
                    return Err(ApiError::bad_input(
                        "input.clearThreshold",
                        match kind {
                            RuleKind::Above => "an ABOVE rule clears at or below its threshold",
                            RuleKind::Below => "a BELOW rule clears at or above its threshold",
                            _ => "a RATE_OF_CHANGE rule needs a positive threshold and a clear threshold between 0 and it",
                        },
                    )
                    .into());
                }
                (Some(threshold), Some(clear), None)
            }
        };
        let channel_ids = input
            .channel_ids
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, id)| row_id(&format!("input.channelIds.{i}"), id))
            .collect::<ApiResult<Vec<_>>>()?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let sensor = sensors::Entity::find()
            .filter(sensors::Column::Key.eq(&input.sensor))
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::bad_input("input.sensor", "no sensor has this key"))?;
        let known = channels::Entity::find()
            .filter(channels::Column::Id.is_in(channel_ids.clone()))
            .all(&txn)
            .await
            .map_err(ApiError::from)?;
        if let Some((i, missing)) = channel_ids
            .iter()
            .enumerate()
            .find(|(_, id)| !known.iter().any(|c| c.id == **id))
        {
            return Err(ApiError::bad_input(
                format!("input.channelIds.{i}"),
                format!("no channel has id {missing}"),
            )
            .into());
        }
        let rule = rules::ActiveModel {
            sensor_id: Set(sensor.id),
            kind: Set(input.kind.name().to_owned()),
            threshold: Set(threshold),
            clear_threshold: Set(clear),
            for_readings: Set(for_readings),
            silence_seconds: Set(silence),
            throttle_seconds: Set(throttle),
            enabled: Set(true),
            in_breach: Set(false),
            evaluated_to: Set(0),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        let mut unique = channel_ids.clone();
        unique.sort_unstable();
        unique.dedup();
        for channel in &unique {
            rule_channels::ActiveModel {
                rule_id: Set(rule.id),
                channel_id: Set(*channel),
            }
            .insert(&txn)
            .await
            .map_err(ApiError::from)?;
        }
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "rule.create",
                &format!("rule:{}", rule.id),
                json!({ "sensor": sensor.key, "kind": rule.kind, "channels": unique }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        let links: Vec<rule_channels::Model> = unique
            .iter()
            .map(|c| rule_channels::Model {
                rule_id: rule.id,
                channel_id: *c,
            })
            .collect();
        Ok(rule_view(rule, &links))
    }
}
