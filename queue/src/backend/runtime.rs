//! The tasks behind one worker's backend: a fetcher that leases jobs only when a slot is free,
//! an acknowledger that coalesces outcomes into one script call, and a maintenance loop
//! (lease renewal, cancel requests, reaping, heartbeat, clean-up and stream trimming).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use apalis_core::{
    task::{Task, builder::TaskBuilder, task_id::TaskId},
    worker::context::WorkerContext,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{JobContext, PayloadDecoder, WorkerOptions};
use crate::{
    Engine, FetchRequest, QueueError,
    blocking::BlockingCalls,
    engine::RenewStatus,
    job::{Applied, LeasedJob, Outcome},
};

pub(crate) type OutcomeMsg = (String, String, Outcome);

/// Well inside the heartbeat's expiry, whatever the lease.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// Counters of one worker, readable while it runs.
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub fetched: AtomicU64,
    pub succeeded: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    pub snoozed: AtomicU64,
    pub cancelled: AtomicU64,
    pub released: AtomicU64,
    /// Outcomes refused because the lease token no longer matched.
    pub stale: AtomicU64,
    pub redis_errors: AtomicU64,
}

impl WorkerCounters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct InFlight {
    token: String,
    cancel: CancellationToken,
    timed_out: Arc<AtomicBool>,
}

pub(crate) struct Shared {
    pub engine: Engine,
    pub opts: WorkerOptions,
    pub worker_id: String,
    /// Free concurrency slots: a job is leased only into a free slot.
    pub slots: Semaphore,
    in_flight: Mutex<HashMap<String, InFlight>>,
    outcomes: mpsc::UnboundedSender<OutcomeMsg>,
    /// Stop leasing new jobs.
    pub stop: CancellationToken,
    /// Give unfinished jobs back now (the shutdown deadline passed).
    pub release: CancellationToken,
    /// In-flight work is over and every outcome is queued: flush and end.
    pub closing: CancellationToken,
    pub counters: Arc<WorkerCounters>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("worker_id", &self.worker_id)
            .field("queue", &self.opts.queue)
            .finish()
    }
}

