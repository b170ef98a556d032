//! Devices that write readings with an API key (shown once, stored hashed). Creating,
//! revoking and rotating keys are admin actions, audited. Keys are looked up by hash on every
//! request, so a revoked or replaced key gets 401 from the next request on, on every replica.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{devices, sensors};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use serde_json::json;

use super::{page, require, row_id, row_or_not_found, sensors::check_text, shared};
use crate::{
    auth::{Role, new_secret},
    error::{ApiError, ApiResult},
};

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

#[derive(Default)]
pub struct DeviceQuery;

#[Object]
impl DeviceQuery {
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
pub struct CreateDeviceInput {
    pub name: String,
    /// Keys of the sensors this device may write.
    pub sensor_keys: Vec<String>,
}

#[derive(Default)]
pub struct DeviceMutation;

async fn device_view(
    db: &impl sea_orm::ConnectionTrait,
    device: devices::Model,
) -> ApiResult<Device> {
    let sensor_keys = sensors::Entity::find()
        .filter(sensors::Column::DeviceId.eq(device.id))
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.key)
        .collect();
    Ok(Device {
        id: ID(device.id.to_string()),
        name: device.name,
        sensor_keys,
        created_at: device.created_at,
        revoked_at: device.revoked_at,
    })
}

#[Object]
impl DeviceMutation {
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

    /// Revokes a device's key: its next request gets 401. `rotateDeviceKey` gives it a new
    /// one.
    async fn revoke_device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Device> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let device = row_or_not_found::<devices::Entity>(&txn, id, "device").await?;
        let already = device.revoked_at.is_some();
        let mut active: devices::ActiveModel = device.into();
        if !already {
            active.revoked_at = Set(Some(Utc::now()));
        }
        let device = active.update(&txn).await.map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "device.revoke",
                &format!("device:{id}"),
                json!({ "name": device.name, "alreadyRevoked": already }),
            )
            .await?;
        let view = device_view(&txn, device).await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(view)
    }

    /// Gives a device a new key, shown this once; the old key gets 401 from now on. A revoked
    /// device is reinstated with the new key.
    async fn rotate_device_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<CreatedDevice> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let device = row_or_not_found::<devices::Entity>(&txn, id, "device").await?;
        let was_revoked = device.revoked_at.is_some();
        let (api_key, hash) = new_secret("sfd_");
        let mut active: devices::ActiveModel = device.into();
        active.api_key_hash = Set(hash);
        active.revoked_at = Set(None);
        let device = active.update(&txn).await.map_err(ApiError::from)?;
        shared
            .audit(
                &txn,
                Some(admin.user_id),
                "device.rotate_key",
                &format!("device:{id}"),
                json!({ "name": device.name, "wasRevoked": was_revoked }),
            )
            .await?;
        let view = device_view(&txn, device).await?;
        txn.commit().await.map_err(ApiError::from)?;
        Ok(CreatedDevice {
            device: view,
            api_key,
        })
    }
}
