//! Retention: deletes old ledger rows, attempts, applied alert signals and readings in bounded
//! batches, so a sweep never holds long locks or builds one huge transaction.

use std::time::Duration;

use chrono::Utc;
use entities::{alert_signals, jobs, readings, workflow_runs};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};

/// How long rows are kept. `None` keeps them forever.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Finished jobs (and, with them, their attempts) and finished workflow runs.
    pub ledger: Option<Duration>,
    /// Readings, by when they arrived. A reading not yet evaluated is never deleted.
    pub readings: Option<Duration>,
    /// Rows per delete statement.
    pub batch: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            ledger: Some(Duration::from_secs(30 * 86_400)),
            readings: Some(Duration::from_secs(90 * 86_400)),
            batch: 1000,
        }
    }
}

/// What one sweep deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub jobs: u64,
    pub runs: u64,
    pub signals: u64,
    pub readings: u64,
    /// Delete statements issued.
    pub batches: u64,
}

fn cutoff(age: Duration) -> chrono::DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

/// Deletes what is older than the configured ages, `batch` rows per statement.
pub async fn sweep(db: &DatabaseConnection, config: &RetentionConfig) -> Result<Swept, DbErr> {
    let mut swept = Swept::default();
    let batch = config.batch.max(1);
    if let Some(age) = config.ledger {
        let before = cutoff(age);
        loop {
            // Attempts go with their job (ON DELETE CASCADE).
            let ids: Vec<String> = jobs::Entity::find()
                .select_only()
                .column(jobs::Column::Id)
                .filter(jobs::Column::FinishedAt.lt(before))
                .limit(batch)
                .into_tuple()
                .all(db)
                .await?;
            if ids.is_empty() {
                break;
            }
            let n = ids.len() as u64;
            swept.jobs += jobs::Entity::delete_many()
                .filter(jobs::Column::Id.is_in(ids))
                .exec(db)
                .await?
                .rows_affected;
            swept.batches += 1;
            if n < batch {
                break;
            }
        }
        loop {
            // Steps go with their run (ON DELETE CASCADE).
            let ids: Vec<String> = workflow_runs::Entity::find()
                .select_only()
                .column(workflow_runs::Column::Id)
                .filter(workflow_runs::Column::FinishedAt.lt(before))
                .limit(batch)
                .into_tuple()
                .all(db)
                .await?;
            if ids.is_empty() {
                break;
            }
            let n = ids.len() as u64;
            swept.runs += workflow_runs::Entity::delete_many()
                .filter(workflow_runs::Column::Id.is_in(ids))
                .exec(db)
                .await?
                .rows_affected;
            swept.batches += 1;
            if n < batch {
                break;
            }
        }
        loop {
            let ids: Vec<i64> = alert_signals::Entity::find()
                .select_only()
                .column(alert_signals::Column::Id)
                .filter(alert_signals::Column::AppliedAt.lt(before))
                .limit(batch)
                .into_tuple()
                .all(db)
                .await?;
            if ids.is_empty() {
                break;
            }
            let n = ids.len() as u64;
            swept.signals += alert_signals::Entity::delete_many()
                .filter(alert_signals::Column::Id.is_in(ids))
                .exec(db)
                .await?
                .rows_affected;
            swept.batches += 1;
            if n < batch {
                break;
            }
        }
    }
    if let Some(age) = config.readings {
        let before = cutoff(age);
        loop {
            // Only readings at or behind their sensor's cursor: evaluated already.
            let evaluated = Expr::cust(
                "readings.id <= (SELECT eval_cursor FROM sensors WHERE sensors.id = readings.sensor_id)",
            );
            let ids: Vec<i64> = readings::Entity::find()
                .select_only()
                .column(readings::Column::Id)
                .filter(readings::Column::CreatedAt.lt(before))
                .filter(evaluated)
                .limit(batch)
                .into_tuple()
                .all(db)
                .await?;
            if ids.is_empty() {
                break;
            }
            let n = ids.len() as u64;
            swept.readings += readings::Entity::delete_many()
                .filter(readings::Column::Id.is_in(ids))
                .exec(db)
                .await?
                .rows_affected;
            swept.batches += 1;
            if n < batch {
                break;
            }
        }
    }
    Ok(swept)
}
