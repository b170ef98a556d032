//! Rules: what makes a sensor's readings breach, and which channels its alerts go to. The
//! checks every rule passes (created or edited) are here; the admin actions that create, edit,
//! switch off and archive rules, each audited, are in `mutations`.

mod mutations;

use async_graphql::{Enum, ID, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{channels, rule_channels, rules, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, sea_query::Expr,
};

pub use mutations::{CreateRuleInput, RuleMutation, UpdateRuleInput};

use super::row_id;
use crate::error::{ApiError, ApiResult};

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
    /// Raised by every edit; an edit names the version it read (`expectedVersion`).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub(crate) async fn rules_of(db: &DatabaseConnection, sensor_id: i64) -> ApiResult<Vec<Rule>> {
    let rows = rules::Entity::find()
        .filter(rules::Column::SensorId.eq(sensor_id))
        .filter(rules::Column::ArchivedAt.is_null())
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
    let channel_ids = links
        .iter()
        .filter(|l| l.rule_id == r.id)
        .map(|l| ID(l.channel_id.to_string()))
        .collect();
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
        channel_ids,
        version: r.version,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// Takes the rule's sensor row lock (the first lock `evaluate` takes), so an evaluation either
/// commits before this edit or sees it after; answers the sensor.
pub(crate) async fn lock_sensor(
    txn: &sea_orm::DatabaseTransaction,
    sensor: i64,
) -> ApiResult<sensors::Model> {
    sensors::Entity::update_many()
        .col_expr(
            sensors::Column::EvalCursor,
            Expr::col(sensors::Column::EvalCursor),
        )
        .filter(sensors::Column::Id.eq(sensor))
        .exec(txn)
        .await?;
    sensors::Entity::find_by_id(sensor)
        .one(txn)
        .await?
        .ok_or_else(|| ApiError::internal(format!("rule of a missing sensor {sensor}")))
}

/// How a rule judges readings, checked whole: what `createRule` stores, and what an edit
/// stores once merged with the rule as it was.
#[derive(Debug, Clone, PartialEq)]
struct Judgement {
    kind: RuleKind,
    threshold: Option<f64>,
    clear: Option<f64>,
    for_readings: i32,
    silence: Option<i32>,
}

/// Everything a rule is but its sensor and channels.
#[derive(Debug, Clone, PartialEq)]
struct RuleSpec {
    judgement: Judgement,
    throttle: i32,
}

/// The fields as given (absent ones already filled from defaults or the rule as it was).
#[derive(Debug, Clone)]
struct RuleFields {
    kind: RuleKind,
    threshold: Option<f64>,
    clear: Option<f64>,
    for_readings: i32,
    silence: Option<i32>,
    throttle: i32,
}

fn finite(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() => Err(ApiError::bad_input(field, "must be a finite number")),
        other => Ok(other),
    }
}

/// Checks a rule's fields together; errors name the input field at fault.
fn check_spec(fields: RuleFields) -> ApiResult<RuleSpec> {
    let threshold = finite("input.threshold", fields.threshold)?;
    let clear = finite("input.clearThreshold", fields.clear)?;
    if !(1..=1000).contains(&fields.for_readings) {
        return Err(ApiError::bad_input(
            "input.forReadings",
            "must be between 1 and 1000",
        ));
    }
    if !(0..=86_400).contains(&fields.throttle) {
        return Err(ApiError::bad_input(
            "input.throttleSeconds",
            "must be between 0 and 86400",
        ));
    }
    let (threshold, clear, silence) = match fields.kind {
        RuleKind::Silence => {
            let seconds = fields.silence.ok_or_else(|| {
                ApiError::bad_input(
                    "input.silenceSeconds",
                    "a SILENCE rule needs silenceSeconds",
                )
            })?;
            if !(1..=30 * 86_400).contains(&seconds) {
                return Err(ApiError::bad_input(
                    "input.silenceSeconds",
                    "must be between 1 and 2592000",
                ));
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
                        _ => {
                            "a RATE_OF_CHANGE rule needs a positive threshold and a clear threshold between 0 and it"
                        }
                    },
                ));
            }
            (Some(threshold), Some(clear), None)
        }
    };
    Ok(RuleSpec {
        judgement: Judgement {
            kind: fields.kind,
            threshold,
            clear,
            for_readings: fields.for_readings,
            silence,
        },
        throttle: fields.throttle,
    })
}

/// The channel ids given, parsed, each known, without repeats (sorted).
async fn check_channels(db: &impl ConnectionTrait, ids: &[ID]) -> ApiResult<Vec<i64>> {
    let parsed = ids
        .iter()
        .enumerate()
        .map(|(i, id)| row_id(&format!("input.channelIds.{i}"), id))
        .collect::<ApiResult<Vec<_>>>()?;
    let known = channels::Entity::find()
        .filter(channels::Column::Id.is_in(parsed.clone()))
        .all(db)
        .await?;
    if let Some((i, missing)) = parsed
        .iter()
        .enumerate()
        .find(|(_, id)| !known.iter().any(|c| c.id == **id))
    {
        return Err(ApiError::bad_input(
            format!("input.channelIds.{i}"),
            format!("no channel has id {missing}"),
        ));
    }
    let mut unique = parsed;
    unique.sort_unstable();
    unique.dedup();
    Ok(unique)
}

/// Makes `channels` the rule's channels (all of them, replacing any it had).
async fn link_channels(
    db: &impl ConnectionTrait,
    rule: i64,
    channels: &[i64],
) -> ApiResult<Vec<rule_channels::Model>> {
    rule_channels::Entity::delete_many()
        .filter(rule_channels::Column::RuleId.eq(rule))
        .exec(db)
        .await?;
    let mut links = Vec::with_capacity(channels.len());
    for channel in channels {
        links.push(
            rule_channels::ActiveModel {
                rule_id: Set(rule),
                channel_id: Set(*channel),
            }
            .insert(db)
            .await?,
        );
    }
    Ok(links)
}

async fn links_of(db: &impl ConnectionTrait, rule: i64) -> ApiResult<Vec<rule_channels::Model>> {
    Ok(rule_channels::Entity::find()
        .filter(rule_channels::Column::RuleId.eq(rule))
        .order_by_asc(rule_channels::Column::ChannelId)
        .all(db)
        .await?)
}

/// The rule as the audit log keeps it (before and after an edit).
fn audited(rule: &rules::Model, channels: &[i64]) -> serde_json::Value {
    serde_json::json!({
        "kind": rule.kind,
        "threshold": rule.threshold,
        "clearThreshold": rule.clear_threshold,
        "forReadings": rule.for_readings,
        "silenceSeconds": rule.silence_seconds,
        "throttleSeconds": rule.throttle_seconds,
        "enabled": rule.enabled,
        "archived": rule.archived_at.is_some(),
        "channels": channels,
        "version": rule.version,
    })
}
