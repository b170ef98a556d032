//! `evaluate`: applies a sensor's rules to every reading not yet evaluated, in insertion order.
//!
//! The sensor's `eval_cursor` (the last evaluated reading) advances by compare-and-set
//! (`UPDATE ... WHERE eval_cursor = <old>`), which behaves the same on SQLite and PostgreSQL:
//! of two evaluations of one sensor only one applies; the other starts over and finds nothing
//! new. Alert jobs (one per rule that signalled: its last signal's) are enqueued before the
//! cursor moves, under keys derived from rule, reading and direction, so a lost race or a
//! re-run after a crash enqueues nothing twice.

use std::{collections::HashMap, time::Duration};

use entities::{alerts, readings, rules, sensors, states::RuleKind};
use queue::{Engine, IdempotencyKey, KeyScope, PushOutcome, RetryPolicy};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use crate::{BackgroundJob, HandlerError, JobPolicy, ValidationError, jobs::alert::Alert};

/// Most readings one run evaluates; a longer backlog gets a follow-up evaluation.
pub const MAX_READINGS_PER_RUN: u64 = 5000;
/// Compare-and-set attempts before the run gives up and retries later.
const CAS_TRIES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluate {
    /// The sensor's key.
    pub sensor: String,
}

impl BackgroundJob for Evaluate {
    const KIND: &'static str = "evaluate";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 10,
                backoff_base: Duration::from_millis(500),
                backoff_cap: Duration::from_secs(120),
            },
            visibility_timeout: Duration::from_secs(60),
            timeout: Some(Duration::from_secs(120)),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.sensor.is_empty() || self.sensor.len() > 128 {
            return Err(ValidationError::new(
                "sensor",
                "must be 1 to 128 characters",
            ));
        }
        Ok(())
    }

    /// One waiting evaluation per sensor is enough: it reads every reading not yet evaluated.
    fn idempotency_key(&self) -> Option<IdempotencyKey> {
        Some(IdempotencyKey {
            key: format!("sensor:{}", self.sensor),
            scope: KeyScope::WhileWaiting,
        })
    }

    /// Limits count evaluations per sensor (e.g. one running per sensor at a time).
    fn limit_key(&self) -> Option<String> {
        Some(format!("sensor:{}", self.sensor))
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Evaluated {
    /// Readings this run evaluated and moved the cursor past (0 when another run had).
    pub evaluated: u64,
    pub breaches: u64,
    pub clears: u64,
    /// The alert jobs pushed: one per rule that signalled.
    pub alerts: Vec<PushOutcome>,
    /// Whether readings remain beyond this run's limit (a follow-up was enqueued).
    pub more: bool,
}

/// One transition a rule saw, in reading order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Signal {
    rule: i64,
    reading: i64,
    breach: bool,
}

/// Per-rule state while walking the readings.
struct RuleState<'a> {
    rule: &'a rules::Model,
    consecutive: i32,
    open: bool,
    previous: Option<(chrono::DateTime<chrono::Utc>, f64)>,
}

impl RuleState<'_> {
    /// Feeds one reading; returns the transition it causes, if any.
    fn feed(&mut self, reading: &readings::Model) -> Option<bool> {
        let rule = self.rule;
        let kind = RuleKind::parse(&rule.kind);
        let (breaching, clearing) = match kind {
            Some(RuleKind::Above | RuleKind::Below) => {
                let above = kind == Some(RuleKind::Above);
                let threshold = rule.threshold?;
                let clear = rule.clear_threshold.unwrap_or(threshold);
                let v = reading.value;
                if above {
                    (v > threshold, v <= clear)
                } else {
                    (v < threshold, v >= clear)
                }
            }
            Some(RuleKind::RateOfChange) => {
                let threshold = rule.threshold?;
                let clear = rule.clear_threshold.unwrap_or(threshold);
                let previous = self.previous.replace((reading.ts, reading.value));
                let (ts, value) = previous?;
                let minutes = (reading.ts - ts).num_milliseconds() as f64 / 60_000.0;
                if minutes <= 0.0 {
                    return None;
                }
                let rate = (reading.value - value).abs() / minutes;
                (rate > threshold, rate <= clear)
            }
            // SILENCE breaches come from the periodic `silence_check`; `signals` clears them.
            _ => return None,
        };
        if kind != Some(RuleKind::RateOfChange) {
            self.previous = Some((reading.ts, reading.value));
        }
        self.consecutive = if breaching { self.consecutive + 1 } else { 0 };
        if breaching && self.consecutive >= rule.for_readings.max(1) {
            self.open = true;
            return Some(true);
        }
        if clearing && self.open {
            self.open = false;
            return Some(false);
        }
        None
    }
}

