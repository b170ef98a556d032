//! [`TestApp`]: one deployment per test, removed when the test ends.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use migration::testing::TestDb;
use queue::{DeadFilter, Engine, InlineRun, InlineStep, JobRecord, testing::TestPrefix};
use runtime::{Context, Perform, PoolConfig, QUEUES, perform_next};
use sea_orm::DatabaseConnection;
use workflows::BackgroundJob;

use crate::{Pools, Receiver, pools};

/// How long [`TestApp::drain`] waits for scheduled jobs (retries, snoozes) to fall due.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sql {
    Sqlite,
    Postgres,
}

impl Sql {
    /// A fresh database of this kind, not migrated.
    pub async fn fresh(self) -> TestDb {
        match self {
            Sql::Sqlite => TestDb::sqlite().await,
            Sql::Postgres => TestDb::postgres().await,
        }
    }

    /// A fresh database of this kind with every migration applied.
    pub async fn migrated(self) -> TestDb {
        match self {
            Sql::Sqlite => TestDb::migrated_sqlite().await,
            Sql::Postgres => TestDb::migrated_postgres().await,
        }
    }
}

/// One deployment for a test: a migrated database, a Redis prefix and a webhook receiver of
/// its own, all removed when the test ends. Worker pools start on demand; jobs can also be
/// performed one at a time in the test's task.
#[derive(Debug)]
pub struct TestApp {
    pub db: TestDb,
    pub redis: TestPrefix,
    pub engine: Engine,
    pub receiver: Receiver,
    ctx: Context,
    config: PoolConfig,
    expected_dead: AtomicU64,
}

/// What [`TestApp::drain`] performed: attempts by kind and outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    /// `(kind, outcome)` → attempts, e.g. `("ingest", "succeeded")`.
    pub attempts: BTreeMap<(String, &'static str), usize>,
    /// Ready jobs left waiting on paused queues, by queue: a pause holds them, so the drain
    /// does not wait for them.
    pub held: BTreeMap<String, u64>,
}

impl Drained {
    /// Attempts of `kind` that ended with `outcome` (`succeeded`, `retry`, `dead`, `snooze`,
    /// `cancelled`).
    pub fn count(&self, kind: &str, outcome: &str) -> usize {
        self.attempts
            .iter()
            .filter(|((k, o), _)| k == kind && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> usize {
        self.attempts.values().sum()
    }
}

/// The attempt's outcome as the engine applied it: a retry that found no attempts left died.
fn outcome_name(run: &InlineRun) -> &'static str {
    match run.applied {
        queue::Applied::Died => "dead",
        _ => run.outcome.name(),
    }
}

impl TestApp {
    /// Against `REDIS_URL` (default the local Redis), under a prefix tagged `tag`.
    pub async fn new(sql: Sql, tag: &str) -> Self {
        Self::at(sql, tag, &queue::testing::redis_url()).await
    }

