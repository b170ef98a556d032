//! Making each schedule's jobs: one per tick, across any number of processes and restarts.
//!
//! A tick is made in three steps. **Claim**: one `UPDATE … WHERE next_run_at = <due tick> AND
//! version = <read> AND pending IS NULL` moves `next_run_at` past now and writes the ticks the
//! claim will push into `pending`. Of several schedulers only one claim matches, so only one
//! plan exists per tick, whatever each scheduler's clock says. **Push**: the planned jobs go to
//! the queue under the idempotency key `schedule:<id>:<tick ms>`. **Clear**: `pending` is set
//! back to null (compare-and-set on its text). A scheduler that dies between claim and clear
//! leaves `pending` set; the next scheduler pushes it again, and the keys make the repeat a
//! no-op. So a tick makes exactly one job, or none when the schedule's policy skips it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entities::schedules;
use queue::{Engine, KeyScope, NewJob};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Statement, sea_query::Expr,
};

use super::{Missed, Timing};
use crate::jobs::submission;

/// How long an idempotency key of a tick holds: far longer than any claim lives.
const TICK_KEY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Schedules handled per pass.
const DUE_PER_PASS: u64 = 100;

/// How a [`Scheduler`] runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often it looks for due ticks (also the most a tick is late when all is well).
    pub every: Duration,
    /// A tick reached later than this after its time is missed: the schedule's [`Missed`]
    /// policy decides what it makes.
    pub late_after: Duration,
    /// Most on-time ticks of one schedule pushed by one claim (a second-granularity schedule
    /// that fell behind catches up over several passes).
    pub max_ticks_per_claim: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_millis(500),
            late_after: Duration::from_secs(60),
            max_ticks_per_claim: 100,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Jobs pushed (a repeat answered by its key counts too: the tick has its job).
    pub pushed: usize,
    /// Missed ticks that made no job (policy `skip`).
    pub skipped: usize,
    /// Claims another scheduler made first.
    pub lost: usize,
    /// Schedules whose definition no longer makes a valid job (logged, left as they are).
    pub broken: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
}

/// Makes the jobs of due schedules. Run one in every process that should (the workers, the
/// API's one-process mode): they share the work safely.
#[derive(Debug, Clone)]
pub struct Scheduler {
    db: DatabaseConnection,
    engine: Engine,
    config: SchedulerConfig,
}

impl Scheduler {
    pub fn new(db: DatabaseConnection, engine: Engine, config: SchedulerConfig) -> Self {
        Self { db, engine, config }
    }

