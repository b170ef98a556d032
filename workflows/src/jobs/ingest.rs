//! `ingest`: validates and stores a batch of readings, then asks for each touched sensor to be
//! evaluated.
//!
//! Idempotent: a reading is stored once per sensor and natural key (`seq:<n>`, or the time in
//! UTC when the device sends no seq). `evaluate` is enqueued for every sensor of the batch,
//! stored or not, under a key that holds while one is waiting, so a retry after a crash between
//! the commit and the enqueue still enqueues, and never two waiting evaluations of a sensor.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use entities::{readings, sensors};
use queue::{Engine, PushOutcome, RetryPolicy};
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, ExprTrait, QueryFilter, Set,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};

use crate::{BackgroundJob, HandlerError, JobPolicy, ValidationError, jobs::evaluate::Evaluate};

/// Most readings in one ingest job.
pub const MAX_READINGS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ingest {
    pub readings: Vec<ReadingIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadingIn {
    /// The sensor's key.
    pub sensor: String,
    /// RFC 3339.
    pub ts: String,
    pub value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

impl BackgroundJob for Ingest {
    const KIND: &'static str = "ingest";
    const PAYLOAD_VERSION: u32 = 1;

    fn policy() -> JobPolicy {
        JobPolicy {
            retry: RetryPolicy {
                max_attempts: 10,
                backoff_base: Duration::from_secs(1),
                backoff_cap: Duration::from_secs(300),
            },
            visibility_timeout: Duration::from_secs(60),
            timeout: Some(Duration::from_secs(120)),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if self.readings.is_empty() || self.readings.len() > MAX_READINGS {
            return Err(ValidationError::new(
                "readings",
                format!(
                    "must hold 1 to {MAX_READINGS} readings, not {}",
                    self.readings.len()
                ),
            ));
        }
        for (i, r) in self.readings.iter().enumerate() {
            let field = |name: &str| format!("readings.{i}.{name}");
            if r.sensor.is_empty() || r.sensor.len() > 128 {
                return Err(ValidationError::new(
                    field("sensor"),
                    "must be 1 to 128 characters",
                ));
            }
            // PostgreSQL refuses a NUL in text: such a key would fail the lookup itself, again
            // and again, instead of being refused as input.
            if r.sensor.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    field("sensor"),
                    "must not contain control characters",
                ));
            }
            r.timestamp()
                .map_err(|e| ValidationError::new(field("ts"), e))?;
            if !r.value.is_finite() {
                return Err(ValidationError::new(
                    field("value"),
                    "must be a finite number",
                ));
            }
            if r.seq.is_some_and(|s| s < 0) {
                return Err(ValidationError::new(field("seq"), "must not be negative"));
            }
        }
        Ok(())
    }
}

impl ReadingIn {
    fn timestamp(&self) -> Result<DateTime<Utc>, String> {
        DateTime::parse_from_rfc3339(&self.ts)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| format!("is not an RFC 3339 time ({e})"))
    }

    /// What makes the reading unique for its sensor.
    fn natural_key(&self, ts: DateTime<Utc>) -> String {
        match self.seq {
            Some(seq) => format!("seq:{seq}"),
            None => format!("ts:{}", ts.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }
}

/// Why a device may not queue a batch of readings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SensorRefusal {
    /// No sensor has this key.
    Unknown { index: usize, sensor: String },
    /// The sensor belongs to another device (or to none).
    NotOwned { index: usize, sensor: String },
    /// An admin switched the sensor off.
    Disabled { index: usize, sensor: String },
}

impl SensorRefusal {
    /// The reading's field the refusal is about: `readings.<i>.sensor`.
    pub fn field(&self) -> String {
        let (Self::Unknown { index, .. }
        | Self::NotOwned { index, .. }
        | Self::Disabled { index, .. }) = self;
        format!("readings.{index}.sensor")
    }

    /// A short name for counters and rejection messages.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unknown { .. } => "unknown_sensor",
            Self::NotOwned { .. } => "foreign_sensor",
            Self::Disabled { .. } => "sensor_disabled",
        }
    }
}

impl std::fmt::Display for SensorRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The same words for both: a device is not told which keys exist elsewhere.
            Self::Unknown { sensor, .. } | Self::NotOwned { sensor, .. } => {
                write!(f, "this device may not write sensor {sensor:?}")
            }
            Self::Disabled { sensor, .. } => write!(
                f,
                "sensor {sensor:?} is switched off: its readings are refused until an admin enables it"
            ),
        }
    }
}

/// What every device path (HTTP and MQTT) checks before it queues a batch: each sensor exists,
/// belongs to `device_id` and is switched on. The first reading that fails is named.
pub async fn check_device_sensors(
    db: &impl sea_orm::ConnectionTrait,
    device_id: i64,
    batch: &Ingest,
) -> Result<Result<(), SensorRefusal>, sea_orm::DbErr> {
    let keys: Vec<&str> = batch.readings.iter().map(|r| r.sensor.as_str()).collect();
    let found = sensors::Entity::find()
        .filter(sensors::Column::Key.is_in(keys.iter().copied()))
        .all(db)
        .await?;
    Ok(device_may_write(&found, device_id, batch))
}