    /// Against the Redis at `redis_url` (a test's own server).
    pub async fn at(sql: Sql, tag: &str, redis_url: &str) -> Self {
        let db = sql.migrated().await;
        let redis = TestPrefix::at(redis_url, tag, |_| {}).await;
        let engine = redis.engine.clone();
        let ctx = Context::new(db.db().clone(), engine.clone(), pools::notifier(3));
        Self {
            ctx,
            config: pools::test_config(),
            engine,
            db,
            redis,
            receiver: Receiver::start().await,
            expected_dead: AtomicU64::new(0),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        self.db.db()
    }

    /// What handlers get, as the pools give it (a notifier allowing loopback receivers).
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Pools for every queue in this process, tuned for tests (millisecond backoff and
    /// breaker, short timeouts); `tweak` adjusts them.
    pub fn start_pools(&self, tweak: impl FnOnce(&mut PoolConfig)) -> Pools {
        pools::start_pools(&self.db, &self.engine, 3, tweak)
    }

    /// Like [`TestApp::start_pools`] with breakers that open after `breaker_failures`.
    pub fn start_pools_with(
        &self,
        breaker_failures: u32,
        tweak: impl FnOnce(&mut PoolConfig),
    ) -> Pools {
        pools::start_pools(&self.db, &self.engine, breaker_failures, tweak)
    }

    /// Leases the next ready job of kind `J` and performs it as a pool would (the kind's
    /// decoder, handler, metrics, outcome and completion); fails the test when none is ready.
    pub async fn perform<J: Perform>(&self) -> InlineRun {
        match runtime::perform::<J>(&self.ctx, &self.config)
            .await
            .expect("perform")
        {
            InlineStep::Ran(run) => run,
            InlineStep::Idle { next_due_in } => panic!(
                "no {} job is ready to perform (next due in {next_due_in:?})",
                J::KIND
            ),
        }
    }

    /// The jobs of kind `J` waiting on its queue (ready, then scheduled), decoded.
    pub async fn enqueued<J: BackgroundJob>(&self) -> Vec<(JobRecord, J)> {
        self.engine
            .waiting(J::KIND, 10_000)
            .await
            .expect("waiting jobs")
            .into_iter()
            .filter(|job| J::answers_to(&job.kind))
            .map(|job| {
                let payload =
                    J::decode_leased(job.payload_version, &job.payload).unwrap_or_else(|e| {
                        panic!("queued {} {} does not decode: {e}", J::KIND, job.id)
                    });
                (job, payload)
            })
            .collect()
    }

    /// Fails the test unless a job of kind `J` whose payload satisfies `matching` is waiting;
    /// answers it.
    pub async fn assert_enqueued<J: BackgroundJob + std::fmt::Debug>(
        &self,
        matching: impl Fn(&J) -> bool,
    ) -> (JobRecord, J) {
        let waiting = self.enqueued::<J>().await;
        let shown: Vec<String> = waiting.iter().map(|(_, j)| format!("{j:?}")).collect();
        waiting
            .into_iter()
            .find(|(_, job)| matching(job))
            .unwrap_or_else(|| {
                panic!(
                    "no matching {} job is enqueued; waiting: {shown:?}",
                    J::KIND
                )
            })
    }

    /// Fails the test if a job of kind `J` whose payload satisfies `matching` is waiting.
    pub async fn refute_enqueued<J: BackgroundJob + std::fmt::Debug>(
        &self,
        matching: impl Fn(&J) -> bool,
    ) {
        if let Some((record, job)) = self
            .enqueued::<J>()
            .await
            .into_iter()
            .find(|(_, job)| matching(job))
        {
            panic!("{} {} is enqueued: {job:?}", J::KIND, record.id);
        }
    }

    /// Performs every job of every queue, in the test's task, until nothing is ready,
    /// scheduled or leased: jobs the performed ones push are performed too, and retries and
    /// snoozes are waited for exactly until they fall due (no polling). Fails the test when
    /// jobs are still scheduled after 30 s.
    pub async fn drain(&self) -> Drained {
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        let mut drained = Drained::default();
        loop {
            let mut ran = false;
            let mut next_due: Option<Duration> = None;
            for queue in QUEUES {
                loop {
                    match perform_next(&self.ctx, &self.config, queue)
                        .await
                        .expect("perform")
                    {
                        InlineStep::Ran(run) => {
                            ran = true;
                            *drained
                                .attempts
                                .entry((run.job.kind.clone(), outcome_name(&run)))
                                .or_default() += 1;
                        }
                        InlineStep::Idle { next_due_in } => {
                            next_due = match (next_due, next_due_in) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                            break;
                        }
                    }
                }
            }
            if ran {
                continue;
            }
            let mut left = Vec::new();
            drained.held.clear();
            for queue in QUEUES {
                let mut stats = self.engine.stats(queue).await.expect("stats");
                if stats.paused_since_ms.is_some() && stats.ready > 0 {
                    drained.held.insert(queue.to_owned(), stats.ready);
                    stats.ready = 0;
                }
                if stats.scheduled + stats.running + stats.ready > 0 {
                    left.push(format!(
                        "{queue}: {} scheduled, {} leased, {} ready",
                        stats.scheduled, stats.running, stats.ready
                    ));
                }
            }
            if left.is_empty() {
                return drained;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                panic!("drain: jobs still waiting after {DRAIN_LIMIT:?}: {left:?}");
            }
            let wait = next_due
                .unwrap_or(Duration::from_millis(5))
                .max(Duration::from_millis(1));
            tokio::time::sleep(wait.min(deadline - now)).await;
        }
    }

    /// Tells the end-of-test check that exactly `n` jobs are meant to be dead when the test
    /// ends (a test of dead jobs, of permanent errors).
    pub fn expect_dead(&self, n: u64) {
        self.expected_dead.store(n, Ordering::Relaxed);
    }

    /// Jobs dead now, over every queue.
    pub async fn dead_jobs(&self) -> u64 {
        dead_over_queues(&self.engine).await.expect("queue stats")
    }
}

async fn dead_over_queues(engine: &Engine) -> Result<u64, queue::QueueError> {
    let mut dead = 0;
    for queue in QUEUES {
        dead += engine.stats(queue).await?.dead;
    }
    Ok(dead)
}

/// The dead jobs of every queue (up to 50 each), as `kind id: last error`.
async fn dead_listing(engine: &Engine) -> Result<Vec<String>, queue::QueueError> {
    let mut shown = Vec::new();
    for queue in QUEUES {
        let filter = DeadFilter {
            queue: (*queue).to_owned(),
            since_ms: None,
            until_ms: None,
            fingerprint: None,
        };
        for job in engine.dead_jobs(&filter, 0, 50).await? {
            let error = job.last_error.as_deref().unwrap_or("");
            shown.push(format!("{} {}: {error}", job.kind, job.id));
        }
    }
    Ok(shown)
}

impl Drop for TestApp {
    /// The end-of-test check: a job that died without the test expecting it is a failure
    /// even when every assertion passed (a handler erroring in the background).
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let (url, prefix) = (self.redis.url.clone(), self.redis.prefix.clone());
        let expected = self.expected_dead.load(Ordering::Relaxed);
        // Drop cannot await: a thread with a runtime of its own reads the dead sets. A test
        // that stopped its own Redis leaves nothing to read: then there is nothing to check.
        let unexpected = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let engine = Engine::connect(&url, queue::testing::config(&prefix))
                    .await
                    .ok()?;
                let count = dead_over_queues(&engine).await.ok()?;
                if count == expected {
                    return None;
                }
                Some((count, dead_listing(&engine).await.unwrap_or_default()))
            })
        })
        .join()
        .ok()
        .flatten();
        if let Some((count, shown)) = unexpected {
            panic!(
                "{count} jobs died and the test expected {expected} (TestApp::expect_dead): {shown:?}"
            );
        }
    }
}
