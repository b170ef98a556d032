//! `silence_check`: the periodic job behind `SILENCE` rules. It raises a breach for every
//! enabled silence rule whose sensor has received nothing for the rule's duration; the next
//! reading of that sensor clears it (in `evaluate`).
//!
//! Every process that runs this queue schedules the tick, and the tick's idempotency key is
//! derived from the kind and the tick's time, so however many processes schedule it, each
//! tick is one job.

use std::time::Duration;

use chrono::Utc;
use entities::{readings, rules, sensors, states::RuleKind};
use queue::{Engine, KeyScope, PushOutcome, RetryPolicy};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};

use crate::{BackgroundJob, HandlerError, JobPolicy, ValidationError, jobs::alert::Alert};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceCheck {
    /// The tick's start, Unix ms: names the tick, so its key is the same in every process.
    pub tick_ms: u64,
}

impl BackgroundJob for SilenceCheck {
    const KIND: &'static str = "silence_check";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 3,
                backoff_base: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(10),
            },
            visibility_timeout: Duration::from_secs(60),
            timeout: Some(Duration::from_secs(300)),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// Pushes the job of the tick that contains now; a tick some process already pushed is a
/// duplicate and creates nothing.
pub async fn schedule_tick(engine: &Engine, every: Duration) -> Result<PushOutcome, HandlerError> {
    let every_ms = every.as_millis().max(1) as u64;
    let tick_ms = queue::now_ms() / every_ms * every_ms;
    // Several processes produce one tick: the key names the tick, held for ten periods.
    let job = SilenceCheck { tick_ms }.to_push()?.with_idempotency_key(
        format!("{}:{tick_ms}", SilenceCheck::KIND),
        KeyScope::For(Some(every * 10)),
    );
    Ok(engine.push(job).await?)
}

/// Raises a breach for every silent sensor of an enabled silence rule.
pub async fn run(
    db: &DatabaseConnection,
    engine: &Engine,
    _payload: &SilenceCheck,
) -> Result<Vec<PushOutcome>, HandlerError> {
    let rules = rules::Entity::find()
        .filter(rules::Column::Kind.eq(RuleKind::Silence))
        .filter(rules::Column::Enabled.eq(true))
        .all(db)
        .await?;
    let now = Utc::now();
    let mut jobs = Vec::new();
    let mut signals = Vec::new();
    for rule in rules {
        let Some(seconds) = rule.silence_seconds.filter(|s| *s > 0) else {
            continue;
        };
        // Silence is measured from when the last reading arrived, not from the device's
        // clock: a device with a wrong clock is not silent.
        let Some(last) = readings::Entity::find()
            .filter(readings::Column::SensorId.eq(rule.sensor_id))
            .order_by_desc(readings::Column::Id)
            .one(db)
            .await?
        else {
            continue;
        };
        if now - last.created_at < chrono::Duration::seconds(i64::from(seconds)) {
            continue;
        }
        // A switched-off sensor is silent by design.
        let Some(sensor) = sensors::Entity::find_by_id(rule.sensor_id)
            .filter(sensors::Column::DisabledAt.is_null())
            .one(db)
            .await?
        else {
            continue;
        };
        signals.push((rule.id, last.id, true));
        let alert = Alert {
            rule: rule.id,
            sensor: sensor.key,
            reading: last.id,
            breach: true,
        };
        // The alert's own key: one breach per silence that began after `last`.
        jobs.push(
            alert
                .to_push()?
                .with_workflow_id(last.ingest_job_id.clone()),
        );
    }
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    crate::jobs::alert::record_signals(db, &signals).await?;
    let pushed = engine.push_many(jobs).await?;
    tracing::info!(
        silent = pushed.iter().filter(|p| !p.duplicate).count(),
        "silence checked"
    );
    Ok(pushed)
}
