//! Rows the tests start from: sensors, rules and channels; and a quick way to finish a
//! queue's jobs without running them.

use chrono::Utc;
use entities::{
    channels, devices, rule_channels, rules, sensors,
    states::{ChannelKind, RuleKind},
};
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

/// A device (its API key hash is only unique, not usable).
pub async fn device(db: &DatabaseConnection, name: &str) -> devices::Model {
    devices::ActiveModel {
        name: Set(name.into()),
        api_key_hash: Set(format!("test-{name}-{}", ulid_like())),
        created_at: Set(Utc::now()),
        version: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("device")
}

/// A sensor that `device` owns.
pub async fn sensor_of(db: &DatabaseConnection, key: &str, device: i64) -> sensors::Model {
    let sensor = sensor(db, key).await;
    let mut owned: sensors::ActiveModel = sensor.into();
    owned.device_id = Set(Some(device));
    owned.update(db).await.expect("sensor's device")
}

fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
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
        in_breach: Set(false),
        evaluated_to: Set(0),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("rule")
}

/// A `SILENCE` rule: a breach once `sensor` has received nothing for `seconds`.
pub async fn silence_rule(db: &DatabaseConnection, sensor: i64, seconds: i32) -> rules::Model {
    let mut active: rules::ActiveModel =
        rule(db, sensor, RuleKind::Silence.as_str(), 0.0, 0.0, 1, 300)
            .await
            .into();
    active.threshold = Set(None);
    active.clear_threshold = Set(None);
    active.silence_seconds = Set(Some(seconds));
    active.update(db).await.expect("silence rule")
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

/// The secret of channels made by [`webhook_for`].
pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

/// A webhook channel to `url`, signed with [`WEBHOOK_SECRET`], that `rule` notifies.
pub async fn webhook_for(db: &DatabaseConnection, rule: i64, url: &str) -> channels::Model {
    let channel = channel_for(db, rule, "webhook", ChannelKind::Webhook.as_str()).await;
    let mut active: channels::ActiveModel = channel.into();
    active.url = Set(Some(url.into()));
    active.secret = Set(Some(WEBHOOK_SECRET.into()));
    active.update(db).await.expect("webhook channel")
}

/// Leases and completes (succeeded, result `{"ok":true}`) the jobs of `queues` in rounds of up
/// to `per_round` each, until all are empty; returns how many. The steps of the same workflow
/// runs end close together in the event stream, as they do in a live pipeline.
pub async fn complete_interleaved(
    engine: &queue::Engine,
    queues: &[&str],
    per_round: usize,
) -> usize {
    let mut done = 0;
    loop {
        let mut round = 0;
        for queue in queues {
            let fetched = engine
                .fetch(&queue::FetchRequest {
                    queue,
                    worker_id: "w-test",
                    max_jobs: per_round,
                    lease: std::time::Duration::from_secs(60),
                    backoff_base: std::time::Duration::ZERO,
                    backoff_cap: std::time::Duration::ZERO,
                    timeout: None,
                    timeout_grace: std::time::Duration::ZERO,
                })
                .await
                .expect("fetch");
            let outcomes: Vec<_> = fetched
                .jobs
                .iter()
                .map(|j| {
                    let result = Some(r#"{"ok":true}"#.to_owned());
                    (
                        j.id.clone(),
                        j.token.clone(),
                        queue::Outcome::Succeeded { result },
                    )
                })
                .collect();
            round += outcomes.len();
            engine.complete(&outcomes).await.expect("complete");
        }
        if round == 0 {
            return done;
        }
        done += round;
    }
}
