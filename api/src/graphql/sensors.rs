//! Sensors with their status and readings. Creating and editing one are admin actions,
//! audited (an edit with the sensor before and after, against the version it read); their
//! rules, the channels alerts go to and the devices that write them have modules of their own.

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{alerts, readings, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde_json::json;

use super::rules::{Rule, rules_of};
use super::{check_version, page, require, shared, update_if_version};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
    state::SharedState,
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
    /// False once an admin switched it off: its readings are refused.
    pub enabled: bool,
    /// Raised by every edit; an edit names the version it read (`expectedVersion`).
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: Option<DateTime<Utc>>,
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
            enabled: s.disabled_at.is_none(),
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
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
}

#[derive(Debug, Clone, InputObject)]
pub struct CreateSensorInput {
    /// 1 to 128 characters of letters, digits and `_ - . :`; never changes.
    pub key: String,
    pub name: String,
    pub unit: String,
}

/// The fields to change; absent ones keep their value. The key never changes: devices and
/// jobs name the sensor by it.
#[derive(Debug, Clone, Default, InputObject)]
pub struct UpdateSensorInput {
    pub name: Option<String>,
    pub unit: Option<String>,
}

fn check_unit(unit: &str) -> ApiResult<String> {
    crate::auth::reject_nul("input.unit", unit)?;
    Ok(unit.trim().chars().take(32).collect())
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
        let unit = check_unit(&input.unit)?;
        let txn = entities::begin_write(&shared.db)
            .await
            .map_err(ApiError::from)?;
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
            version: Set(1),
            updated_at: Set(None),
            disabled_at: Set(None),
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

    /// Renames a sensor or changes its unit (admin). `expectedVersion` is the version the edit
    /// was made against: if the sensor changed since, nothing is written (`CONFLICT`).
    async fn update_sensor(
        &self,
        ctx: &Context<'_>,
        key: String,
        expected_version: i64,
        input: UpdateSensorInput,
    ) -> async_graphql::Result<Sensor> {
        let admin = require(ctx, Role::Admin)?;
        let name = input
            .name
            .as_deref()
            .map(|n| check_text("input.name", n, 200))
            .transpose()?;
        let unit = input.unit.as_deref().map(check_unit).transpose()?;
        let edited = edit_sensor(
            shared(ctx),
            admin.user_id,
            "sensor.update",
            &key,
            expected_version,
            |_, active| {
                if let Some(name) = name {
                    active.name = Set(name);
                }
                if let Some(unit) = unit {
                    active.unit = Set(unit);
                }
            },
        )
        .await?;
        Ok(edited.into())
    }

    /// Switches a sensor off or on again (admin). Switched off, its readings are refused: the
    /// device's POST answers why, and readings already queued are dropped by `ingest` (counted
    /// as `refused`); its silence rules stay quiet. Its history and rules are kept.
    async fn set_sensor_enabled(
        &self,
        ctx: &Context<'_>,
        key: String,
        enabled: bool,
        expected_version: i64,
    ) -> async_graphql::Result<Sensor> {
        let admin = require(ctx, Role::Admin)?;
        let edited = edit_sensor(
            shared(ctx),
            admin.user_id,
            if enabled {
                "sensor.enable"
            } else {
                "sensor.disable"
            },
            &key,
            expected_version,
            |before, active| {
                active.disabled_at = Set(if enabled {
                    None
                } else {
                    before.disabled_at.or(Some(Utc::now()))
                });
            },
        )
        .await?;
        Ok(edited.into())
    }
}

/// The sensor as the audit log keeps it (before and after an edit).
fn audited(s: &sensors::Model) -> serde_json::Value {
    json!({ "name": s.name, "unit": s.unit, "enabled": s.disabled_at.is_none(), "version": s.version })
}

/// Edits the sensor `key` in one transaction: reads it, refuses a stale `expected` version,
/// applies `change`, writes it with its version raised (a compare-and-set), and audits it as
/// `action` with the sensor before and after.
async fn edit_sensor(
    shared: &SharedState,
    actor: i64,
    action: &str,
    key: &str,
    expected: i64,
    change: impl FnOnce(&sensors::Model, &mut sensors::ActiveModel),
) -> ApiResult<sensors::Model> {
    let txn = entities::begin_write(&shared.db).await?;
    let before = sensors::Entity::find()
        .filter(sensors::Column::Key.eq(key))
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no sensor has key {key:?}")))?;
    check_version("sensor", before.version, expected)?;
    let mut active: sensors::ActiveModel = before.clone().into();
    change(&before, &mut active);
    active.version = Set(expected + 1);
    active.updated_at = Set(Some(Utc::now()));
    let after =
        update_if_version(&txn, active, sensors::Column::Version, expected, "sensor").await?;
    shared
        .audit(
            &txn,
            Some(actor),
            action,
            &format!("sensor:{key}"),
            json!({ "before": audited(&before), "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}