impl Shared {
    pub fn new(
        engine: Engine,
        opts: WorkerOptions,
        worker_id: String,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<OutcomeMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Self {
            engine,
            slots: Semaphore::new(opts.concurrency.max(1)),
            opts,
            worker_id,
            in_flight: Mutex::new(HashMap::new()),
            outcomes: tx,
            stop: CancellationToken::new(),
            release: CancellationToken::new(),
            closing: CancellationToken::new(),
            counters: Arc::default(),
        });
        (shared, rx)
    }

    pub(crate) fn retry_outcome(&self, job: &JobContext, error: String) -> Outcome {
        Outcome::Retry {
            error,
            delay: self.opts.retry.delay(job.attempt),
        }
    }

    /// Queues a job's outcome and frees its slot. The lease stays held (and renewed) until the
    /// acknowledger has applied the outcome, so a slow Redis cannot turn a success into a rerun.
    pub fn finish(&self, job: &JobContext, outcome: Outcome) {
        // The acknowledger lives until `closing`, which waits for every slot to be free.
        let _ = self
            .outcomes
            .send((job.id.clone(), job.token.clone(), outcome));
        self.slots.add_permits(1);
    }

    /// Forgets leases whose outcomes were applied (or refused). A job already leased again
    /// under a new token is left alone.
    fn forget_leases(&self, batch: &[OutcomeMsg]) {
        if let Ok(mut m) = self.in_flight.lock() {
            for (id, token, _) in batch {
                if m.get(id).is_some_and(|f| &f.token == token) {
                    m.remove(id);
                }
            }
        }
    }

    fn held_leases(&self) -> Vec<(String, String)> {
        self.in_flight
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(id, f)| (id.clone(), f.token.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn in_flight_count(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn request_cancel(&self, id: &str, timed_out: bool) {
        if let Ok(m) = self.in_flight.lock()
            && let Some(f) = m.get(id)
        {
            if timed_out {
                f.timed_out.store(true, Ordering::Relaxed);
            }
            f.cancel.cancel();
        }
    }

    pub(crate) fn fetch_request(&self, max_jobs: usize) -> FetchRequest<'_> {
        FetchRequest {
            queue: &self.opts.queue,
            worker_id: &self.worker_id,
            max_jobs,
            lease: self.opts.lease,
            backoff_base: self.opts.retry.backoff_base,
            backoff_cap: self.opts.retry.backoff_cap,
            timeout: self.opts.timeout,
            timeout_grace: self.opts.timeout_grace,
        }
    }

    /// What the handler of `job` is told about it (a fresh cancel token of its own).
    pub(crate) fn job_context(&self, job: &LeasedJob) -> JobContext {
        JobContext {
            queue: self.opts.queue.clone(),
            kind: job.kind.clone(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            payload_version: job.payload_version,
            workflow_id: job.workflow_id.clone(),
            correlation_id: job.correlation_id.clone(),
            trace_context: job.trace_context.clone(),
            created_at_ms: job.created_at_ms,
            timeout: job.timeout,
            deadline: job.timeout.map(|t| tokio::time::Instant::now() + t),
            timed_out: Arc::default(),
            token: job.token.clone(),
            cancel: CancellationToken::new(),
            engine: self.engine.clone(),
            id: job.id.clone(),
        }
    }

    /// Turns a leased job into an apalis task, or ends it at once when its payload does not
    /// decode (a permanent error: retrying cannot fix it).
    fn dispatch<Args>(&self, job: LeasedJob, decode: PayloadDecoder<Args>) -> Option<Task<Args>> {
        let ctx = self.job_context(&job);
        if let Ok(mut m) = self.in_flight.lock() {
            m.insert(
                job.id.clone(),
                InFlight {
                    token: job.token.clone(),
                    cancel: ctx.cancel.clone(),
                    timed_out: ctx.timed_out.clone(),
                },
            );
        }
        match decode_leased(&ctx, &job, decode) {
            Ok(args) => Some(
                TaskBuilder::new(args)
                    .task_id(TaskId::from_string(job.id))
                    .attempt(job.attempt.saturating_sub(1) as usize)
                    .max_attempts(job.max_attempts as usize)
                    .data(ctx)
                    .build(),
            ),
            Err(outcome) => {
                self.finish(&ctx, outcome);
                None
            }
        }
    }
}

/// Decodes a leased job's payload, or answers the outcome of a payload that cannot be decoded
/// (dead at once: retrying cannot fix it).
pub(crate) fn decode_leased<Args>(
    ctx: &JobContext,
    job: &LeasedJob,
    decode: PayloadDecoder<Args>,
) -> Result<Args, Outcome> {
    decode(job.payload_version, &job.payload).map_err(|e| {
        let error = format!(
            "payload does not decode as {}: {e}",
            std::any::type_name::<Args>()
        );
        tracing::warn!(job.id = %ctx.id, job.kind = %ctx.kind, %error);
        Outcome::Fail { error }
    })
}

/// Leases jobs into free slots; idles on the queue's wake-up list when there is nothing to do.
pub(crate) async fn fetcher<Args: Send + 'static>(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Task<Args>>,
    decode: PayloadDecoder<Args>,
) {
    let mut failures: u32 = 0;
    let mut wakes = BlockingCalls::new(usize::from(shared.engine.partitions()));
    let wake_keys: Vec<String> = shared
        .engine
        .keys()
        .all()
        .map(|p| shared.engine.keys().queue(p, &shared.opts.queue, "wake"))
        .collect();
    loop {
        let first = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            permit = shared.slots.acquire() => permit,
        };
        let Ok(first) = first else { break };
        first.forget();
        let mut want = 1;
        // While jobs are in flight the worker is not idle: waiting a moment for more free
        // slots turns many one-job fetches into a few large ones (Redis cost is per call).
        let gather = (shared.opts.concurrency / 2).min(shared.opts.fetch_batch);
        let busy = shared.slots.available_permits() + 1 < shared.opts.concurrency;
        if busy && gather > 1 {
            let more = shared.slots.acquire_many((gather - 1) as u32);
            if let Ok(Ok(permits)) = tokio::time::timeout(shared.opts.fetch_linger, more).await {
                permits.forget();
                want = gather;
            }
        }
        while want < shared.opts.fetch_batch {
            match shared.slots.try_acquire() {
                Ok(p) => {
                    p.forget();
                    want += 1;
                }
                Err(_) => break,
            }
        }
        match shared.engine.fetch(&shared.fetch_request(want)).await {
            Ok(fetched) => {
                failures = 0;
                let got = fetched.jobs.len();
                shared.slots.add_permits(want - got);
                shared
                    .counters
                    .fetched
                    .fetch_add(got as u64, Ordering::Relaxed);
                for job in fetched.jobs {
                    if let Some(task) = shared.dispatch(job, decode)
                        && let Err(unsent) = tx.send(task).await
                    {
                        // The worker is gone: give the job straight back.
                        if let Some(ctx) = unsent.0.ctx().data().get::<JobContext>() {
                            shared.finish(ctx, Outcome::Release);
                        }
                    }
                }
                if got == 0 {
                    let idle = fetched.next_due_in.map_or(shared.opts.max_idle_wait, |d| {
                        d.min(shared.opts.max_idle_wait)
                    });
                    if idle >= Duration::from_millis(1) {
                        wait_for_wake(&shared, &mut wakes, &wake_keys, idle).await;
                    }
                }
            }
            Err(e) => {
                shared.slots.add_permits(want);
                failures += 1;
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                let pause = Duration::from_millis(50 * 2u64.pow(failures.min(5)));
                tracing::warn!(error = %e, queue = %shared.opts.queue, retry_in = ?pause, "fetch failed");
                tokio::select! {
                    _ = shared.stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Blocks on the queue's wake-up lists, one per partition (a push leaves a token in its
/// partition's), for at most `idle`.
async fn wait_for_wake(
    shared: &Shared,
    wakes: &mut BlockingCalls<Option<(String, String)>>,
    wake_keys: &[String],
    idle: Duration,
) {
    let waited = wakes.wait(
        &shared.engine,
        idle,
        |p, left| {
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(&wake_keys[p]).arg(left.as_secs_f64());
            cmd
        },
        Option::is_some,
    );
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        res = waited => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "wake-up wait failed");
                tokio::time::sleep(idle.min(Duration::from_millis(100))).await;
            }
        }
    }
}

/// Applies outcomes in batches: whatever arrived while the previous call was in flight goes
/// in the next one, so a busy worker sends few large calls and an idle one answers at once.
pub(crate) async fn acknowledger(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<OutcomeMsg>) {
    let mut batch: Vec<OutcomeMsg> = Vec::with_capacity(shared.opts.ack_batch);
    loop {
        let first = tokio::select! {
            biased;
            msg = rx.recv() => msg,
            _ = shared.closing.cancelled() => None,
        };
        match first {
            Some(msg) => batch.push(msg),
            None => {
                while let Ok(msg) = rx.try_recv() {
                    batch.push(msg);
                }
                if !batch.is_empty() {
                    flush(&shared, &mut batch).await;
                }
                return;
            }
        }
        while batch.len() < shared.opts.ack_batch {
            match rx.try_recv() {
                Ok(msg) => batch.push(msg),
                Err(_) => break,
            }
        }
        flush(&shared, &mut batch).await;
    }
}

async fn flush(shared: &Shared, batch: &mut Vec<OutcomeMsg>) {
    let started = Instant::now();
    let mut failures: u32 = 0;
    loop {
        match shared.engine.complete(batch).await {
            Ok(applied) => {
                count_outcomes(shared, batch, &applied);
                shared.forget_leases(batch);
                batch.clear();
                return;
            }
            Err(e) => {
                failures += 1;
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                // Outcomes are kept and retried; if Redis stays away past the shutdown deadline
                // they are dropped, and the leases expire and bring the jobs back: never lost.
                if shared.closing.is_cancelled() && started.elapsed() > shared.opts.shutdown_grace {
                    tracing::error!(error = %e, outcomes = batch.len(), "giving up on outcomes at shutdown; their leases will expire");
                    shared.forget_leases(batch);
                    batch.clear();
                    return;
                }
                let pause = Duration::from_millis(20 * 2u64.pow(failures.min(6)));
                tracing::warn!(error = %e, outcomes = batch.len(), retry_in = ?pause, "recording outcomes failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

fn count_outcomes(shared: &Shared, batch: &[OutcomeMsg], applied: &[Applied]) {
    let c = &shared.counters;
    for ((id, _, outcome), applied) in batch.iter().zip(applied) {
        let counter = match (applied, outcome) {
            (Applied::Stale | Applied::Missing, _) => {
                tracing::warn!(job.id = %id, "outcome refused: the lease was lost (the job was reaped and may run again)");
                &c.stale
            }
            (Applied::Died, _) | (Applied::Ok, Outcome::Fail { .. }) => &c.dead,
            (Applied::Ok, Outcome::Succeeded { .. }) => &c.succeeded,
            (Applied::Ok, Outcome::Retry { .. }) => &c.retried,
            (Applied::Ok, Outcome::Snooze { .. }) => &c.snoozed,
            (Applied::Ok, Outcome::Cancelled) => &c.cancelled,
            (Applied::Ok, Outcome::Release) => &c.released,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Renews leases, passes cancel requests to handlers, reaps for saturated workers, beats the
/// heartbeat, and now and then cleans up finished jobs and trims the streams. Also notices
/// when the worker begins to shut down.
pub(crate) async fn maintenance(shared: Arc<Shared>, worker: WorkerContext) {
    let renew_every = (shared.opts.lease / 3).max(Duration::from_millis(1));
    let beat_every = renew_every.min(HEARTBEAT_EVERY);
    let mut last_renew = Instant::now();
    let mut last_beat: Option<Instant> = None;
    let mut last_cleanup = Instant::now();
    let started_ms = crate::now_ms();
    let tick = Duration::from_millis(10).min(renew_every);
    let mut shutdown_seen = false;
    loop {
        tokio::select! {
            _ = shared.closing.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        if !shutdown_seen && (worker.is_shutting_down() || shared.stop.is_cancelled()) {
            shutdown_seen = true;
            shared.stop.cancel();
            let release = shared.release.clone();
            let grace = shared.opts.shutdown_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                release.cancel();
            });
        }
        if last_beat.is_none_or(|t| t.elapsed() >= beat_every) {
            last_beat = Some(Instant::now());
            if let Err(e) = heartbeat(&shared, started_ms).await {
                tracing::debug!(error = %e, "heartbeat failed");
            }
        }
        if last_cleanup.elapsed() >= shared.opts.cleanup_interval {
            last_cleanup = Instant::now();
            let engine = &shared.engine;
            let cleaned = engine.cleanup_finished(&shared.opts.queue).await;
            let trimmed = engine.trim_job_events().await;
            let trimmed_app = engine.trim_app_events().await;
            if let Err(e) = cleaned.and(trimmed).and(trimmed_app) {
                tracing::warn!(error = %e, "clean-up failed");
            }
        }
        if last_renew.elapsed() < renew_every {
            continue;
        }
        last_renew = Instant::now();
        if let Err(e) = renew(&shared).await {
            tracing::warn!(error = %e, "lease renewal failed");
        }
        if shared.slots.available_permits() == 0
            && let Err(e) = shared.engine.fetch(&shared.fetch_request(0)).await
        {
            tracing::warn!(error = %e, "reaping failed");
        }
    }
    let _ = shared.engine.remove_worker(&shared.worker_id).await;
}

async fn renew(shared: &Shared) -> Result<(), QueueError> {
    let held = shared.held_leases();
    if held.is_empty() {
        return Ok(());
    }
    let statuses = shared
        .engine
        .renew(
            &shared.opts.queue,
            shared.opts.lease,
            shared.opts.timeout_grace,
            &held,
        )
        .await?;
    for ((id, _), status) in held.iter().zip(statuses) {
        match status {
            RenewStatus::CancelRequested => shared.request_cancel(id, false),
            // The worker's own timer normally gets there first; this covers a clock that lags.
            RenewStatus::TimedOut => shared.request_cancel(id, true),
            RenewStatus::Lost => {
                tracing::warn!(job.id = %id, "lease lost while the handler runs; its outcome will be refused")
            }
            RenewStatus::Renewed => {}
        }
    }
    Ok(())
}

async fn heartbeat(shared: &Shared, started_ms: u64) -> Result<(), QueueError> {
    shared
        .engine
        .beat(&crate::WorkerInfo {
            id: shared.worker_id.clone(),
            host: super::host_name(),
            pid: std::process::id(),
            queues: vec![shared.opts.queue.clone()],
            concurrency: shared.opts.concurrency as u32,
            in_flight: shared.in_flight_count() as u32,
            started_at_ms: started_ms,
            last_beat_ms: crate::now_ms(),
        })
        .await
}
