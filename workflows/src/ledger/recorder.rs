//! Reads job events in batches and writes the ledger.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use entities::{
    dead_jobs, job_attempts, jobs, ledger_quarantine, states::RunState, workflow_runs,
    workflow_steps,
};
use queue::{Consumer, Engine, EventStream, JobEvent, JobRecord, JobState, Priority};
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
    sea_query::{Expr, OnConflict},
};

use super::SENSOR_PIPELINE;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("ledger queue: {0}")]
    Queue(#[from] queue::QueueError),
}

/// The consumer group every recorder of a deployment reads the job-event stream through.
pub const LEDGER_GROUP: &str = "ledger";

/// How the recorders' own database connections are named (PostgreSQL's `pg_stat_activity`).
pub const LEDGER_APPLICATION: &str = "steadfast-ledger";

/// Counts ledger entries the database refused and the recorder quarantined.
pub const QUARANTINED_METRIC: &str = "steadfast_ledger_quarantined_total";

/// True when the database refused what it was sent (a constraint, an encoding, a value), not
/// when it could not be reached: only a refusal is worth isolating entry by entry.
fn is_refusal(error: &LedgerError) -> bool {
    use sea_orm::DbErr;
    match error {
        LedgerError::Queue(_) => false,
        LedgerError::Db(DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) => false,
        LedgerError::Db(e) => {
            let text = e.to_string();
            !(text.contains("timed out")
                || text.contains("Connection refused")
                || text.contains("connection closed")
                || text.contains("broken pipe"))
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// The consumer group: every recorder of a deployment shares it.
    pub group: String,
    /// This process's name in the group.
    pub consumer: String,
    /// Events per batch (one transaction).
    pub batch: usize,
    /// How long a read waits for events.
    pub block: Duration,
    /// Entries a dead recorder left unacknowledged this long are taken over.
    pub claim_after: Duration,
}

impl RecorderConfig {
    pub fn new(consumer: impl Into<String>) -> Self {
        Self {
            group: LEDGER_GROUP.into(),
            consumer: consumer.into(),
            batch: 1000,
            block: Duration::from_secs(1),
            claim_after: Duration::from_secs(60),
        }
    }
}

/// Writes the ledger from the job-event stream.
#[derive(Debug)]
pub struct Recorder {
    db: DatabaseConnection,
    engine: Engine,
    consumer: Consumer,
    config: RecorderConfig,
}

/// `1700000000000-7` → `001700000000000-00000000000000000007`: sorts as text the way the
/// stream orders its ids, on every database.
pub fn sortable_event_id(stream_id: &str) -> String {
    let mut parts = stream_id.splitn(2, '-');
    let ms: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seq: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    format!("{ms:015}-{seq:020}")
}

fn at(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms as i64)
        .single()
        .unwrap_or_else(Utc::now)
}

fn json_or_string(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_owned()))
}

/// What one batch saw of one attempt.
#[derive(Debug, Clone)]
struct AttemptSeen {
    job_id: String,
    round: i32,
    attempt: i32,
    /// Set when the batch saw the attempt start (then every column is known).
    started: Option<(DateTime<Utc>, Option<String>)>,
    ended: Option<(DateTime<Utc>, String, Option<String>)>,
}

const ENDING_EVENTS: [&str; 7] = [
    "succeeded",
    "retry_scheduled",
    "died",
    "snoozed",
    "released",
    "lease_expired",
    "cancelled",
];

impl Recorder {
    pub async fn new(
        db: DatabaseConnection,
        engine: Engine,
        config: RecorderConfig,
    ) -> Result<Self, LedgerError> {
        let consumer = engine
            .consumer(EventStream::Jobs, &config.group, &config.consumer)
            .claim_after(config.claim_after);
        consumer.ensure_group().await?;
        Ok(Self {
            db,
            engine,
            consumer,
            config,
        })
    }

