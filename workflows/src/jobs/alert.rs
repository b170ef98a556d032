//! `alert`: opens the alert of a rule and sensor, raises its count, or resolves it.
//!
//! `evaluate` records each breach and clear as a pending signal (`alert_signals`) and pushes an
//! alert job for it. The jobs of one rule may run at once and in any order, so a job applies
//! every pending signal of its rule up to its own, in reading order, under the rule's row lock:
//! episodes and counts come out as the readings say, whichever job runs first. A job whose
//! signal an earlier job already applied changes nothing.
//!
//! There is one open alert per rule and sensor: `open_key` is unique while the alert is open.
//! When an alert opens, and after that at most once per throttle window, each channel of the
//! rule gets a `notify` job keyed by alert, channel and reading. The commit that applies the
//! signals also marks which job applied them (`applied_by`) and which of them notified
//! (`notified_alert_id`), so a job retried after a crash between that commit and its enqueue
//! (or any job whose signal that batch applied) pushes the batch's `notify` jobs again under
//! the same keys.
//!
//! An edit that changes how a rule judges readings, or a rule switched off or archived, ends
//! its episode at once ([`end_episode`]): the open alert is resolved and the signals judged
//! under the old rule are set aside, so no alert stays open that its rule would not close.

use std::{collections::HashMap, time::Duration};

use chrono::Utc;
use entities::{
    alert_signals, alerts, readings, rule_channels, rules, sensors, states::AlertState,
};
use queue::{Engine, IdempotencyKey, KeyScope, PushOutcome, RetryPolicy};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};

use crate::{BackgroundJob, HandlerError, JobPolicy, ValidationError, jobs::notify::Notify};

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

impl BackgroundJob for Alert {
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
            timeout: Some(Duration::from_secs(60)),
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

    /// One job per signal, whoever raises it (`evaluate`, or `silence_check` for a silence
    /// that began after the reading): a re-run of either pushes the same job.
    fn idempotency_key(&self) -> Option<IdempotencyKey> {
        let direction = if self.breach { "breach" } else { "clear" };
        Some(IdempotencyKey {
            key: format!("alert:{}:{}:{direction}", self.rule, self.reading),
            scope: KeyScope::For(None),
        })
    }
}

/// The key of the notification of `alert` to `channel` for `reading`: one per alert, channel
/// and notifying reading, so a re-run pushes the same notifications.
pub fn notification_key(alert: i64, channel: i64, reading: i64) -> IdempotencyKey {
    IdempotencyKey {
        key: format!("notify:{alert}:{channel}:{reading}"),
        scope: KeyScope::For(None),
    }
}

/// What one run did to the alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub alert_id: Option<i64>,
    pub change: Change,
    pub notifications: Vec<PushOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Opened,
    Raised,
    Resolved,
    /// Already applied (a retry), or a clear with no open alert.
    Unchanged,
}

