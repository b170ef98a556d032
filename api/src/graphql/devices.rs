//! Devices that write readings with an API key (shown once, stored hashed). Creating, editing,
//! revoking, rotating keys and deleting are admin actions, audited with the device before and
//! after (the checks live in `entities::manage::devices`, shared with the command line). Keys
//! are looked up by hash on every request, so a revoked or replaced key gets 401 from the next
//! request on, on every replica.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entities::{
    devices,
    manage::{
        self, Actor,
        devices::{DeviceEdit, DeviceWithSensors},
    },
    sensors,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{page, require, row_id, sensors::check_text, shared};
use crate::{
    auth::{Role, new_secret},
    error::ApiError,
};

#[derive(Debug, Clone, SimpleObject)]
pub struct Device {
    pub id: ID,
    pub name: String,
    pub sensor_keys: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// When an admin revoked its key; a revoked device gets 401.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Raised by every change; name it as `expectedVersion` to change the device.
    pub version: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

impl Device {
    fn new(device: devices::Model, sensor_keys: Vec<String>) -> Self {
        Self {
            id: ID(device.id.to_string()),
            name: device.name,
            sensor_keys,
            created_at: device.created_at,
            revoked_at: device.revoked_at,
            version: device.version,
            updated_at: device.updated_at,
        }
    }
}

impl From<DeviceWithSensors> for Device {
    fn from(d: DeviceWithSensors) -> Self {
        Device::new(d.device, d.sensor_keys)
    }
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
            .order_by_asc(sensors::Column::Key)
            .all(db)
            .await
            .map_err(ApiError::from)?;
        Ok(rows
            .into_iter()
            .map(|d| {
                let keys = owned
                    .iter()
                    .filter(|s| s.device_id == Some(d.id))
                    .map(|s| s.key.clone())
                    .collect();
                Device::new(d, keys)
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
        let (api_key, hash) = new_secret("sfd_");
        let created = manage::devices::create(
            &shared.db,
            &Actor::User(admin.user_id),
            name,
            &input.sensor_keys,
            hash,
        )
        .await
        .map_err(|e| in_input(e.into()))?;
        Ok(CreatedDevice {
            device: created.into(),
            api_key,
        })
    }

    /// Renames a device or changes the sensors it writes (admin), against the version read:
    /// a stale `expectedVersion` is `CONFLICT` and changes nothing. `sensorKeys`, when given,
    /// is the whole new list: sensors left out are released (their readings stay), and each
    /// named one must belong to no other device.
    async fn update_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
        name: Option<String>,
        sensor_keys: Option<Vec<String>>,
    ) -> async_graphql::Result<Device> {
        let admin = require(ctx, Role::Admin)?;
        let shared = shared(ctx);
        let id = row_id("id", &id)?;
        let name = name.map(|n| check_text("name", &n, 200)).transpose()?;
        let edited = manage::devices::update(
            &shared.db,
            &Actor::User(admin.user_id),
            id,
            expected_version,
            DeviceEdit { name, sensor_keys },
        )
        .await
        .map_err(ApiError::from)?;
        Ok(edited.into())
    }

    /// Revokes a device's key: its next request gets 401. `rotateDeviceKey` gives it a new
    /// one. `expectedVersion`, when given, refuses the change if the device changed since.
    async fn revoke_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Device> {
        let admin = require(ctx, Role::Admin)?;
        let id = row_id("id", &id)?;
        let revoked = manage::devices::revoke(
            &shared(ctx).db,
            &Actor::User(admin.user_id),
            id,
            expected_version,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(revoked.into())
    }

    /// Gives a device a new key, shown this once; the old key gets 401 from now on. A revoked
    /// device is reinstated with the new key.
    async fn rotate_device_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<CreatedDevice> {
        let admin = require(ctx, Role::Admin)?;
        let id = row_id("id", &id)?;
        let (api_key, hash) = new_secret("sfd_");
        let rotated = manage::devices::rotate_key(
            &shared(ctx).db,
            &Actor::User(admin.user_id),
            id,
            expected_version,
            hash,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(CreatedDevice {
            device: rotated.into(),
            api_key,
        })
    }

    /// Deletes a device (admin), against the version read: its key is refused at once and its
    /// sensors are released (their readings and rules stay). Answers the device as it was.
    async fn delete_device(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: i64,
    ) -> async_graphql::Result<Device> {
        let admin = require(ctx, Role::Admin)?;
        let id = row_id("id", &id)?;
        let deleted = manage::devices::delete(
            &shared(ctx).db,
            &Actor::User(admin.user_id),
            id,
            expected_version,
        )
        .await
        .map_err(ApiError::from)?;
        Ok(deleted.into())
    }
}

/// `createDevice` takes one input object: its fields are named under `input.`.
fn in_input(mut e: ApiError) -> ApiError {
    if let Some(field) = e.field.take() {
        e.field = Some(format!("input.{field}"));
    }
    e
}
