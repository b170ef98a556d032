//! Revoking and rotating device keys (admin, audited). Keys are looked up by hash on every
//! request, so a revoked or replaced key gets 401 from the next request on, on every replica.

use async_graphql::{Context, ID, Object};
use chrono::Utc;
use entities::{devices, sensors};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TransactionTrait};
use serde_json::json;

use super::{
    require, row_id,
    sensors::{CreatedDevice, Device},
    shared,
};
use crate::{
    auth::{Role, new_secret},
    error::{ApiError, ApiResult},
};

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
    /// Revokes a device's key: its next request gets 401. `rotateDeviceKey` gives it a new
    /// one.
    async fn revoke_device(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Device> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let txn = shared.db.begin().await.map_err(ApiError::from)?;
        let device = devices::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no device has id {id}")))?;
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
        let device = devices::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(format!("no device has id {id}")))?;
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
