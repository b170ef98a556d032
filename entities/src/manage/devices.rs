//! Devices and the sensors each may write. A sensor belongs to at most one device; creating,
//! editing or deleting a device moves sensors between it and "no device" in one transaction,
//! and a key is only ever stored hashed (the caller makes the key and shows it once).

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, Set, sea_query::Expr, sea_query::ExprTrait,
};
use serde_json::{Value, json};

use super::{Actor, ManageError, check_version, update_if_version};
use crate::{devices, sensors};

/// How many sensors one device may write.
pub const MAX_SENSORS: usize = 1000;

/// A device with the keys of the sensors it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWithSensors {
    pub device: devices::Model,
    pub sensor_keys: Vec<String>,
}

fn audited(d: &DeviceWithSensors) -> Value {
    json!({
        "name": d.device.name,
        "sensors": d.sensor_keys,
        "revoked": d.device.revoked_at.is_some(),
        "version": d.device.version,
    })
}

/// What an edit changes; `None` leaves it as it is.
#[derive(Debug, Clone, Default)]
pub struct DeviceEdit {
    pub name: Option<String>,
    pub sensor_keys: Option<Vec<String>>,
}

pub async fn sensor_keys(
    db: &impl ConnectionTrait,
    device: i64,
) -> Result<Vec<String>, sea_orm::DbErr> {
    Ok(sensors::Entity::find()
        .filter(sensors::Column::DeviceId.eq(device))
        .order_by_asc(sensors::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(|s| s.key)
        .collect())
}

async fn with_sensors(
    db: &impl ConnectionTrait,
    device: devices::Model,
) -> Result<DeviceWithSensors, ManageError> {
    let sensor_keys = sensor_keys(db, device.id).await?;
    Ok(DeviceWithSensors {
        device,
        sensor_keys,
    })
}

/// Gives `device` exactly the sensors `keys`: each must exist and belong to no other device;
/// sensors it wrote and no longer names are released.
async fn assign_sensors(
    db: &impl ConnectionTrait,
    device: i64,
    keys: &[String],
) -> Result<(), ManageError> {
    if keys.is_empty() || keys.len() > MAX_SENSORS {
        return Err(ManageError::refused(
            "sensorKeys",
            format!("name 1 to {MAX_SENSORS} sensors"),
        ));
    }
    let found = sensors::Entity::find()
        .filter(sensors::Column::Key.is_in(keys.to_vec()))
        .all(db)
        .await?;
    for (i, key) in keys.iter().enumerate() {
        match found.iter().find(|s| &s.key == key) {
            None => {
                return Err(ManageError::refused(
                    format!("sensorKeys.{i}"),
                    format!("no sensor has key {key:?}"),
                ));
            }
            Some(s) if s.device_id.is_some_and(|owner| owner != device) => {
                return Err(ManageError::refused(
                    format!("sensorKeys.{i}"),
                    format!("sensor {key:?} already belongs to another device"),
                ));
            }
            Some(_) => {}
        }
    }
    release_sensors(db, device, keys).await?;
    // A compare-and-set: a sensor another device claimed since the check above (a concurrent
    // edit, on PostgreSQL) is not taken from it, and the whole edit is refused instead.
    let claimed = sensors::Entity::update_many()
        .col_expr(sensors::Column::DeviceId, Expr::value(device))
        .filter(sensors::Column::Key.is_in(keys.to_vec()))
        .filter(
            sensors::Column::DeviceId
                .is_null()
                .or(sensors::Column::DeviceId.eq(device)),
        )
        .exec(db)
        .await?;
    let distinct = keys.iter().collect::<std::collections::HashSet<_>>().len() as u64;
    if claimed.rows_affected != distinct {
        return Err(ManageError::refused(
            "sensorKeys",
            "another device took one of these sensors meanwhile: reload and try again",
        ));
    }
    Ok(())
}

/// Frees the sensors `device` writes, except those in `keep`.
async fn release_sensors(
    db: &impl ConnectionTrait,
    device: i64,
    keep: &[String],
) -> Result<(), sea_orm::DbErr> {
    let mut release = sensors::Entity::update_many()
        .col_expr(sensors::Column::DeviceId, Expr::value(Option::<i64>::None))
        .filter(sensors::Column::DeviceId.eq(device));
    if !keep.is_empty() {
        release = release.filter(sensors::Column::Key.is_not_in(keep.to_vec()));
    }
    release.exec(db).await?;
    Ok(())
}

/// Registers a device writing `sensor_keys`, with the hash of the key the caller made.
pub async fn create(
    db: &DatabaseConnection,
    actor: &Actor,
    name: String,
    sensor_keys: &[String],
    api_key_hash: String,
) -> Result<DeviceWithSensors, ManageError> {
    let txn = crate::begin_write(db).await?;
    let device = devices::ActiveModel {
        name: Set(name),
        api_key_hash: Set(api_key_hash),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&txn)
    .await?;
    assign_sensors(&txn, device.id, sensor_keys).await?;
    let after = with_sensors(&txn, device).await?;
    actor
        .audit(
            &txn,
            "device.create",
            &format!("device:{}", after.device.id),
            json!({ "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}

/// Renames a device or changes the sensors it writes, against the version read.
pub async fn update(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected: i64,
    edit: DeviceEdit,
) -> Result<DeviceWithSensors, ManageError> {
    change(
        db,
        actor,
        id,
        Some(expected),
        "device.update",
        |txn, active| {
            Box::pin(async move {
                if let Some(name) = edit.name {
                    active.name = Set(name);
                }
                if let Some(keys) = edit.sensor_keys {
                    assign_sensors(txn, id, &keys).await?;
                }
                Ok(())
            })
        },
    )
    .await
}

/// Refuses the device's key from its next request on. Revoking a revoked device changes
/// nothing but is audited, so an operator's repeated command leaves a trace.
pub async fn revoke(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected: Option<i64>,
) -> Result<DeviceWithSensors, ManageError> {
    change(db, actor, id, expected, "device.revoke", |_, active| {
        Box::pin(async move {
            if matches!(active.revoked_at, sea_orm::ActiveValue::Unchanged(None)) {
                active.revoked_at = Set(Some(Utc::now()));
            }
            Ok(())
        })
    })
    .await
}

/// Replaces the device's key with the one hashed to `api_key_hash` (the old key is refused from
/// now on); a revoked device is reinstated.
pub async fn rotate_key(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected: Option<i64>,
    api_key_hash: String,
) -> Result<DeviceWithSensors, ManageError> {
    change(db, actor, id, expected, "device.rotate_key", |_, active| {
        Box::pin(async move {
            active.api_key_hash = Set(api_key_hash);
            active.revoked_at = Set(None);
            Ok(())
        })
    })
    .await
}

/// Deletes a device, releasing its sensors (their readings stay). Its key is refused at once.
pub async fn delete(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected: i64,
) -> Result<DeviceWithSensors, ManageError> {
    let txn = crate::begin_write(db).await?;
    let before = read(&txn, id, Some(expected)).await?;
    release_sensors(&txn, id, &[]).await?;
    let gone = devices::Entity::delete_many()
        .filter(devices::Column::Id.eq(id))
        .filter(devices::Column::Version.eq(expected))
        .exec(&txn)
        .await?;
    if gone.rows_affected != 1 {
        return Err(ManageError::Stale {
            what: "device",
            expected,
            current: None,
        });
    }
    actor
        .audit(
            &txn,
            "device.delete",
            &format!("device:{id}"),
            json!({ "before": audited(&before) }),
        )
        .await?;
    txn.commit().await?;
    Ok(before)
}

async fn read(
    db: &impl ConnectionTrait,
    id: i64,
    expected: Option<i64>,
) -> Result<DeviceWithSensors, ManageError> {
    let device = devices::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ManageError::NotFound(format!("no device has id {id}")))?;
    check_version("device", device.version, expected)?;
    with_sensors(db, device).await
}

type Change<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ManageError>> + Send + 'a>>;

/// Reads device `id`, refuses a stale `expected`, applies `apply`, writes it with its version
/// raised (compare-and-set) and audits `action` with the device before and after.
async fn change<F>(
    db: &DatabaseConnection,
    actor: &Actor,
    id: i64,
    expected: Option<i64>,
    action: &str,
    apply: F,
) -> Result<DeviceWithSensors, ManageError>
where
    F: for<'a> FnOnce(&'a sea_orm::DatabaseTransaction, &'a mut devices::ActiveModel) -> Change<'a>,
{
    let txn = crate::begin_write(db).await?;
    let before = read(&txn, id, expected).await?;
    let mut active: devices::ActiveModel = before.device.clone().into();
    apply(&txn, &mut active).await?;
    active.version = Set(before.device.version + 1);
    active.updated_at = Set(Some(Utc::now()));
    let device = update_if_version(
        &txn,
        active,
        devices::Column::Version,
        before.device.version,
        "device",
    )
    .await?;
    let after = with_sensors(&txn, device).await?;
    actor
        .audit(
            &txn,
            action,
            &format!("device:{id}"),
            json!({ "before": audited(&before), "after": audited(&after) }),
        )
        .await?;
    txn.commit().await?;
    Ok(after)
}
