//! One MQTT message from a device, judged: an `ingest` job to push, or a rejection saying why
//! not. The same checks as `POST /api/sensors/data`: the payload decodes as an `ingest` batch,
//! the device exists and is not revoked, and it owns every sensor, each switched on.

use entities::devices;
use queue::{KeyScope, NewJob};
use sea_orm::{DatabaseConnection, DbErr, EntityTrait};
use serde::Serialize;
use sha2::{Digest, Sha256};
use workflows::jobs::ingest::{Ingest, check_device_sensors};

/// The MQTT 5 user property a device may set to name its message; a redelivery or a resend
/// under the same name makes no second job.
pub const MESSAGE_ID_PROPERTY: &str = "message-id";

/// What became of a message.
#[derive(Debug)]
pub enum Verdict {
    Push { device: i64, job: NewJob },
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
    let id = rest.strip_suffix("/readings")?;
    id.parse().ok().filter(|id| *id > 0)
}

/// Judges one message. Only a database failure is an error: the message is then neither
/// pushed nor rejected, and is judged again later.
pub async fn judge(
    db: &DatabaseConnection,
    prefix: &str,
    topic: &str,
    payload: &[u8],
    message_id: Option<&str>,
) -> Result<Verdict, DbErr> {
    let reject = |device, reason, field: Option<String>, message: String| {
        Ok(Verdict::Reject(Rejection {
            device,
            topic: topic.to_owned(),
            reason,
            field,
            message,
            message_id: message_id.map(str::to_owned),
        }))
    };
    let Some(device) = device_of(prefix, topic) else {
        return reject(
            None,
            "bad_topic",
            None,
            format!("publish readings to {prefix}/devices/<device id>/readings"),
        );
    };
    if let Some(id) = message_id
        && (id.is_empty() || id.len() > 256)
    {
        return reject(
            Some(device),
            "invalid",
            Some(MESSAGE_ID_PROPERTY.into()),
            "the message id must be 1 to 256 characters".into(),
        );
    }
    let value: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(value) => value,
        Err(e) => {
            return reject(
                Some(device),
                "not_json",
                None,
                format!("the payload is not JSON: {e}"),
            );
        }
    };
    let ingest: Ingest = match workflows::decode_payload(value) {
        Ok(ingest) => ingest,
        Err(e) => return reject(Some(device), "invalid", Some(e.field), e.message),
    };
    match devices::Entity::find_by_id(device).one(db).await? {
        None => {
            return reject(
                Some(device),
                "unknown_device",
                None,
                format!("no device has id {device}"),
            );
        }
        Some(d) if d.revoked_at.is_some() => {
            return reject(
                Some(device),
                "device_revoked",
                None,
                "this device was revoked".into(),
            );
        }
        Some(_) => {}
    }
    if let Err(refusal) = check_device_sensors(db, device, &ingest).await? {
        return reject(
            Some(device),
            refusal.reason(),
            Some(refusal.field()),
            refusal.to_string(),
        );
    }
    let job = match workflows::jobs::ingest_submission(&ingest) {
        Ok(job) => job,
        Err(e) => return reject(Some(device), "invalid", None, e.to_string()),
    };
    // Scoped to the device, as the HTTP path scopes its Idempotency-Key; without a message id
    // the payload itself names the message (a reading carries its time), so a redelivery
    // after a lost acknowledgement is recognised.
    let key = match message_id {
        Some(id) => format!("device:{device}:{id}"),
        None => format!(
            "device:{device}:mqtt-sha256:{}",
            hex::encode(Sha256::digest(payload))
        ),
    };
    Ok(Verdict::Push {
        device,
        job: job.with_idempotency_key(key, KeyScope::For(None)),
    })
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
    }
}