    /// Records until `shutdown` resolves. Errors are logged and retried with a pause: the
    /// entries stay unacknowledged and come back. Shutdown interrupts a read, never a batch
    /// being committed: a batch left unacknowledged would wait for the claim period before
    /// another recorder took it (the ledger behind by a minute after every deploy).
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut pause = Duration::from_millis(100);
        loop {
            let read = tokio::select! {
                () = &mut shutdown => return,
                read = self.consumer.read(self.config.batch, self.config.block) => read,
            };
            let step = match read {
                Ok(entries) => self.commit(entries).await,
                Err(e) => Err(e.into()),
            };
            match step {
                Ok(_) => pause = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, "ledger batch failed; retrying");
                    // The failed batch is this consumer's to take up again, now, not after
                    // the claim period meant for consumers that died.
                    self.consumer.reread_pending();
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Reads one batch, commits it and acknowledges it; returns how many entries it took.
    pub async fn step(&mut self) -> Result<usize, LedgerError> {
        let entries = self
            .consumer
            .read(self.config.batch, self.config.block)
            .await?;
        self.commit(entries).await
    }

    async fn commit(&mut self, entries: Vec<queue::StreamEntry>) -> Result<usize, LedgerError> {
        if entries.is_empty() {
            return Ok(0);
        }
        let events: Vec<JobEvent> = entries.iter().filter_map(JobEvent::from_entry).collect();
        if !events.is_empty()
            && let Err(e) = self.record(&events).await
        {
            let recorded = if is_refusal(&e) {
                tracing::warn!(error = %e, "the database refused a ledger batch; recording it entry by entry");
                self.record_isolating(&entries).await
            } else {
                Err(e)
            };
            if let Err(e) = recorded {
                // The next read starts with this batch again (see `run`).
                self.consumer.reread_pending();
                return Err(e);
            }
        }
        self.consumer.ack(&entries).await?;
        Ok(entries.len())
    }

    /// Records `entries` one at a time, so one the database refuses (a NUL character in a
    /// payload, say) cannot hold back the rest: a refused entry is tried once more, then kept in
    /// `ledger_quarantine` with its error, for admins, and counted. An outage stops it as
    /// before: nothing is quarantined for want of a connection.
    async fn record_isolating(&self, entries: &[queue::StreamEntry]) -> Result<(), LedgerError> {
        for entry in entries {
            let Some(event) = JobEvent::from_entry(entry) else {
                continue;
            };
            let events = std::slice::from_ref(&event);
            let refused = match self.record(events).await {
                Ok(()) => continue,
                Err(e) if is_refusal(&e) => match self.record(events).await {
                    Ok(()) => continue,
                    Err(e) if is_refusal(&e) => e,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            };
            self.quarantine(entry, &event, &refused).await?;
        }
        Ok(())
    }

    async fn quarantine(
        &self,
        entry: &queue::StreamEntry,
        event: &JobEvent,
        error: &LedgerError,
    ) -> Result<(), LedgerError> {
        tracing::error!(
            stream_id = %entry.qualified_id(),
            job_id = %event.job_id,
            kind = %event.kind,
            event = %event.event,
            error = %error,
            "ledger entry quarantined: the database refused it"
        );
        // serde_json writes a NUL as the six characters `\u0000`, which any column takes.
        let fields: std::collections::BTreeMap<&String, &String> = entry.fields.iter().collect();
        let row = ledger_quarantine::ActiveModel {
            stream_id: Set(entry.qualified_id()),
            event: Set(serde_json::to_string(&fields).unwrap_or_default()),
            error: Set(error.to_string().replace('\0', "\\u0000")),
            at: Set(Utc::now()),
            ..Default::default()
        };
        ledger_quarantine::Entity::insert(row)
            .on_conflict(
                OnConflict::column(ledger_quarantine::Column::StreamId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        metrics::counter!(QUARANTINED_METRIC).increment(1);
        Ok(())
    }

    async fn record(&self, events: &[JobEvent]) -> Result<(), LedgerError> {
        let ids: Vec<String> = events
            .iter()
            .map(|e| e.job_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let existing: HashMap<String, jobs::Model> = jobs::Entity::find()
            .filter(jobs::Column::Id.is_in(ids.clone()))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect();
        // The job's hash is read only where the events do not say enough: a job the ledger has
        // not seen (payload, run, key), a result, a death's error history. Redis still holds
        // every job whose final event some group has not read yet.
        let finishing: BTreeSet<&str> = events
            .iter()
            .filter(|e| matches!(e.event.as_str(), "succeeded" | "died"))
            .map(|e| e.job_id.as_str())
            .collect();
        let needed: Vec<String> = ids
            .iter()
            .filter(|id| !existing.contains_key(*id) || finishing.contains(id.as_str()))
            .cloned()
            .collect();
        let records: HashMap<String, JobRecord> = self
            .engine
            .jobs(&needed)
            .await?
            .into_iter()
            .flatten()
            .map(|r| (r.id.clone(), r))
            .collect();
        let txn = entities::begin_write(&self.db).await?;

        let mut rows: HashMap<String, jobs::Model> = HashMap::new();
        let mut attempts: HashMap<(String, i32, i32), AttemptSeen> = HashMap::new();
        let mut died: Vec<(String, JobEvent)> = Vec::new();
        let mut requeued: Vec<(String, DateTime<Utc>)> = Vec::new();
        let mut discarded: Vec<String> = Vec::new();
        for event in events {
            if event.event == "progress" {
                // Progress lives on the job in Redis and in the stream; the ledger keeps
                // transitions, and a job reporting often would cost a write each time.
                continue;
            }
            let cursor = sortable_event_id(&event.stream_id);
            let row = rows.entry(event.job_id.clone()).or_insert_with(|| {
                existing
                    .get(&event.job_id)
                    .cloned()
                    .unwrap_or_else(|| new_row(event, records.get(&event.job_id)))
            });
            if cursor <= row.last_event_id {
                continue; // Applied by an earlier batch.
            }
            let when = at(event.at_ms);
            row.last_event_id = cursor;
            row.state = event.state.as_str().to_owned();
            row.updated_at = when;
            if event.attempt > 0 || event.event == "requeued" {
                row.attempt = event.attempt as i32;
            }
            if let Some(error) = &event.error {
                row.last_error = Some(error.clone());
            }
            row.run_at = event.next_run_at_ms.map(at);
            row.finished_at = event.state.is_terminal().then_some(when);
            match event.event.as_str() {
                "requeued" => {
                    row.round += 1;
                    requeued.push((event.job_id.clone(), when));
                }
                "died" => died.push((event.job_id.clone(), event.clone())),
                "discarded" => discarded.push(event.job_id.clone()),
                _ => {}
            }
            // Only a start or an end says anything about an attempt: other events carry the
            // attempt number too (`promoted` after a retry), and recording them would write an
            // empty end over the attempt's real outcome.
            let starts = event.event == "started";
            if event.attempt == 0 || !(starts || ENDING_EVENTS.contains(&event.event.as_str())) {
                continue;
            }
            let key = (event.job_id.clone(), row.round, event.attempt as i32);
            let seen = attempts.entry(key).or_insert_with(|| AttemptSeen {
                job_id: event.job_id.clone(),
                round: row.round,
                attempt: event.attempt as i32,
                started: None,
                ended: None,
            });
            if starts {
                // A snoozed or released attempt starts again under the same number.
                seen.started = Some((when, event.worker.clone()));
                seen.ended = None;
            } else {
                seen.ended = Some((when, event.event.clone(), event.error.clone()));
            }
        }
        for (id, row) in &mut rows {
            if let Some(record) = records.get(id) {
                refresh_from_record(row, record);
            }
        }

        // In id order, so recorders writing the same jobs take their row locks in one order
        // (PostgreSQL would otherwise find deadlocks and abort one of the batches).
        let mut ordered: Vec<&jobs::Model> = rows.values().collect();
        ordered.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        write_jobs(&txn, ordered.iter().copied()).await?;
        write_attempts(&txn, attempts.into_values()).await?;
        write_dead(&txn, &died, &records, &rows, &requeued, &discarded).await?;
        write_runs(&txn, ordered.iter().copied()).await?;
        txn.commit().await?;
        Ok(())
    }
}

/// A job the ledger has not seen: from Redis's record when it still exists, else from the
/// event alone.
fn new_row(event: &JobEvent, record: Option<&JobRecord>) -> jobs::Model {
    let created = record.map_or(event.at_ms, |r| r.created_at_ms);
    let payload = record.map_or(serde_json::Value::Null, |r| json_or_string(&r.payload));
    jobs::Model {
        subject: crate::jobs::subject_of(&event.kind, &payload),
        id: event.job_id.clone(),
        kind: event.kind.clone(),
        queue: event.queue.clone(),
        state: JobState::Queued.as_str().to_owned(),
        attempt: 0,
        round: 0,
        max_attempts: record.map_or(1, |r| r.max_attempts as i32),
        priority: record
            .map_or(Priority::Normal, |r| r.priority)
            .as_str()
            .to_owned(),
        payload,
        result: None,
        last_error: None,
        idempotency_key: record.and_then(|r| r.idempotency_key.clone()),
        workflow_run_id: record.and_then(|r| run_of(&event.kind, &event.job_id, r)),
        run_at: None,
        last_event_id: String::new(),
        created_at: at(created),
        updated_at: at(created),
        finished_at: None,
    }
}

fn run_of(kind: &str, id: &str, record: &JobRecord) -> Option<String> {
    crate::run_of(kind, id, record.workflow_id.as_deref()).map(str::to_owned)
}

fn refresh_from_record(row: &mut jobs::Model, record: &JobRecord) {
    row.max_attempts = record.max_attempts as i32;
    record.priority.as_str().clone_into(&mut row.priority);
    if row.payload.is_null() {
        row.payload = json_or_string(&record.payload);
    }
    if row.subject.is_none() {
        row.subject = crate::jobs::subject_of(&row.kind, &row.payload);
    }
    if let Some(result) = &record.result {
        row.result = Some(json_or_string(result));
    }
    if row.workflow_run_id.is_none() {
        row.workflow_run_id = run_of(&row.kind, &row.id, record);
    }
}

async fn write_jobs<'a>(
    txn: &DatabaseTransaction,
    rows: impl Iterator<Item = &'a jobs::Model>,
) -> Result<(), LedgerError> {
    let models: Vec<jobs::ActiveModel> = rows.cloned().map(Into::into).collect();
    for chunk in models.chunks(200) {
        // Another recorder may hold newer events of the same job: the newer event wins.
        let newer = Expr::cust("excluded.last_event_id > jobs.last_event_id");
        jobs::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(jobs::Column::Id)
                    .update_columns([
                        jobs::Column::State,
                        jobs::Column::Attempt,
                        jobs::Column::Round,
                        jobs::Column::MaxAttempts,
                        jobs::Column::Priority,
                        jobs::Column::Payload,
                        jobs::Column::Result,
                        jobs::Column::LastError,
                        jobs::Column::WorkflowRunId,
                        jobs::Column::Subject,
                        jobs::Column::RunAt,
                        jobs::Column::LastEventId,
                        jobs::Column::UpdatedAt,
                        jobs::Column::FinishedAt,
                    ])
                    .action_and_where(newer)
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

async fn write_attempts(
    txn: &DatabaseTransaction,
    seen: impl Iterator<Item = AttemptSeen>,
) -> Result<(), LedgerError> {
    let mut seen: Vec<AttemptSeen> = seen.collect();
    // In key order, for the same reason as the jobs: one lock order across recorders.
    seen.sort_unstable_by(|a, b| {
        (&a.job_id, a.round, a.attempt).cmp(&(&b.job_id, b.round, b.attempt))
    });
    let (started, ended_only): (Vec<_>, Vec<_>) =
        seen.into_iter().partition(|a| a.started.is_some());
    let model = |a: &AttemptSeen| {
        let (started_at, worker) = a.started.clone().unwrap_or_else(|| {
            // Its start was recorded by an earlier batch; this value is not written.
            (a.ended.as_ref().map_or_else(Utc::now, |e| e.0), None)
        });
        let (ended_at, outcome, error) = match a.ended.clone() {
            Some((t, o, e)) => (Some(t), Some(o), e),
            None => (None, None, None),
        };
        job_attempts::ActiveModel {
            job_id: Set(a.job_id.clone()),
            round: Set(a.round),
            attempt: Set(a.attempt),
            worker: Set(worker),
            started_at: Set(started_at),
            ended_at: Set(ended_at),
            outcome: Set(outcome),
            error: Set(error),
            ..Default::default()
        }
    };
    let key = [
        job_attempts::Column::JobId,
        job_attempts::Column::Round,
        job_attempts::Column::Attempt,
    ];
    for (batch, columns) in [
        (
            started,
            vec![
                job_attempts::Column::Worker,
                job_attempts::Column::StartedAt,
                job_attempts::Column::EndedAt,
                job_attempts::Column::Outcome,
                job_attempts::Column::Error,
            ],
        ),
        (
            ended_only,
            vec![
                job_attempts::Column::EndedAt,
                job_attempts::Column::Outcome,
                job_attempts::Column::Error,
            ],
        ),
    ] {
        let models: Vec<_> = batch.iter().map(model).collect();
        for chunk in models.chunks(200) {
            job_attempts::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns(key)
                        .update_columns(columns.clone())
                        .to_owned(),
                )
                .exec_without_returning(txn)
                .await?;
        }
    }
    Ok(())
}

async fn write_dead(
    txn: &DatabaseTransaction,
    died: &[(String, JobEvent)],
    records: &HashMap<String, JobRecord>,
    rows: &HashMap<String, jobs::Model>,
    requeued: &[(String, DateTime<Utc>)],
    discarded: &[String],
) -> Result<(), LedgerError> {
    for (id, event) in died {
        let (Some(row), record) = (rows.get(id), records.get(id)) else {
            continue;
        };
        let errors = record.map_or(serde_json::json!([]), |r| {
            serde_json::to_value(&r.errors).unwrap_or_default()
        });
        let dead = dead_jobs::ActiveModel {
            job_id: Set(id.clone()),
            kind: Set(row.kind.clone()),
            queue: Set(row.queue.clone()),
            payload: Set(row.payload.clone()),
            payload_version: Set(record.map_or(1, |r| r.payload_version as i32)),
            max_attempts: Set(row.max_attempts),
            priority: Set(row.priority.clone()),
            attempts: Set(event.attempt as i32),
            error: Set(event.error.clone().unwrap_or_default()),
            fingerprint: Set(event.fingerprint.clone().unwrap_or_default()),
            errors: Set(errors),
            workflow_run_id: Set(row.workflow_run_id.clone()),
            died_at: Set(at(event.at_ms)),
            requeued_at: Set(None),
        };
        dead_jobs::Entity::insert(dead)
            .on_conflict(
                OnConflict::column(dead_jobs::Column::JobId)
                    .update_columns([
                        dead_jobs::Column::Payload,
                        dead_jobs::Column::Attempts,
                        dead_jobs::Column::Error,
                        dead_jobs::Column::Fingerprint,
                        dead_jobs::Column::Errors,
                        dead_jobs::Column::DiedAt,
                        dead_jobs::Column::RequeuedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    for (id, when) in requeued {
        dead_jobs::Entity::update_many()
            .col_expr(dead_jobs::Column::RequeuedAt, Expr::value(*when))
            .filter(dead_jobs::Column::JobId.eq(id))
            .filter(dead_jobs::Column::DiedAt.lte(*when))
            .exec(txn)
            .await?;
    }
    if !discarded.is_empty() {
        dead_jobs::Entity::delete_many()
            .filter(dead_jobs::Column::JobId.is_in(discarded.to_vec()))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// Records each job as a step of its run and recomputes the runs' progress from their steps.
async fn write_runs<'a>(
    txn: &DatabaseTransaction,
    rows: impl Iterator<Item = &'a jobs::Model>,
) -> Result<(), LedgerError> {
    let steps: Vec<&jobs::Model> = rows.filter(|r| r.workflow_run_id.is_some()).collect();
    if steps.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let run_ids: Vec<String> = steps
        .iter()
        .filter_map(|r| r.workflow_run_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let fresh_runs: Vec<workflow_runs::ActiveModel> = run_ids
        .iter()
        .map(|id| workflow_runs::ActiveModel {
            id: Set(id.clone()),
            workflow: Set(SENSOR_PIPELINE.into()),
            state: Set(RunState::Running.as_str().into()),
            steps_total: Set(0),
            steps_finished: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            finished_at: Set(None),
        })
        .collect();
    for chunk in fresh_runs.chunks(200) {
        workflow_runs::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(workflow_runs::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    // The runs are locked (in id order) before their steps are written and read. A recorder
    // committing steps of the same run at the same moment would otherwise count only the steps
    // it can see and write that count over this one's; after the lock, the read sees the other
    // recorder's committed steps. The lock comes before the steps' upsert because that upsert
    // takes a key-share lock on the run (the foreign key), and two recorders each holding one
    // and asking for the exclusive lock would deadlock. (SQLite has no row locks and needs
    // none: it runs one writing transaction at a time.)
    let runs = workflow_runs::Entity::find()
        .filter(workflow_runs::Column::Id.is_in(run_ids.clone()))
        .order_by_asc(workflow_runs::Column::Id)
        .lock_exclusive()
        .all(txn)
        .await?;
    // A step's state is its job's row as the ledger now holds it, not this batch's view: the
    // jobs upsert keeps the newest event, but another recorder may have written a newer one
    // (a start and an end in the same millisecond would otherwise let the start win here).
    let step_ids: Vec<String> = steps.iter().map(|r| r.id.clone()).collect();
    let current: HashMap<String, (String, DateTime<Utc>)> = jobs::Entity::find()
        .select_only()
        .columns([
            jobs::Column::Id,
            jobs::Column::State,
            jobs::Column::UpdatedAt,
        ])
        .filter(jobs::Column::Id.is_in(step_ids))
        .into_tuple::<(String, String, DateTime<Utc>)>()
        .all(txn)
        .await?
        .into_iter()
        .map(|(id, state, updated)| (id, (state, updated)))
        .collect();
    let step_models: Vec<workflow_steps::ActiveModel> = steps
        .iter()
        .map(|r| {
            let (state, updated_at) = current
                .get(&r.id)
                .cloned()
                .unwrap_or_else(|| (r.state.clone(), r.updated_at));
            workflow_steps::ActiveModel {
                run_id: Set(r.workflow_run_id.clone().unwrap_or_default()),
                job_id: Set(r.id.clone()),
                kind: Set(r.kind.clone()),
                state: Set(state),
                created_at: Set(r.created_at),
                updated_at: Set(updated_at),
                ..Default::default()
            }
        })
        .collect();
    for chunk in step_models.chunks(200) {
        workflow_steps::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(workflow_steps::Column::JobId)
                    .update_columns([
                        workflow_steps::Column::State,
                        workflow_steps::Column::UpdatedAt,
                    ])
                    .action_and_where(Expr::cust(
                        "excluded.updated_at >= workflow_steps.updated_at",
                    ))
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    // Progress follows from the steps, so recomputing it is idempotent.
    let all_steps = workflow_steps::Entity::find()
        .filter(workflow_steps::Column::RunId.is_in(run_ids))
        .all(txn)
        .await?;
    let mut by_run: HashMap<&str, Vec<&workflow_steps::Model>> = HashMap::new();
    for step in &all_steps {
        by_run.entry(step.run_id.as_str()).or_default().push(step);
    }
    let mut changed: Vec<workflow_runs::ActiveModel> = Vec::new();
    for run in runs {
        let steps = by_run.get(run.id.as_str()).cloned().unwrap_or_default();
        let progress = RunProgress::of(&steps);
        if (progress.state.as_str(), progress.total, progress.finished)
            == (run.state.as_str(), run.steps_total, run.steps_finished)
        {
            continue;
        }
        let last_step = steps.iter().map(|s| s.updated_at).max().unwrap_or(now);
        let mut active: workflow_runs::ActiveModel = run.into();
        active.state = Set(progress.state.as_str().into());
        active.steps_total = Set(progress.total);
        active.steps_finished = Set(progress.finished);
        active.updated_at = Set(now);
        active.finished_at = Set((progress.state != RunState::Running).then_some(last_step));
        changed.push(active);
    }
    // One multi-row upsert per chunk rather than an UPDATE per run: a batch touches dozens of
    // runs, and a statement each was most of the recorder's round trips.
    for chunk in changed.chunks(200) {
        workflow_runs::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::column(workflow_runs::Column::Id)
                    .update_columns([
                        workflow_runs::Column::State,
                        workflow_runs::Column::StepsTotal,
                        workflow_runs::Column::StepsFinished,
                        workflow_runs::Column::UpdatedAt,
                        workflow_runs::Column::FinishedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// A run is terminal when every step it has is: `FAILED` if a step is dead, `CANCELLED` if a
/// step was cancelled, else `SUCCEEDED`. A requeued dead step makes it `RUNNING` again.
struct RunProgress {
    state: RunState,
    total: i32,
    finished: i32,
}

impl RunProgress {
    fn of(steps: &[&workflow_steps::Model]) -> Self {
        let state_of = |s: &workflow_steps::Model| s.state.parse::<JobState>().ok();
        let terminal = |s: &&&workflow_steps::Model| state_of(s).is_some_and(JobState::is_terminal);
        let finished = steps.iter().filter(terminal).count() as i32;
        let total = steps.len() as i32;
        let any = |wanted: JobState| steps.iter().any(|s| state_of(s) == Some(wanted));
        let state = if finished < total {
            RunState::Running
        } else if any(JobState::Dead) {
            RunState::Failed
        } else if any(JobState::Cancelled) {
            RunState::Cancelled
        } else {
            RunState::Succeeded
        };
        Self {
            state,
            total,
            finished,
        }
    }
}
