//! Sensors with their status, their rules, the channels alerts go to, and the devices that
//! write readings. Creating any of them is an admin action, audited.

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{alerts, channels, devices, readings, rule_channels, rules, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use serde_json::json;

use super::{page, require, row_id, shared};
use crate::{
    auth::{Role, new_secret},
    error::{ApiError, ApiResult},
};

#[derive(Debug, Clone, SimpleObject)]
#[graphql(complex)]
pub struct Sensor {
    pub id: ID,
    pub key: String,
    pub name: String,
    pub unit: String,
    /// When its newest reading was taken.
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    row_id: i64,
    #[graphql(skip)]
    device_id: Option<i64>,
}

impl From<sensors::Model> for Sensor {
    fn from(s: sensors::Model) -> Self {
        Self {
            id: ID(s.id.to_string()),
            key: s.key,
            name: s.name,
            unit: s.unit,
            last_seen_at: s.last_reading_at,
            created_at: s.created_at,
            row_id: s.id,
            device_id: s.device_id,
        }
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Reading {
    pub id: ID,
    pub ts: DateTime<Utc>,
    pub value: f64,
    pub seq: Option<i64>,
}

impl From<readings::Model> for Reading {
    fn from(r: readings::Model) -> Self {
        Self {
            id: ID(r.id.to_string()),
            ts: r.ts,
            value: r.value,
            seq: r.seq,
        }
    }
}

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

// Mirrors the stored `entities::states::ChannelKind` (conversions both ways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(remote = "entities::states::ChannelKind")]
pub enum ChannelKind {
    /// A signed POST (`X-Steadfast-Signature: sha256=<HMAC of the body>`).
    Webhook,
    /// Shown in the web app.
    InApp,
}

impl ChannelKind {
    fn name(self) -> &'static str {
        entities::states::ChannelKind::from(self).as_str()
    }
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Channel {
    pub id: ID,
    pub name: String,
    pub kind: Option<ChannelKind>,
    /// The webhook's address. Admins see it whole; others see its scheme and host only
    /// (`https://hooks.example.com/…`): paths and queries often carry tokens.
    pub url: Option<String>,
    /// Whether webhooks are signed (the secret itself is never shown again).
    pub has_secret: bool,
    /// False once an admin disabled it: its notifications are skipped.
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
}

impl Channel {
    /// The channel as `viewer` may see it.
    pub fn view(c: channels::Model, viewer: Role) -> Self {
        let url = if viewer >= Role::Admin {
            c.url
        } else {
            c.url.as_deref().map(redacted_url)
        };
        Self {
            id: ID(c.id.to_string()),
            name: c.name,
            kind: entities::states::ChannelKind::parse(&c.kind).map(Into::into),
            url,
            has_secret: c.secret.is_some_and(|s| !s.is_empty()),
            enabled: c.disabled_at.is_none(),
            created_at: c.created_at,
        }
    }
}

/// `scheme://host[:port]/…`: no credentials, path or query.
pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let more = rest.len() > authority.len();
    format!("{scheme}://{host}{}", if more { "/…" } else { "" })
}

#[derive(Debug, Clone, SimpleObject)]
pub struct Device {
    pub id: ID,
    pub name: String,
    pub sensor_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// When an admin revoked its key; a revoked device gets 401.
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, SimpleObject)]
pub struct CreatedDevice {
    pub device: Device,
    /// Shown this once: the device sends it as `Authorization: Bearer <apiKey>` or `X-Api-Key`.
    pub api_key: String,
}

async fn rules_of(db: &DatabaseConnection, sensor_id: i64) -> ApiResult<Vec<Rule>> {
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

#[ComplexObject]
impl Sensor {
    /// The newest reading.
    async fn last_reading(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Reading>> {
        Ok(readings::Entity::find()
            .filter(readings::Column::SensorId.eq(self.row_id))
            .order_by_desc(readings::Column::Ts)
            .order_by_desc(readings::Column::Id)
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .map(Into::into))
    }

    /// Alerts of this sensor not yet resolved.
    async fn open_alerts(&self, ctx: &Context<'_>) -> async_graphql::Result<u64> {
        Ok(alerts::Entity::find()
            .filter(alerts::Column::SensorId.eq(self.row_id))
            .filter(alerts::Column::State.eq(entities::states::AlertState::Open))
            .count(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?)
    }

    /// The newest readings, oldest first (for a chart): at most `last`, up to 1,000.
    #[graphql(complexity = "page::list_complexity(last.clamp(1, 1000) as usize, child_complexity)")]
    async fn readings(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 100)] last: i32,
    ) -> async_graphql::Result<Vec<Reading>> {
        if !(1..=1000).contains(&last) {
            return Err(ApiError::bad_input("last", "last must be between 1 and 1000").into());
        }
        let mut rows: Vec<Reading> = readings::Entity::find()
            .filter(readings::Column::SensorId.eq(self.row_id))
            .order_by_desc(readings::Column::Ts)
            .order_by_desc(readings::Column::Id)
            .limit(last as u64)
            .all(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(Into::into)
            .collect();
        rows.reverse();
        Ok(rows)
    }

    #[graphql(complexity = "page::list_complexity(page::expected::CHILDREN, child_complexity)")]
    async fn rules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Rule>> {
        Ok(rules_of(&shared(ctx).db, self.row_id).await?)
    }

    /// The device that may write its readings.
    async fn device_id(&self) -> Option<ID> {
        self.device_id.map(|d| ID(d.to_string()))
    }
}

#[derive(Default)]
pub struct SensorQuery;

#[Object]
impl SensorQuery {
    /// Every sensor, by key.
    #[graphql(complexity = "page::list_complexity(page::expected::TOP_LEVEL, child_complexity)")]
    async fn sensors(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Sensor>> {
        require(ctx, Role::Viewer)?;
        Ok(sensors::Entity::find()
            .order_by_asc(sensors::Column::Key)
            .limit(5000)
            .all(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// A sensor by key, or null.
    async fn sensor(
        &self,
        ctx: &Context<'_>,
        key: String,
    ) -> async_graphql::Result<Option<Sensor>> {
        require(ctx, Role::Viewer)?;
        Ok(sensors::Entity::find()
            .filter(sensors::Column::Key.eq(key))
            .one(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .map(Into::into))
    }

    #[graphql(complexity = "page::list_complexity(page::expected::TOP_LEVEL, child_complexity)")]
    async fn channels(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Channel>> {
        let viewer = require(ctx, Role::Viewer)?;
        Ok(channels::Entity::find()
            .order_by_asc(channels::Column::Id)
            .limit(5000)
            .all(&shared(ctx).db)
            .await
            .map_err(ApiError::from)?
            .into_iter()
            .map(|c| Channel::view(c, viewer.role))
            .collect())
    }

    #[graphql(complexity = "page::list_complexity(page::expected::TOP_LEVEL, child_complexity)")]
    async fn devices(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Device>> {
        require(ctx, Role::Viewer)?;
        let db = &shared(ctx).db;
        let rows = devices::Entity::find()
            .order_by_asc(devices::Column::Id)
            .limit(5000)
            .all(db)
            .await
            .map_err(ApiError::from)?;
        let owned = sensors::Entity::find()
            .filter(sensors::Column::DeviceId.is_not_null())
            .all(db)
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|d| Device {
                id: ID(d.id.to_string()),
                sensor_keys: owned
                    .iter()
                    .filter(|s| s.device_id == Some(d.id))
                    .map(|s| s.key.clone())
                    .collect(),
                name: d.name,
                created_at: d.created_at,
                revoked_at: d.revoked_at,
            })
            .collect())
    }
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateSensorInput {
    /// 1 to 128 characters of letters, digits and `_ - . :`; never changes.
    pub key: String,
    pub name: String,
    pub unit: String,
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

#[derive(Debug, Clone, InputObject)]
pub struct CreateChannelInput {
    pub name: String,
    pub kind: ChannelKind,
    /// For WEBHOOK: the `http(s)://` address POSTed to.
    pub url: Option<String>,
    /// For WEBHOOK: the HMAC key of `X-Steadfast-Signature`.
    pub secret: Option<String>,
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateDeviceInput {
    pub name: String,
    /// Keys of the sensors this device may write.
    pub sensor_keys: Vec<String>,
}

pub(crate) fn check_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    crate::auth::reject_nul(field, value)?;
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_input(
            field,
            format!("needs 1 to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn check_key(field: &str, key: &str) -> ApiResult<String> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(ApiError::bad_input(
            field,
            "a key has 1 to 128 letters, digits or `_ - . :`",
        ))
    }
}

fn finite(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() => Err(ApiError::bad_input(field, "must be a finite number")),
        other => Ok(other),
    }
}

#[derive(Default)]
pub struct SensorMutation;

#[Object]
impl SensorMutation {
    async fn create_sensor(
        &self,
        ctx: &Context<'_>,
        input: CreateSensorInput,
    ) -> async_graphql::Result<Sensor> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let key = check_key("input.key", &input.key)?;
        let name = check_text("input.name", &input.name, 200)?;
        let unit = input.unit.trim().chars().take(32).collect::<String>();
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let taken = sensors::Entity::find()
            .filter(sensors::Column::Key.eq(&key))
            .count(&txn)
            .await
            .map_err(ApiError::from)?
            > 0;
        if taken {
            return Err(ApiError::bad_input("input.key", "a sensor has this key already").into());
        }
        let sensor = sensors::ActiveModel {
            key: Set(key.clone()),
            name: Set(name),
            unit: Set(unit),
            device_id: Set(None),
            eval_cursor: Set(0),
            last_reading_at: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "sensor.create",
                &format!("sensor:{key}"),
                json!({ "id": sensor.id }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(sensor.into())
    }

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

    async fn create_channel(
        &self,
        ctx: &Context<'_>,
        input: CreateChannelInput,
    ) -> async_graphql::Result<Channel> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let name = check_text("input.name", &input.name, 200)?;
        let (url, secret) = match input.kind {
            ChannelKind::Webhook => {
                let url = input
                    .url
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_input("input.url", "a WEBHOOK channel needs a url")
                    })?;
                let parsed = reqwest_url(url).ok_or_else(|| {
                    ApiError::bad_input("input.url", "enter an http:// or https:// address")
                })?;
                check_destination(&shared.config, &parsed)?;
                let secret = input
                    .secret
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_input(
                            "input.secret",
                            "a WEBHOOK channel needs a secret: the key of the HMAC signature receivers check",
                        )
                    })?;
                crate::auth::reject_nul("input.secret", &secret)?;
                if secret.len() > 512 {
                    return Err(ApiError::bad_input("input.secret", "at most 512 bytes").into());
                }
                (Some(parsed), Some(secret))
            }
            ChannelKind::InApp => (None, None),
        };
        let channel = channels::ActiveModel {
            name: Set(name),
            kind: Set(input.kind.name().to_owned()),
            url: Set(url),
            secret: Set(secret),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&shared.db)
        .await
        .map_err(ApiError::from)?;
        shared
            .audit(
                &shared.db,
                Some(admin.user_id),
                "channel.create",
                &format!("channel:{}", channel.id),
                json!({ "kind": channel.kind, "url": channel.url.as_deref().map(redacted_url) }),
            )
            .await?;
        Ok(Channel::view(channel, admin.role))
    }

    /// Registers a device and answers its API key, shown this once.
    async fn create_device(
        &self,
        ctx: &Context<'_>,
        input: CreateDeviceInput,
    ) -> async_graphql::Result<CreatedDevice> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let name = check_text("input.name", &input.name, 200)?;
        if input.sensor_keys.is_empty() || input.sensor_keys.len() > 1000 {
            return Err(ApiError::bad_input("input.sensorKeys", "name 1 to 1000 sensors").into());
        }
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let found = sensors::Entity::find()
            .filter(sensors::Column::Key.is_in(input.sensor_keys.clone()))
            .all(&txn)
            .await
            .map_err(ApiError::from)?;
        for (i, key) in input.sensor_keys.iter().enumerate() {
            match found.iter().find(|s| &s.key == key) {
                None => {
                    return Err(ApiError::bad_input(
                        format!("input.sensorKeys.{i}"),
                        format!("no sensor has key {key:?}"),
                    )
                    .into());
                }
                Some(s) if s.device_id.is_some() => {
                    return Err(ApiError::bad_input(
                        format!("input.sensorKeys.{i}"),
                        format!("sensor {key:?} already belongs to another device"),
                    )
                    .into());
                }
                Some(_) => {}
            }
        }
        let (api_key, hash) = new_secret("sfd_");
        let device = devices::ActiveModel {
            name: Set(name),
            api_key_hash: Set(hash),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&txn)
        .await
        .map_err(ApiError::from)?;
        sensors::Entity::update_many()
            .col_expr(
                sensors::Column::DeviceId,
                sea_orm::sea_query::Expr::value(device.id),
            )
            .filter(sensors::Column::Key.is_in(input.sensor_keys.clone()))
            .exec(&txn)
            .await
            .map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "device.create",
                &format!("device:{}", device.id),
                json!({ "sensors": input.sensor_keys }),
            )
            .await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(CreatedDevice {
            device: Device {
                id: ID(device.id.to_string()),
                name: device.name,
                sensor_keys: input.sensor_keys,
                created_at: device.created_at,
                revoked_at: None,
            },
            api_key,
        })
    }
}

/// Refuses a webhook whose host is an IP literal the workers would refuse (loopback, private,
/// link-local) now, rather than at its first delivery. Names are checked at send time, on
/// what they resolve to then.
pub fn check_destination(config: &crate::ApiConfig, url: &str) -> ApiResult<()> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let policy = workflows::jobs::notify::DestinationPolicy::allowing(
        config.pools.webhook_allow_networks.iter().copied(),
    );
    if let Some(reason) = host
        .parse::<std::net::IpAddr>()
        .ok()
        .and_then(|ip| policy.refusal(ip))
    {
        return Err(ApiError::bad_input("input.url", reason));
    }
    Ok(())
}

/// An absolute http(s) URL with a host, normalised; `None` otherwise.
fn reqwest_url(raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty()
        || host.chars().any(char::is_whitespace)
        || raw.contains('\0')
        || raw.len() > 2048
    {
        return None;
    }
    Some(raw.to_owned())
}
