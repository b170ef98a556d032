//! One MQTT message from a device, judged: an `ingest` job to push, or a rejection saying why
//! not. The same checks as `POST /api/sensors/data`: the payload decodes as an `ingest` batch,
//! the device exists and is not revoked, and it owns every sensor, each switched on.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use entities::{devices, sensors};
use queue::{KeyScope, NewJob};
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use workflows::jobs::ingest::{Ingest, device_may_write};

/// The MQTT 5 user property a device may set to name its message; a redelivery or a resend
/// under the same name makes no second job.
pub const MESSAGE_ID_PROPERTY: &str = "message-id";

/// What became of a message.
#[derive(Debug)]
pub enum Verdict {
    Push {
        device: i64,
        topic: String,
        job: NewJob,
    },
    Reject(Rejection),
}

/// Why a message was refused, as published on the rejection topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The device the topic names, when it names one.
    pub device: Option<i64>,
    pub topic: String,
    /// `bad_topic`, `not_json`, `invalid`, `unknown_device`, `device_revoked`,
    /// `unknown_sensor`, `foreign_sensor`, `sensor_disabled`, `refused`.
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// The device a readings topic names: `{prefix}/devices/{id}/readings`.
pub fn device_of(prefix: &str, topic: &str) -> Option<i64> {
    let rest = topic.strip_prefix(prefix)?.strip_prefix("/devices/")?;
    let text = rest.strip_suffix("/readings")?;
    // Only the canonical form ("12", not "012" or "+12"): the broker's ACL pins the exact text.
    text.parse()
        .ok()
        .filter(|id: &i64| *id > 0 && id.to_string() == text)
}

/// A message that decoded: what is left to check needs the database.
#[derive(Debug)]
pub struct Decoded {
    device: i64,
    topic: String,
    message_id: Option<String>,
    digest: String,
    ingest: Ingest,
}

/// The checks that need no database: the topic names a device, the message id is sound, the
/// payload is JSON and an `ingest` batch.
pub fn decode(
    prefix: &str,
    topic: &str,
    payload: &[u8],
    message_id: Option<&str>,
) -> Result<Decoded, Box<Rejection>> {
    let reject = |device, reason, field: Option<String>, message: String| {
        Box::new(Rejection {
            device,
            topic: topic.to_owned(),
            reason,
            field,
            message,
            message_id: message_id.map(str::to_owned),
        })
    };
    let Some(device) = device_of(prefix, topic) else {
        return Err(reject(
            None,
            "bad_topic",
            None,
            format!("publish readings to {prefix}/devices/<device id>/readings"),
        ));
    };
    if let Some(id) = message_id
        && (id.is_empty() || id.len() > 256)
    {
        return Err(reject(
            Some(device),
            "invalid",
            Some(MESSAGE_ID_PROPERTY.into()),
            "the message id must be 1 to 256 characters".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| {
        reject(
            Some(device),
            "not_json",
            None,
            format!("the payload is not JSON: {e}"),
        )
    })?;
    let ingest: Ingest = workflows::decode_payload(value)
        .map_err(|e| reject(Some(device), "invalid", Some(e.field), e.message))?;
    Ok(Decoded {
        device,
        topic: topic.to_owned(),
        message_id: message_id.map(str::to_owned),
        digest: hex::encode(Sha256::digest(payload)),
        ingest,
    })
}

/// Judges decoded messages against the database, looking up their devices and sensors once
/// for all of them (two queries, however many messages). `key_ttl`: how long each job's
/// idempotency key holds.
pub async fn judge(
    db: &DatabaseConnection,
    decoded: Vec<Decoded>,
    key_ttl: Duration,
) -> Result<Vec<Verdict>, DbErr> {
    if decoded.is_empty() {
        return Ok(Vec::new());
    }
    let device_ids: BTreeSet<i64> = decoded.iter().map(|d| d.device).collect();
    let devices: HashMap<i64, devices::Model> = devices::Entity::find()
        .filter(devices::Column::Id.is_in(device_ids))
        .all(db)
        .await?
        .into_iter()
        .map(|d| (d.id, d))
        .collect();
    let keys: BTreeSet<&str> = decoded
        .iter()
        .flat_map(|d| d.ingest.readings.iter().map(|r| r.sensor.as_str()))
        .collect();
    let mut found = Vec::new();
    let keys: Vec<&str> = keys.into_iter().collect();
    for chunk in keys.chunks(500) {
        found.extend(
            sensors::Entity::find()
                .filter(sensors::Column::Key.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    Ok(decoded
        .into_iter()
        .map(|d| verdict(d, &devices, &found, key_ttl))
        .collect())
}

fn verdict(
    d: Decoded,
    devices: &HashMap<i64, devices::Model>,
    found: &[sensors::Model],
    key_ttl: Duration,
) -> Verdict {
    let reject = |reason, field: Option<String>, message: String| {
        Verdict::Reject(Rejection {
            device: Some(d.device),
            topic: d.topic.clone(),
            reason,
            field,
            message,
            message_id: d.message_id.clone(),
        })
    };
    match devices.get(&d.device) {
        None => {
            return reject(
                "unknown_device",
                None,
                format!("no device has id {}", d.device),
            );
        }
        Some(device) if device.revoked_at.is_some() => {
            return reject("device_revoked", None, "this device was revoked".into());
        }
        Some(_) => {}
    }
    if let Err(refusal) = device_may_write(found, d.device, &d.ingest) {
        return reject(refusal.reason(), Some(refusal.field()), refusal.to_string());
    }
    let job = match workflows::jobs::ingest_submission(&d.ingest) {
        Ok(job) => job,
        Err(e) => return reject("invalid", None, e.to_string()),
    };
    // Scoped to the device. Without a message id the payload itself names the message (a
    // reading carries its time), so a redelivery after a lost acknowledgement is recognised;
    // with one, the payload's hash rides along, so a device whose counter restarts (a reboot)
    // loses nothing to an id it used before for other readings.
    let key = match &d.message_id {
        Some(id) => format!("device:{}:mqtt:{id}:{}", d.device, &d.digest[..16]),
        None => format!("device:{}:mqtt-sha256:{}", d.device, d.digest),
    };
    Verdict::Push {
        device: d.device,
        topic: d.topic,
        job: job.with_idempotency_key(key, KeyScope::For(Some(key_ttl))),
    }
}

#[cfg(test)]
mod tests {
    use super::device_of;

    #[test]
    fn only_a_readings_topic_with_a_positive_device_id_names_a_device() {
        assert_eq!(device_of("sf", "sf/devices/12/readings"), Some(12));
        assert_eq!(device_of("sf", "sf/devices/0/readings"), None);
        assert_eq!(device_of("sf", "sf/devices/x/readings"), None);
        assert_eq!(device_of("sf", "sf/devices/12/other"), None);
        assert_eq!(device_of("sf", "other/devices/12/readings"), None);
        assert_eq!(device_of("sf", "sf/devices/1/2/readings"), None);
        assert_eq!(device_of("sf", "sf/devices/012/readings"), None);
        assert_eq!(device_of("sf", "sf/devices/+12/readings"), None);
    }
}