    /// Passes every `config.every` until `stop` resolves, each at the database's time.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let pass = match database_now(&self.db).await {
                Ok(now) => self.tick_at(now).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = pass {
                tracing::warn!(error = %e, "schedules: pass failed; trying again");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.config.every) => {}
            }
        }
    }

    /// One pass as if the time were `now`: finishes claims left pending, then claims and
    /// pushes what is due. Tests pass their own `now` (a clock jump is a `now` far ahead).
    pub async fn tick_at(&self, now: DateTime<Utc>) -> Result<TickReport, SchedulerError> {
        let mut report = TickReport::default();
        let due = schedules::Entity::find()
            .filter(
                Condition::any()
                    .add(schedules::Column::Pending.is_not_null())
                    .add(
                        Condition::all()
                            .add(schedules::Column::Enabled.eq(true))
                            .add(schedules::Column::NextRunAt.lte(now)),
                    ),
            )
            .order_by_asc(schedules::Column::NextRunAt)
            .limit(DUE_PER_PASS)
            .all(&self.db)
            .await?;
        for schedule in due {
            let span = tracing::info_span!("schedule", schedule.id = schedule.id, schedule.name = %schedule.name);
            let _guard = span.enter();
            match &schedule.pending {
                Some(plan) => self.finish(&schedule, plan, &mut report).await?,
                None => self.claim(&schedule, now, &mut report).await?,
            }
        }
        Ok(report)
    }

    async fn claim(
        &self,
        schedule: &schedules::Model,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let Some(due) = schedule.next_run_at else {
            return Ok(());
        };
        let Ok(timing) = Timing::parse(&schedule.cron, &schedule.time_zone) else {
            tracing::error!(cron = %schedule.cron, zone = %schedule.time_zone, "schedules: the stored timing no longer parses; left as it is");
            report.broken += 1;
            return Ok(());
        };
        let missed = Missed::parse(&schedule.missed).unwrap_or(Missed::Skip);
        let (plan, skipped) = self.plan(&timing, missed, due, now);
        let next = timing.next_after(now);
        let plan_text = (!plan.is_empty()).then(|| plan_json(&plan));
        let claimed = schedules::Entity::update_many()
            .col_expr(schedules::Column::NextRunAt, Expr::value(next))
            .col_expr(schedules::Column::Pending, Expr::value(plan_text.clone()))
            .filter(schedules::Column::Id.eq(schedule.id))
            .filter(schedules::Column::NextRunAt.eq(due))
            .filter(schedules::Column::Version.eq(schedule.version))
            .filter(schedules::Column::Enabled.eq(true))
            .filter(schedules::Column::Pending.is_null())
            .exec(&self.db)
            .await?;
        if claimed.rows_affected != 1 {
            report.lost += 1;
            return Ok(());
        }
        report.skipped += skipped;
        if skipped > 0 {
            tracing::info!(skipped, ?missed, "schedules: missed ticks");
        }
        match plan_text {
            Some(text) => self.finish(schedule, &text, report).await,
            None => Ok(()),
        }
    }

    /// The ticks a claim at `now` pushes: each on-time tick (reached within `late_after`),
    /// plus, when earlier ticks were missed, one job for all of them (policy `catch_up_once`,
    /// keyed by the first missed tick) or none (`skip`). Answers the plan and the ticks skipped.
    fn plan(
        &self,
        timing: &Timing,
        missed: Missed,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Vec<i64>, usize) {
        let late_after = chrono::Duration::from_std(self.config.late_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let on_time_from = now - late_after;
        let mut plan = Vec::new();
        let mut skipped = 0;
        let first_on_time = if due < on_time_from {
            // Some ticks were missed; count them, boundedly, for the report.
            let mut t = due;
            let mut count = 0;
            while t < on_time_from && count < 10_000 {
                count += 1;
                match timing.next_after(t) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            match missed {
                Missed::CatchUpOnce => plan.push(due.timestamp_millis()),
                Missed::Skip => skipped = count,
            }
            timing.next_from(on_time_from)
        } else {
            Some(due)
        };
        let mut t = first_on_time;
        while let Some(tick) = t {
            if tick > now || plan.len() >= self.config.max_ticks_per_claim {
                break;
            }
            plan.push(tick.timestamp_millis());
            t = timing.next_after(tick);
        }
        (plan, skipped)
    }

    /// Pushes a claim's ticks (again, if a scheduler died before clearing it: the keys make it
    /// a no-op), then clears the claim.
    async fn finish(
        &self,
        schedule: &schedules::Model,
        plan_text: &str,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let ticks: Vec<i64> = serde_json::from_str(plan_text).unwrap_or_default();
        let mut jobs = Vec::with_capacity(ticks.len());
        for tick in &ticks {
            match submission(&schedule.kind, schedule.payload.clone()) {
                Ok(job) => jobs.push(tick_job(job, schedule.id, *tick)),
                Err(e) => {
                    tracing::error!(error = %e, "schedules: the stored payload no longer makes a valid job; its claim is dropped");
                    report.broken += 1;
                    jobs.clear();
                    break;
                }
            }
        }
        let pushed = self.engine.push_many(jobs).await?;
        report.pushed += pushed.len();
        let last = ticks
            .iter()
            .max()
            .and_then(|ms| DateTime::from_timestamp_millis(*ms));
        let mut clear = schedules::Entity::update_many()
            .col_expr(
                schedules::Column::Pending,
                Expr::value(Option::<String>::None),
            )
            .filter(schedules::Column::Id.eq(schedule.id))
            .filter(schedules::Column::Pending.eq(plan_text));
        if let (Some(at), Some(job)) = (last, pushed.last()) {
            clear = clear
                .col_expr(schedules::Column::LastRunAt, Expr::value(Some(at)))
                .col_expr(
                    schedules::Column::LastJobId,
                    Expr::value(Some(job.id.clone())),
                );
        }
        clear.exec(&self.db).await?;
        for (tick, job) in ticks.iter().zip(&pushed) {
            tracing::info!(tick, job.id = %job.id, duplicate = job.duplicate, "schedules: tick pushed");
        }
        Ok(())
    }
}

/// The database's clock: every scheduler of a deployment reads the same one, so a worker host
/// whose clock is off (or jumps) neither makes ticks early nor skips them for everyone.
pub async fn database_now(db: &DatabaseConnection) -> Result<DateTime<Utc>, sea_orm::DbErr> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms"
        }
        _ => "SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS ms",
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom("the database told no time".into()))?;
    let ms: i64 = row.try_get("", "ms")?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        sea_orm::DbErr::Custom(format!("the database's time {ms} ms is out of range"))
    })
}

fn plan_json(ticks: &[i64]) -> String {
    serde_json::to_string(ticks).unwrap_or_else(|_| "[]".into())
}

/// The idempotency key of one tick of one schedule.
pub fn tick_key(schedule: i64, tick_ms: i64) -> String {
    format!("schedule:{schedule}:{tick_ms}")
}

fn tick_job(job: NewJob, schedule: i64, tick_ms: i64) -> NewJob {
    job.with_idempotency_key(
        tick_key(schedule, tick_ms),
        KeyScope::For(Some(TICK_KEY_TTL)),
    )
    .with_correlation_id(format!("schedule:{schedule}"))
}