/// Records signals found by an evaluation (or the silence check), pending until an alert job
/// applies them. Recording the same signal again changes nothing.
pub async fn record_signals(
    db: &impl ConnectionTrait,
    signals: &[(i64, i64, bool)],
) -> Result<(), HandlerError> {
    let now = Utc::now();
    let rows: Vec<alert_signals::ActiveModel> = signals
        .iter()
        .map(|&(rule, reading, breach)| alert_signals::ActiveModel {
            rule_id: Set(rule),
            reading_id: Set(reading),
            breach: Set(breach),
            created_at: Set(now),
            applied_at: Set(None),
            ..Default::default()
        })
        .collect();
    for chunk in rows.chunks(500) {
        alert_signals::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    alert_signals::Column::RuleId,
                    alert_signals::Column::ReadingId,
                    alert_signals::Column::Breach,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// What applying the pending signals did, as they are applied in order.
struct Walk {
    open: Option<alerts::Model>,
    /// The open alert changed in memory (raised) and is not written yet: a run of raises is
    /// one UPDATE, not one per signal.
    dirty: bool,
    /// The workflow run of each pending signal's reading.
    runs: HashMap<i64, String>,
    /// Alerts that want their rule's channels notified, with the reading that caused it.
    notify: Vec<(i64, i64, Option<String>)>,
    /// The signals that notified, with their alert: written with the batch, for a retry.
    notified: Vec<(i64, i64)>,
    /// Application events, in order.
    events: Vec<(&'static str, alerts::Model)>,
    /// The change the job's own signal made.
    change: Change,
}

/// Applies the job's signal, and every pending signal of its rule before it, in reading order.
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
    let txn = entities::begin_write(db).await?;
    // One rule's alert jobs run at once and in any order. A no-op update takes the rule's row
    // lock, so they apply one at a time (SQLite's single writer serialises them anyway).
    rules::Entity::update_many()
        .col_expr(rules::Column::Id, Expr::col(rules::Column::Id))
        .filter(rules::Column::Id.eq(rule.id))
        .exec(&txn)
        .await?;
    let own = alert_signals::Entity::find()
        .filter(alert_signals::Column::RuleId.eq(rule.id))
        .filter(alert_signals::Column::ReadingId.eq(reading.id))
        .filter(alert_signals::Column::Breach.eq(payload.breach))
        .one(&txn)
        .await?;
    let Some(own) = own else {
        // Its evaluation pushes the job before it commits the signal, and commits the signal
        // with the sensor's cursor. A cursor past the reading without the signal means that
        // evaluation lost to another that judged the reading otherwise (its rule was edited in
        // between): the signal will never come.
        let cursor = sensors::Entity::find_by_id(sensor.id)
            .one(&txn)
            .await?
            .map_or(0, |s| s.eval_cursor);
        txn.rollback().await?;
        if cursor >= reading.id {
            tracing::info!(rule = rule.id, sensor = %sensor.key, reading = reading.id, "signal never recorded: the reading was judged otherwise");
            return Ok(Applied {
                alert_id: None,
                change: Change::Unchanged,
                notifications: Vec::new(),
            });
        }
        return Err(HandlerError::Retryable(format!(
            "the signal of reading {} is not recorded yet",
            reading.id
        )));
    };
    let open = alerts::Entity::find()
        .filter(alerts::Column::OpenKey.eq(&open_key))
        .one(&txn)
        .await?;
    let mut walk = Walk {
        open,
        dirty: false,
        runs: HashMap::new(),
        notify: Vec::new(),
        notified: Vec::new(),
        events: Vec::new(),
        change: Change::Unchanged,
    };
    if own.applied_at.is_none() {
        let pending = alert_signals::Entity::find()
            .filter(alert_signals::Column::RuleId.eq(rule.id))
            .filter(alert_signals::Column::AppliedAt.is_null())
            .filter(alert_signals::Column::ReadingId.lte(reading.id))
            .order_by_asc(alert_signals::Column::ReadingId)
            .all(&txn)
            .await?;
        walk.runs = readings::Entity::find()
            .filter(readings::Column::Id.is_in(pending.iter().map(|p| p.reading_id)))
            .all(&txn)
            .await?
            .into_iter()
            .map(|r| (r.id, r.ingest_job_id))
            .collect();
        for signal in &pending {
            let change = apply(&txn, &rule, &sensor, &open_key, signal, &mut walk).await?;
            if signal.id == own.id {
                walk.change = change;
            }
        }
        if let (Some(alert), true) = (&walk.open, walk.dirty) {
            alert
                .clone()
                .into_active_model()
                .reset_all()
                .update(&txn)
                .await?;
        }
        alert_signals::Entity::update_many()
            .col_expr(alert_signals::Column::AppliedAt, Expr::value(Utc::now()))
            .col_expr(alert_signals::Column::AppliedBy, Expr::value(own.id))
            .filter(alert_signals::Column::Id.is_in(pending.iter().map(|p| p.id)))
            .exec(&txn)
            .await?;
        // One statement per alert (a batch rarely notifies for more than one), not per signal.
        let mut notified_by_alert: HashMap<i64, Vec<i64>> = HashMap::new();
        for (signal, alert) in &walk.notified {
            notified_by_alert.entry(*alert).or_default().push(*signal);
        }
        for (alert, signals) in notified_by_alert {
            alert_signals::Entity::update_many()
                .col_expr(alert_signals::Column::NotifiedAlertId, Expr::value(alert))
                .filter(alert_signals::Column::Id.is_in(signals))
                .exec(&txn)
                .await?;
        }
    } else if let Some(batch) = own.applied_by {
        // Applied already, by this job or another. The job that applied the batch may have
        // crashed between its commit and its enqueue: enqueue the batch's notifications
        // again, under the same keys (the queue drops the ones already pushed).
        walk.notify = renotify(&txn, batch).await?;
    }
    txn.commit().await?;

    let notifications = notify_channels(db, engine, rule.id, &walk.notify).await?;
    for (event, alert) in &walk.events {
        publish_alert_event(engine, event, alert, &sensor.key).await?;
    }
    let alert_id = walk
        .events
        .last()
        .map(|(_, a)| a.id)
        .or(walk.open.as_ref().map(|a| a.id))
        .or(walk.notify.last().map(|n| n.0));
    tracing::info!(rule = rule.id, sensor = %sensor.key, reading = reading.id, change = ?walk.change, notifications = notifications.len(), "alert applied");
    Ok(Applied {
        alert_id,
        change: walk.change,
        notifications,
    })
}

/// Tells every subscriber (through the domain-event stream) that `alert` changed: `event` is
/// `alert_opened`, `alert_updated` or `alert_resolved`.
pub async fn publish_alert_event(
    engine: &Engine,
    event: &str,
    alert: &alerts::Model,
    sensor_key: &str,
) -> Result<(), HandlerError> {
    let (id, rule, count) = (
        alert.id.to_string(),
        alert.rule_id.to_string(),
        alert.count.to_string(),
    );
    engine
        .publish_app_event(&[
            ("type", event),
            ("alert", &id),
            ("rule", &rule),
            ("sensor", sensor_key),
            ("state", &alert.state),
            ("count", &count),
        ])
        .await?;
    Ok(())
}

/// Ends rule `rule`'s breach episode now: its pending signals (judged under the rule as it
/// was) are set aside, so their alert jobs change nothing; its open alert is resolved; and
/// the next evaluation starts outside a breach. For an edit that changes how the rule judges
/// readings, and for a rule switched off or archived. Call it in the transaction that changes
/// the rule, holding the sensor's and the rule's row locks (the order `evaluate` takes them);
/// answers the resolved alert, to publish with [`publish_alert_event`] after the commit.
pub async fn end_episode(
    txn: &DatabaseTransaction,
    rule: i64,
) -> Result<Option<alerts::Model>, HandlerError> {
    let now = Utc::now();
    alert_signals::Entity::update_many()
        .col_expr(alert_signals::Column::AppliedAt, Expr::value(now))
        .filter(alert_signals::Column::RuleId.eq(rule))
        .filter(alert_signals::Column::AppliedAt.is_null())
        .exec(txn)
        .await?;
    rules::Entity::update_many()
        .col_expr(rules::Column::InBreach, Expr::value(false))
        .filter(rules::Column::Id.eq(rule))
        .exec(txn)
        .await?;
    let Some(open) = alerts::Entity::find()
        .filter(alerts::Column::RuleId.eq(rule))
        .filter(alerts::Column::OpenKey.is_not_null())
        .one(txn)
        .await?
    else {
        return Ok(None);
    };
    let mut alert = open.into_active_model();
    alert.state = Set(AlertState::Resolved.as_str().into());
    alert.open_key = Set(None);
    alert.resolved_at = Set(Some(now));
    alert.updated_at = Set(now);
    Ok(Some(alert.update(txn).await?))
}

/// Applies one signal to the rule's open alert.
async fn apply(
    txn: &DatabaseTransaction,
    rule: &rules::Model,
    sensor: &sensors::Model,
    open_key: &str,
    signal: &alert_signals::Model,
    walk: &mut Walk,
) -> Result<Change, HandlerError> {
    let now = Utc::now();
    let run = walk.runs.get(&signal.reading_id).cloned();
    match (walk.open.take(), signal.breach) {
        (None, false) => Ok(Change::Unchanged),
        (None, true) => {
            let fresh = alerts::ActiveModel {
                rule_id: Set(rule.id),
                sensor_id: Set(sensor.id),
                state: Set(AlertState::Open.as_str().into()),
                open_key: Set(Some(open_key.to_owned())),
                count: Set(1),
                opened_reading_id: Set(signal.reading_id),
                last_reading_id: Set(signal.reading_id),
                workflow_run_id: Set(run.clone()),
                opened_at: Set(now),
                updated_at: Set(now),
                resolved_at: Set(None),
                acknowledged_by: Set(None),
                acknowledged_at: Set(None),
                last_notified_at: Set(Some(now)),
                last_notified_reading_id: Set(Some(signal.reading_id)),
                ..Default::default()
            };
            let alert = fresh.insert(txn).await?;
            walk.notify.push((alert.id, signal.reading_id, run));
            walk.notified.push((signal.id, alert.id));
            walk.events.push(("alert_opened", alert.clone()));
            walk.open = Some(alert);
            walk.dirty = false;
            Ok(Change::Opened)
        }
        (Some(mut alert), true) => {
            let throttle = chrono::Duration::seconds(i64::from(rule.throttle_seconds.max(0)));
            let due = alert.last_notified_at.is_none_or(|t| now - t >= throttle);
            alert.count += 1;
            alert.last_reading_id = signal.reading_id;
            alert.updated_at = now;
            if due {
                alert.last_notified_at = Some(now);
                alert.last_notified_reading_id = Some(signal.reading_id);
                walk.notify
                    .push((alert.id, signal.reading_id, alert.workflow_run_id.clone()));
                walk.notified.push((signal.id, alert.id));
            }
            walk.events.push(("alert_updated", alert.clone()));
            walk.open = Some(alert);
            walk.dirty = true;
            Ok(Change::Raised)
        }
        (Some(mut alert), false) => {
            alert.state = AlertState::Resolved.as_str().into();
            alert.open_key = None;
            alert.last_reading_id = signal.reading_id;
            alert.resolved_at = Some(now);
            alert.updated_at = now;
            // Written whole: it carries the raises before it too.
            let alert = alert.into_active_model().reset_all().update(txn).await?;
            walk.events.push(("alert_resolved", alert));
            walk.dirty = false;
            Ok(Change::Resolved)
        }
    }
}

/// The notifications of the batch of signals the job of signal `batch` applied: (alert,
/// reading, the alert's workflow run), as that job wanted them.
async fn renotify(
    txn: &DatabaseTransaction,
    batch: i64,
) -> Result<Vec<(i64, i64, Option<String>)>, HandlerError> {
    let notified = alert_signals::Entity::find()
        .filter(alert_signals::Column::AppliedBy.eq(batch))
        .filter(alert_signals::Column::NotifiedAlertId.is_not_null())
        .order_by_asc(alert_signals::Column::ReadingId)
        .all(txn)
        .await?;
    let alert_ids: Vec<i64> = notified
        .iter()
        .filter_map(|s| s.notified_alert_id)
        .collect();
    if alert_ids.is_empty() {
        return Ok(Vec::new());
    }
    let runs: HashMap<i64, Option<String>> = alerts::Entity::find()
        .filter(alerts::Column::Id.is_in(alert_ids))
        .all(txn)
        .await?
        .into_iter()
        .map(|a| (a.id, a.workflow_run_id))
        .collect();
    Ok(notified
        .iter()
        .filter_map(|s| {
            let alert = s.notified_alert_id?;
            Some((alert, s.reading_id, runs.get(&alert).cloned().flatten()))
        })
        .collect())
}

/// One `notify` job per channel of the rule for each `(alert, reading, workflow run)`, keyed
/// by alert, channel and reading: pushing the same again queues nothing.
pub async fn notify_channels(
    db: &DatabaseConnection,
    engine: &Engine,
    rule: i64,
    wanted: &[(i64, i64, Option<String>)],
) -> Result<Vec<PushOutcome>, HandlerError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let channels: Vec<i64> = rule_channels::Entity::find()
        .filter(rule_channels::Column::RuleId.eq(rule))
        .all(db)
        .await?
        .into_iter()
        .map(|rc| rc.channel_id)
        .collect();
    let mut jobs = Vec::new();
    for (alert, reading, run) in wanted {
        for channel in &channels {
            let payload = Notify {
                channel: *channel,
                alert: Some(*alert),
                message: None,
            };
            let key = notification_key(*alert, *channel, *reading);
            let job = payload
                .to_push()?
                .with_workflow_id(run.clone().unwrap_or_default())
                .with_idempotency_key(key.key, key.scope);
            jobs.push(job);
        }
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    Ok(engine.push_many(jobs).await?)
}
