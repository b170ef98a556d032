//! `alert`: opens the alert of a rule and sensor, raises its count, or resolves it.
//!
//! There is one open alert per rule and sensor: `open_key` is unique while the alert is open.
//! The handler is idempotent per reading: an alert remembers the last reading applied to it, and
//! an older or equal one changes nothing. When an alert opens, and after that at most once per
//! throttle window, each channel of the rule gets a `notify` job. Its key is made of alert,
//! channel and reading. A retry of the job that notified, after a crash between commit and
//! enqueue, sends the same jobs again under the same keys.

use std::time::Duration;

use chrono::Utc;
use entities::{alerts, readings, rule_channels, rules, sensors};
use queue::{Engine, KeyScope, NewJob, PushOutcome, RetryPolicy};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryFilter,
    Set, TransactionTrait, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize};

use crate::{HandlerError, Job, JobPolicy, ValidationError, jobs::notify::Notify};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub rule: i64,
    /// The sensor's key.
    pub sensor: String,
    /// The reading that breached (or cleared).
    pub reading: i64,
    /// True for a breach, false for a return inside the clear threshold.
    pub breach: bool,
}

impl Job for Alert {
    const KIND: &'static str = "alert";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 10,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(120),
            },
            visibility_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.rule <= 0 {
            return Err(ValidationError::new("rule", "must be a rule id"));
        }
        if self.reading <= 0 {
            return Err(ValidationError::new("reading", "must be a reading id"));
        }
        if self.sensor.is_empty() || self.sensor.len() > 128 {
            return Err(ValidationError::new(
                "sensor",
                "must be 1 to 128 characters",
            ));
        }
        Ok(())
    }
}

/// What one run did to the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub alert_id: Option<i64>,
    pub change: Change,
    pub notifications: Vec<PushOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Raised,
    Resolved,
    /// Already applied (a retry), or a clear with no open alert.
    Unchanged,
}

