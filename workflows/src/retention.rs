//! Retention: deletes old ledger rows, attempts, applied alert signals and readings in bounded
//! batches, so a sweep never holds long locks or builds one huge transaction.

use std::{future::Future, time::Duration};

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
        // Attempts go with their job, steps with their run (ON DELETE CASCADE).
        swept.jobs = in_batches(
            batch,
            &mut swept.batches,
            |limit| {
                jobs::Entity::find()
                    .select_only()
                    .column(jobs::Column::Id)
                    .filter(jobs::Column::FinishedAt.lt(before))
                    .limit(limit)
                    .into_tuple::<String>()
                    .all(db)
            },
            |ids| async move {
                let deleted = jobs::Entity::delete_many()
                    .filter(jobs::Column::Id.is_in(ids))
                    .exec(db)
                    .await?;
                Ok(deleted.rows_affected)
            },
        )
        .await?;
        swept.runs = in_batches(
            batch,
            &mut swept.batches,
            |limit| {
                workflow_runs::Entity::find()
                    .select_only()
                    .column(workflow_runs::Column::Id)
                    .filter(workflow_runs::Column::FinishedAt.lt(before))
                    .limit(limit)
                    .into_tuple::<String>()
                    .all(db)
            },
            |ids| async move {
                let deleted = workflow_runs::Entity::delete_many()
                    .filter(workflow_runs::Column::Id.is_in(ids))
                    .exec(db)
                    .await?;
                Ok(deleted.rows_affected)
            },
        )
        .await?;
        swept.signals = in_batches(
            batch,
            &mut swept.batches,
            |limit| {
                alert_signals::Entity::find()
                    .select_only()
                    .column(alert_signals::Column::Id)
                    .filter(alert_signals::Column::AppliedAt.lt(before))
                    .limit(limit)
                    .into_tuple::<i64>()
                    .all(db)
            },
            |ids| async move {
                let deleted = alert_signals::Entity::delete_many()
                    .filter(alert_signals::Column::Id.is_in(ids))
                    .exec(db)
                    .await?;
                Ok(deleted.rows_affected)
            },
        )
        .await?;
    }
    if let Some(age) = config.readings {
        let before = cutoff(age);
        swept.readings = in_batches(batch, &mut swept.batches, |limit| {
            // Only readings at or behind their sensor's cursor: evaluated already.
            let evaluated = Expr::cust(
                "readings.id <= (SELECT eval_cursor FROM sensors WHERE sensors.id = readings.sensor_id)",
            );
            readings::Entity::find()
                .select_only()
                .column(readings::Column::Id)
                .filter(readings::Column::CreatedAt.lt(before))
                .filter(evaluated)
                .limit(limit)
                .into_tuple::<i64>()
                .all(db)
        }, |ids| async move {
            let deleted = readings::Entity::delete_many()
                .filter(readings::Column::Id.is_in(ids))
                .exec(db)
                .await?;
            Ok(deleted.rows_affected)
        })
        .await?;
    }
    Ok(swept)
}

/// Selects up to `batch` ids and deletes them, until a selection comes back short; returns
/// the rows deleted and counts the delete statements in `statements`.
async fn in_batches<Id, Select, Selected, Delete, Deleted>(
    batch: u64,
    statements: &mut u64,
    mut select: Select,
    mut delete: Delete,
) -> Result<u64, DbErr>
where
    Select: FnMut(u64) -> Selected,
    Selected: Future<Output = Result<Vec<Id>, DbErr>>,
    Delete: FnMut(Vec<Id>) -> Deleted,
    Deleted: Future<Output = Result<u64, DbErr>>,
{
    let mut deleted = 0;
    loop {
        let ids = select(batch).await?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        let full = ids.len() as u64 >= batch;
        deleted += delete(ids).await?;
        *statements += 1;
        if !full {
            return Ok(deleted);
        }
    }
}
