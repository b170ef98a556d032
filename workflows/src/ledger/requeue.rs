//! Requeue of a dead job by the ledger's record: from Redis when it still holds the job, else
//! pushed again under its id from the SQL record (after Redis lost its data).

use chrono::Utc;
use entities::dead_jobs;
use queue::{DeadOpOutcome, Engine, NewJob};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel, Set};

use super::LedgerError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequeueFromLedger {
    /// Redis held the dead job: requeued with its history.
    Requeued,
    /// Redis had lost it: pushed again under the same id from the SQL record.
    Restored,
    /// The job exists in Redis but is not dead (already requeued, or running).
    NotDead(String),
    /// Neither Redis nor the ledger knows a dead job of this id.
    Unknown,
}

pub async fn requeue_dead(
    db: &DatabaseConnection,
    engine: &Engine,
    job_id: &str,
) -> Result<RequeueFromLedger, LedgerError> {
    let outcome = engine.requeue_dead(&[job_id.to_owned()]).await?;
    match outcome.into_iter().next() {
        Some(DeadOpOutcome::Done) => return Ok(RequeueFromLedger::Requeued),
        Some(DeadOpOutcome::NotDead(state)) => return Ok(RequeueFromLedger::NotDead(state)),
        Some(DeadOpOutcome::Missing) | None => {}
    }
    let Some(dead) = dead_jobs::Entity::find_by_id(job_id.to_owned())
        .one(db)
        .await?
    else {
        return Ok(RequeueFromLedger::Unknown);
    };
    let payload = match &dead.payload {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    let mut job = NewJob::raw(&dead.queue, &dead.kind, payload)
        .with_id(&dead.job_id)
        .with_payload_version(dead.payload_version.max(1) as u32)
        .with_max_attempts(dead.max_attempts.max(1) as u32)
        .with_priority(dead.priority.parse().unwrap_or_default());
    if let Some(run) = &dead.workflow_run_id {
        job = job.with_workflow_id(run);
    }
    let pushed = engine.push(job).await?;
    if pushed.duplicate {
        // It came back into Redis meanwhile (another operator's requeue).
        return Ok(RequeueFromLedger::NotDead("exists".into()));
    }
    let mut active = dead.into_active_model();
    active.requeued_at = Set(Some(Utc::now()));
    active.update(db).await?;
    Ok(RequeueFromLedger::Restored)
}
