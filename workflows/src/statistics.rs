//! Planner statistics where nothing else keeps them. PostgreSQL plans from statistics that
//! autovacuum's ANALYZE refreshes; with autovacuum off (some hand-tuned servers, and this
//! project's CI machine) a fresh database never gets any, and the ledger's look-up of a run's
//! steps (`run_id IN (...)`) became a scan of the whole table, 220 ms a batch at 1.5 million
//! steps, where the index would read only the batch's few hundred rows. So where autovacuum is
//! off, the workers ANALYZE the growing tables themselves.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// The tables that grow with the traffic and are read through non-unique indexes.
pub const GROWING_TABLES: [&str; 6] = [
    "readings",
    "jobs",
    "job_attempts",
    "workflow_runs",
    "workflow_steps",
    "alert_signals",
];

/// Whether the server's autovacuum keeps statistics: `None` where the question does not arise
/// (SQLite plans without them).
pub async fn autovacuum_on(db: &DatabaseConnection) -> Result<Option<bool>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(None);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT setting FROM pg_settings WHERE name = 'autovacuum'",
        ))
        .await?;
    let setting: Option<String> = row.map(|r| r.try_get("", "setting")).transpose()?;
    Ok(Some(setting.as_deref() == Some("on")))
}

/// ANALYZEs [`GROWING_TABLES`] when the server's autovacuum is off; returns whether it did.
pub async fn refresh_if_unattended(db: &DatabaseConnection) -> Result<bool, DbErr> {
    if autovacuum_on(db).await? != Some(false) {
        return Ok(false);
    }
    db.execute_unprepared(&format!("ANALYZE {}", GROWING_TABLES.join(", ")))
        .await?;
    Ok(true)
}