/// [`check_device_sensors`] against sensors already looked up (`found`: at least the batch's,
/// by key), for a caller that looks up many batches' at once.
pub fn device_may_write(
    found: &[sensors::Model],
    device_id: i64,
    batch: &Ingest,
) -> Result<(), SensorRefusal> {
    let keys: Vec<&str> = batch.readings.iter().map(|r| r.sensor.as_str()).collect();
    // Ownership first, over the whole batch: a sensor not the device's is refused as such
    // even when an earlier one is only switched off.
    for (index, key) in keys.iter().enumerate() {
        let sensor = key.to_string();
        match found.iter().find(|s| s.key == *key) {
            None => return Err(SensorRefusal::Unknown { index, sensor }),
            Some(s) if s.device_id != Some(device_id) => {
                return Err(SensorRefusal::NotOwned { index, sensor });
            }
            Some(_) => {}
        }
    }
    for (index, key) in keys.iter().enumerate() {
        if found
            .iter()
            .any(|s| s.key == *key && s.disabled_at.is_some())
        {
            let sensor = key.to_string();
            return Err(SensorRefusal::Disabled { index, sensor });
        }
    }
    Ok(())
}

/// What one run of the handler did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ingested {
    /// Readings stored by this run (the rest were stored before).
    pub stored: u64,
    pub duplicates: u64,
    /// Readings of switched-off sensors, not stored.
    pub refused: u64,
    /// One per sensor of the batch: the `evaluate` job, or the one already waiting.
    pub evaluations: Vec<PushOutcome>,
}

/// Stores the batch and enqueues the evaluations. `job_id` is this ingest job (its workflow run).
pub async fn run(
    db: &DatabaseConnection,
    engine: &Engine,
    job_id: &str,
    payload: &Ingest,
) -> Result<Ingested, HandlerError> {
    payload.validate()?;
    let keys: Vec<&str> = {
        let mut keys: Vec<&str> = payload.readings.iter().map(|r| r.sensor.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    };
    let found = sensors::Entity::find()
        .filter(sensors::Column::Key.is_in(keys.iter().copied()))
        .all(db)
        .await?;
    if let Some(unknown) = keys.iter().find(|k| !found.iter().any(|s| s.key == **k)) {
        return Err(HandlerError::Permanent(format!(
            "unknown sensor '{unknown}'"
        )));
    }
    // A switched-off sensor's readings are dropped, the batch's others stored: the device may
    // not know yet, and one sensor must not hold the rest back.
    let known: BTreeMap<String, i64> = found
        .iter()
        .filter(|s| s.disabled_at.is_none())
        .map(|s| (s.key.clone(), s.id))
        .collect();
    let refused = payload
        .readings
        .iter()
        .filter(|r| !known.contains_key(&r.sensor))
        .count() as u64;
    if refused > 0 {
        tracing::info!(refused, "readings of switched-off sensors refused");
    }

    let now = Utc::now();
    let mut latest: BTreeMap<i64, DateTime<Utc>> = BTreeMap::new();
    let mut rows = Vec::with_capacity(payload.readings.len());
    for r in &payload.readings {
        let ts = r
            .timestamp()
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let Some(&sensor_id) = known.get(&r.sensor) else {
            continue;
        };
        latest
            .entry(sensor_id)
            .and_modify(|t| *t = Ord::max(*t, ts))
            .or_insert(ts);
        rows.push(readings::ActiveModel {
            sensor_id: Set(sensor_id),
            ts: Set(ts),
            value: Set(r.value),
            seq: Set(r.seq),
            natural_key: Set(r.natural_key(ts)),
            ingest_job_id: Set(job_id.to_owned()),
            created_at: Set(now),
            ..Default::default()
        });
    }

    let txn = entities::begin_write(db).await?;
    // Each sensor's row is updated (and so locked) before its readings get ids: concurrent
    // ingests of one sensor then take ids in the order they commit, so `evaluate`, which reads
    // past its cursor by id, never passes a reading that commits later under a smaller id.
    // Locked in id order, so two batches of the same sensors cannot deadlock.
    for (sensor_id, ts) in &latest {
        let newer = Expr::col(sensors::Column::LastReadingAt)
            .is_null()
            .or(Expr::col(sensors::Column::LastReadingAt).lt(*ts));
        sensors::Entity::update_many()
            .col_expr(
                sensors::Column::LastReadingAt,
                Expr::case(newer, *ts)
                    .finally(Expr::col(sensors::Column::LastReadingAt))
                    .into(),
            )
            .filter(sensors::Column::Id.eq(*sensor_id))
            .exec(&txn)
            .await?;
    }
    let stored = if rows.is_empty() {
        0
    } else {
        readings::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([readings::Column::SensorId, readings::Column::NaturalKey])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?
    };
    txn.commit().await?;

    let evaluations = keys
        .iter()
        .filter(|key| known.contains_key(**key))
        .map(|key| {
            let payload = Evaluate {
                sensor: (*key).to_owned(),
            };
            payload.to_push().map(|job| job.with_workflow_id(job_id))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let evaluations = engine.push_many(evaluations).await?;
    let duplicates = payload.readings.len() as u64 - refused - stored;
    tracing::info!(job.id = %job_id, stored, duplicates, refused, sensors = keys.len(), "readings ingested");
    Ok(Ingested {
        stored,
        duplicates,
        refused,
        evaluations,
    })
}