/// Evaluates the sensor's new readings, records every breach and clear as a signal, and
/// enqueues one `alert` job per rule that signalled.
pub async fn run(
    db: &DatabaseConnection,
    engine: &Engine,
    payload: &Evaluate,
) -> Result<Evaluated, HandlerError> {
    payload.validate()?;
    for _ in 0..CAS_TRIES {
        if let Some(done) = try_once(db, engine, payload).await? {
            return Ok(done);
        }
    }
    Err(HandlerError::Retryable(format!(
        "sensor '{}' kept being evaluated concurrently",
        payload.sensor
    )))
}

/// One evaluation from the cursor as read now; `None` when another run moved it first.
async fn try_once(
    db: &DatabaseConnection,
    engine: &Engine,
    payload: &Evaluate,
) -> Result<Option<Evaluated>, HandlerError> {
    let sensor = sensors::Entity::find()
        .filter(sensors::Column::Key.eq(&payload.sensor))
        .one(db)
        .await?
        .ok_or_else(|| HandlerError::Permanent(format!("unknown sensor '{}'", payload.sensor)))?;
    let cursor = sensor.eval_cursor;
    let fresh = readings::Entity::find()
        .filter(readings::Column::SensorId.eq(sensor.id))
        .filter(readings::Column::Id.gt(cursor))
        .order_by_asc(readings::Column::Id)
        .limit(MAX_READINGS_PER_RUN + 1)
        .all(db)
        .await?;
    if fresh.is_empty() {
        return Ok(Some(Evaluated::default()));
    }
    let more = fresh.len() as u64 > MAX_READINGS_PER_RUN;
    let fresh = &fresh[..fresh.len().min(MAX_READINGS_PER_RUN as usize)];

    // Read after the cursor: a rule evaluated past the cursor read above means another
    // evaluation committed in between, and the two reads do not belong together.
    let rules = rules::Entity::find()
        .filter(rules::Column::SensorId.eq(sensor.id))
        .filter(rules::Column::Enabled.eq(true))
        .order_by_asc(rules::Column::Id)
        .all(db)
        .await?;
    if rules.iter().any(|r| r.evaluated_to > cursor) {
        return Ok(None);
    }
    let (signals, in_breach) = if rules.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        signals(db, &sensor, cursor, &rules, fresh).await?
    };

    // Enqueue first, move the cursor second: a crash in between re-runs with the same keys.
    let run_of: HashMap<i64, &str> = fresh
        .iter()
        .map(|r| (r.id, r.ingest_job_id.as_str()))
        .collect();
    let jobs = last_signal_per_rule(&signals)
        .into_iter()
        .map(|s| {
            let run = run_of.get(&s.reading).copied().unwrap_or_default();
            let alert = Alert {
                rule: s.rule,
                sensor: sensor.key.clone(),
                reading: s.reading,
                breach: s.breach,
            };
            alert.to_push().map(|job| job.with_workflow_id(run))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let alerts = if jobs.is_empty() {
        Vec::new()
    } else {
        engine.push_many(jobs).await?
    };

    let last = fresh.last().map_or(cursor, |r| r.id);
    let txn = entities::begin_write(db).await?;
    let moved = sensors::Entity::update_many()
        .col_expr(sensors::Column::EvalCursor, Expr::value(last))
        .filter(sensors::Column::Id.eq(sensor.id))
        .filter(sensors::Column::EvalCursor.eq(cursor))
        .exec(&txn)
        .await?;
    if moved.rows_affected != 1 {
        txn.rollback().await?;
        return Ok(None);
    }
    // The cursor's row lock is held now, and a rule edit takes it before changing a rule: the
    // rules read now are final for this commit. Any other than those judged with starts over.
    let judged: Vec<(i64, i64)> = rules.iter().map(|r| (r.id, r.version)).collect();
    let current: Vec<(i64, i64)> = rules::Entity::find()
        .select_only()
        .column(rules::Column::Id)
        .column(rules::Column::Version)
        .filter(rules::Column::SensorId.eq(sensor.id))
        .filter(rules::Column::Enabled.eq(true))
        .order_by_asc(rules::Column::Id)
        .into_tuple()
        .all(&txn)
        .await?;
    if current != judged {
        txn.rollback().await?;
        return Ok(None);
    }
    // Only the winner of the cursor records the signals and moves the rules' episode state,
    // in the same commit.
    let recorded: Vec<(i64, i64, bool)> = signals
        .iter()
        .map(|s| (s.rule, s.reading, s.breach))
        .collect();
    crate::jobs::alert::record_signals(&txn, &recorded).await?;
    // At most two statements, however many rules: those in a breach episode, and the rest.
    for breaching in [true, false] {
        let ids: Vec<i64> = rules
            .iter()
            .zip(&in_breach)
            .filter(|(_, b)| **b == breaching)
            .map(|(r, _)| r.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        rules::Entity::update_many()
            .col_expr(rules::Column::InBreach, Expr::value(breaching))
            .col_expr(rules::Column::EvaluatedTo, Expr::value(last))
            .filter(rules::Column::Id.is_in(ids))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    if more {
        engine.push(payload.to_push()?).await?;
    }
    let breaches = signals.iter().filter(|s| s.breach).count() as u64;
    tracing::info!(sensor = %sensor.key, evaluated = fresh.len(), breaches, clears = signals.len() as u64 - breaches, "readings evaluated");
    Ok(Some(Evaluated {
        evaluated: fresh.len() as u64,
        breaches,
        clears: signals.len() as u64 - breaches,
        alerts,
        more,
    }))
}

/// Each rule's last signal. Its alert job applies every pending signal of the rule up to its
/// own, in reading order, so one job per rule and evaluation does the work of one per signal:
/// a sensor flapping across a threshold costs one job per batch, not one per reading. The job
/// belongs to the workflow run of that last reading.
fn last_signal_per_rule(signals: &[Signal]) -> Vec<&Signal> {
    let mut last: Vec<&Signal> = Vec::new();
    for signal in signals.iter().rev() {
        if !last.iter().any(|s| s.rule == signal.rule) {
            last.push(signal);
        }
    }
    last.reverse();
    last
}

/// Walks the new readings through every rule, starting from the history before the cursor
/// (for N consecutive readings and rates) and from each rule's episode state. Returns the
/// signals in reading order and, per rule, whether it ends inside a breach episode.
async fn signals(
    db: &DatabaseConnection,
    sensor: &sensors::Model,
    cursor: i64,
    rules: &[rules::Model],
    fresh: &[readings::Model],
) -> Result<(Vec<Signal>, Vec<bool>), HandlerError> {
    let lookback = rules
        .iter()
        .map(|r| r.for_readings.max(1))
        .max()
        .unwrap_or(1) as u64;
    let mut history = readings::Entity::find()
        .filter(readings::Column::SensorId.eq(sensor.id))
        .filter(readings::Column::Id.lte(cursor))
        .order_by_desc(readings::Column::Id)
        .limit(lookback)
        .all(db)
        .await?;
    history.reverse();
    let open_keys: Vec<String> = rules
        .iter()
        .filter(|r| r.kind == RuleKind::Silence.as_str())
        .map(|r| format!("{}:{}", r.id, sensor.id))
        .collect();
    let open: Vec<String> = if open_keys.is_empty() {
        Vec::new()
    } else {
        alerts::Entity::find()
            .filter(alerts::Column::OpenKey.is_in(open_keys))
            .all(db)
            .await?
            .into_iter()
            .filter_map(|a| a.open_key)
            .collect()
    };
    let mut states: Vec<RuleState<'_>> = rules
        .iter()
        .map(|rule| {
            let mut state = RuleState {
                rule,
                consecutive: 0,
                open: false,
                previous: None,
            };
            for past in &history {
                state.feed(past);
            }
            // The episode state was committed with the cursor; the short replay above only
            // restores the consecutive count and the previous reading. A silence episode is
            // opened by the periodic check, so for SILENCE the alerts table says.
            state.open = if rule.kind == RuleKind::Silence.as_str() {
                open.contains(&format!("{}:{}", rule.id, sensor.id))
            } else {
                rule.in_breach
            };
            state
        })
        .collect();
    let mut signals = Vec::new();
    for reading in fresh {
        for state in &mut states {
            if let Some(breach) = state.feed(reading) {
                signals.push(Signal {
                    rule: state.rule.id,
                    reading: reading.id,
                    breach,
                });
            }
        }
    }
    // A silence ends with the sensor's newest reading: older ones in this batch may predate
    // the breach (when evaluation lagged behind the silence check).
    if let Some(newest) = fresh.last() {
        for state in states
            .iter_mut()
            .filter(|s| s.open && s.rule.kind == RuleKind::Silence.as_str())
        {
            state.open = false;
            signals.push(Signal {
                rule: state.rule.id,
                reading: newest.id,
                breach: false,
            });
        }
    }
    let in_breach = states.iter().map(|s| s.open).collect();
    Ok((signals, in_breach))
}
