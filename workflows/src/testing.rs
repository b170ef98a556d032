//! Fixtures for tests of this and other crates: sensors, rules and channels.

use chrono::Utc;
use entities::{channels, rule_channels, rules, sensors};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};

pub async fn sensor(db: &DatabaseConnection, key: &str) -> sensors::Model {
    sensors::ActiveModel {
        key: Set(key.into()),
        name: Set(key.into()),
        unit: Set("°C".into()),
        device_id: Set(None),
        eval_cursor: Set(0),
        last_reading_at: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("sensor")
}

/// A rule of `kind` (`ABOVE`, `BELOW`, `RATE_OF_CHANGE`) for `n` consecutive readings.
pub async fn rule(
    db: &DatabaseConnection,
    sensor: i64,
    kind: &str,
    threshold: f64,
    clear: f64,
    n: i32,
    throttle_seconds: i32,
) -> rules::Model {
    rules::ActiveModel {
        sensor_id: Set(sensor),
        kind: Set(kind.into()),
        threshold: Set(Some(threshold)),
        clear_threshold: Set(Some(clear)),
        for_readings: Set(n),
        silence_seconds: Set(None),
        throttle_seconds: Set(throttle_seconds),
        enabled: Set(true),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("rule")
}

/// A channel (`WEBHOOK` or `IN_APP`) that `rule` notifies.
pub async fn channel_for(
    db: &DatabaseConnection,
    rule: i64,
    name: &str,
    kind: &str,
) -> channels::Model {
    let channel = channels::ActiveModel {
        name: Set(name.into()),
        kind: Set(kind.into()),
        url: Set(None),
        secret: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("channel");
    rule_channels::ActiveModel {
        rule_id: Set(rule),
        channel_id: Set(channel.id),
    }
    .insert(db)
    .await
    .expect("rule channel");
    channel
}