/// Applies one breach or clear of a rule on a sensor.
pub async fn run(
    db: &DatabaseConnection,
    engine: &Engine,
    payload: &Alert,
) -> Result<Applied, HandlerError> {
    payload.validate()?;
    let rule = rules::Entity::find_by_id(payload.rule)
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Permanent(format!("unknown rule {}", payload.rule)))?;
    let sensor = sensors::Entity::find()
        .filter(sensors::Column::Key.eq(&payload.sensor))
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Permanent(format!("unknown sensor '{}'", payload.sensor)))?;
    let reading = readings::Entity::find_by_id(payload.reading)
        .one(db)
        .await?
        .filter(|r| r.sensor_id == sensor.id && rule.sensor_id == sensor.id)
        .ok_or_else(|| {
            HandlerError::Permanent(format!(
                "reading {} of sensor '{}' under rule {} does not exist",
                payload.reading, payload.sensor, payload.rule
            ))
        })?;
    let open_key = format!("{}:{}", rule.id, sensor.id);
    let now = Utc::now();
    let txn = db.begin().await?;
    let open = alerts::Entity::find()
        .filter(alerts::Column::OpenKey.eq(&open_key))
        .one(&txn)
        .await?;
    let (alert, change, notify) = match (open, payload.breach) {
        (None, false) => (None, Change::Unchanged, false),
        (Some(alert), _) if reading.id <= alert.last_reading_id => {
            // Already applied: only a retry of the job that notified sends again.
            let again = alert.last_notified_reading_id == Some(reading.id);
            (Some(alert), Change::Unchanged, again)
        }
        (None, true) => {
            let fresh = alerts::ActiveModel {
                rule_id: Set(rule.id),
                sensor_id: Set(sensor.id),
                state: Set("OPEN".into()),
                open_key: Set(Some(open_key.clone())),
                count: Set(1),
                opened_reading_id: Set(reading.id),
                last_reading_id: Set(reading.id),
                workflow_run_id: Set(Some(reading.ingest_job_id.clone())),
                opened_at: Set(now),
                updated_at: Set(now),
                resolved_at: Set(None),
                acknowledged_by: Set(None),
                acknowledged_at: Set(None),
                last_notified_at: Set(Some(now)),
                last_notified_reading_id: Set(Some(reading.id)),
                ..Default::default()
            };
            alerts::Entity::insert(fresh)
                .on_conflict(
                    OnConflict::column(alerts::Column::OpenKey)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
            let alert = alerts::Entity::find()
                .filter(alerts::Column::OpenKey.eq(&open_key))
                .one(&txn)
                .await?
                .ok_or_else(|| {
                    HandlerError::Retryable("the alert vanished while opening".into())
                })?;
            // Another job may have opened it first: then this reading raised it, later.
            if alert.opened_reading_id == reading.id {
                (Some(alert), Change::Opened, true)
            } else {
                txn.rollback().await?;
                return Err(HandlerError::Retryable(
                    "the alert was opened concurrently; applying this reading again".into(),
                ));
            }
        }
        (Some(alert), true) => {
            let throttle = chrono::Duration::seconds(i64::from(rule.throttle_seconds.max(0)));
            let due = alert.last_notified_at.is_none_or(|t| now - t >= throttle);
            let mut active = alert.clone().into_active_model();
            active.count = Set(alert.count + 1);
            active.last_reading_id = Set(reading.id);
            active.updated_at = Set(now);
            if due {
                active.last_notified_at = Set(Some(now));
                active.last_notified_reading_id = Set(Some(reading.id));
            }
            (Some(active.update(&txn).await?), Change::Raised, due)
        }
        (Some(alert), false) => {
            let mut active = alert.into_active_model();
            active.state = Set("RESOLVED".into());
            active.open_key = Set(None);
            active.last_reading_id = Set(reading.id);
            active.resolved_at = Set(Some(now));
            active.updated_at = Set(now);
            (Some(active.update(&txn).await?), Change::Resolved, false)
        }
    };
    txn.commit().await?;

    let mut notifications = Vec::new();
    if let (Some(alert), true) = (&alert, notify) {
        let channels: Vec<i64> = rule_channels::Entity::find()
            .filter(rule_channels::Column::RuleId.eq(rule.id))
            .all(db)
            .await?
            .into_iter()
            .map(|rc| rc.channel_id)
            .collect();
        let policy = Notify::policy();
        let jobs = channels
            .iter()
            .map(|channel| {
                let payload = Notify {
                    channel: *channel,
                    alert: Some(alert.id),
                    message: None,
                };
                NewJob::new(Notify::KIND, &payload).map(|job| {
                    job.with_payload_version(Notify::PAYLOAD_VERSION)
                        .with_max_attempts(policy.retry.max_attempts)
                        .with_workflow_id(alert.workflow_run_id.clone().unwrap_or_default())
                        .with_idempotency_key(
                            format!("notify:{}:{channel}:{}", alert.id, reading.id),
                            KeyScope::For(None),
                        )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !jobs.is_empty() {
            notifications = engine.push_many(jobs).await?;
        }
    }
    if let (Some(alert), true) = (&alert, change != Change::Unchanged) {
        let event = match change {
            Change::Opened => "alert_opened",
            Change::Raised => "alert_updated",
            _ => "alert_resolved",
        };
        let (id, count) = (alert.id.to_string(), alert.count.to_string());
        engine
            .publish_app_event(&[
                ("type", event),
                ("alert", &id),
                ("rule", &rule.id.to_string()),
                ("sensor", &sensor.key),
                ("state", &alert.state),
                ("count", &count),
            ])
            .await?;
    }
    tracing::info!(rule = rule.id, sensor = %sensor.key, reading = reading.id, change = ?change, notifications = notifications.len(), "alert applied");
    Ok(Applied {
        alert_id: alert.map(|a| a.id),
        change,
        notifications,
    })
}
