//! The engine: every operation on a deployment's queues, each one atomic script or one read.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use redis::{
    AsyncCommands, Client, Value,
    aio::{ConnectionManager, ConnectionManagerConfig},
};

use crate::{
    EngineConfig, QueueError, Result,
    job::{
        Applied, JobExtra, JobRecord, LeasedJob, NewJob, Outcome, PushOutcome, now_ms, valid_name,
    },
    keys::Keys,
    scripts::Scripts,
};

/// A handle on one deployment's queues. Cheap to clone; all clones share one connection
/// that reconnects by itself after a Redis restart.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: ConnectionManager,
    keys: Keys,
    config: EngineConfig,
    scripts: Scripts,
    metrics: EngineMetrics,
}

/// Counters of one engine handle (shared by its clones), for the process's metrics endpoint.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Push calls refused because an event stream was at its cap (a consumer group is behind).
    pub stream_full_refusals: AtomicU64,
    /// Jobs pushed (not counting duplicates).
    pub jobs_pushed: AtomicU64,
    /// Pushes answered with an existing job (idempotency key or known id).
    pub duplicate_pushes: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.inner.keys.prefix)
            .finish()
    }
}

/// What a worker asks of [`Engine::fetch`].
#[derive(Debug, Clone)]
pub struct FetchRequest<'a> {
    pub queue: &'a str,
    pub worker_id: &'a str,
    pub max_jobs: usize,
    pub lease: Duration,
    /// Backoff for jobs whose lease expired (the queue's kind policy).
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

/// What a fetch returned: leased jobs, and how long an idle worker may wait before
/// something (a scheduled job, a lease) falls due.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub jobs: Vec<LeasedJob>,
    pub next_due_in: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewStatus {
    Renewed,
    /// Renewed; an operator asked for the job to be cancelled.
    CancelRequested,
    /// The lease is gone (expired and reaped): the handler's outcome will be refused.
    Lost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelled,
    /// Running: the handler sees the request and ends the job as cancelled.
    Requested,
    /// Finished or dead already: nothing to cancel.
    NotCancellable(String),
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadOpOutcome {
    Done,
    NotDead(String),
    Missing,
}

/// Filter over a queue's dead jobs, by time of death (Unix ms) and fingerprint.
#[derive(Debug, Clone, Default)]
pub struct DeadFilter {
    pub queue: String,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub fingerprint: Option<String>,
}

/// Dead jobs that failed the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadGroup {
    pub queue: String,
    pub fingerprint: String,
    pub count: u64,
    pub sample_error: String,
    pub last_died_at_ms: u64,
}

/// Counts of one queue, each read in O(1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub dead: u64,
    /// Finished jobs still held for the retention window.
    pub finished_held: u64,
    pub pushed_total: u64,
    pub succeeded_total: u64,
    /// Failed attempts that died (permanent errors and exhausted retries).
    pub failed_total: u64,
    pub retried_total: u64,
    pub cancelled_total: u64,
    pub requeued_total: u64,
}

impl Engine {
    /// Connects and loads the scripts. Fails if Redis does not answer.
    pub async fn connect(redis_url: &str, config: EngineConfig) -> Result<Self> {
        if !valid_name(&config.prefix) {
            return Err(QueueError::InvalidJob(
                "prefix must be 1-64 characters of [A-Za-z0-9_.-]".into(),
            ));
        }
        let client = Client::open(redis_url)?;
        let conn = client
            .get_connection_manager_with_config(Self::manager_config(config.response_timeout))
            .await?;
        let engine = Self {
            inner: Arc::new(Inner {
                client,
                conn,
                keys: Keys::new(&config.prefix),
                config,
                scripts: Scripts::new(),
                metrics: EngineMetrics::default(),
            }),
        };
        engine.load_scripts().await?;
        Ok(engine)
    }

    fn manager_config(response_timeout: Duration) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
    }

    /// A connection of its own, for blocking waits that must not stall the shared one.
    pub(crate) async fn dedicated_connection(
        &self,
        timeout: Duration,
    ) -> Result<ConnectionManager> {
        Ok(self
            .inner
            .client
            .get_connection_manager_with_config(Self::manager_config(timeout))
            .await?)
    }

    async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn();
        for script in self.inner.scripts.all() {
            script.load_async(&mut conn).await?;
        }
        Ok(())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &EngineMetrics {
        &self.inner.metrics
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    pub(crate) fn scripts(&self) -> &Scripts {
        &self.inner.scripts
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Pushes one job. With an idempotency key that already holds, returns the existing
    /// job's id with `duplicate: true` and creates nothing.
    pub async fn push(&self, job: NewJob) -> Result<PushOutcome> {
        let mut out = self.push_many(vec![job]).await?;
        out.pop().ok_or(QueueError::Protocol {
            script: "push",
            detail: "empty reply".into(),
        })
    }

    /// Pushes many jobs, one round trip per chunk. Results are in input order. Every job is
    /// validated before anything is sent, so a bad one refuses the whole call. Each chunk is
    /// atomic, the call as a whole is not: if a later chunk fails (Redis down, stream full), the
    /// earlier chunks stay pushed. Give jobs idempotency keys to make retrying the call safe.
    pub async fn push_many(&self, mut jobs: Vec<NewJob>) -> Result<Vec<PushOutcome>> {
        for job in &jobs {
            job.validate()?;
        }
        if let Some(context) = crate::propagation::current() {
            for job in jobs.iter_mut().filter(|j| j.trace_context.is_none()) {
                job.trace_context = Some(context.clone());
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(self.inner.config.push_chunk.max(1)) {
            let pushed = match self.push_chunk(chunk).await {
                Err(QueueError::StreamFull { .. }) => {
                    // A consumer may have caught up since the last trim: trim, then try once more.
                    self.trim_job_events().await?;
                    self.push_chunk(chunk).await
                }
                other => other,
            };
            let metrics = &self.inner.metrics;
            match pushed {
                Ok(outcomes) => {
                    let duplicates = outcomes.iter().filter(|o| o.duplicate).count() as u64;
                    metrics
                        .duplicate_pushes
                        .fetch_add(duplicates, Ordering::Relaxed);
                    metrics
                        .jobs_pushed
                        .fetch_add(outcomes.len() as u64 - duplicates, Ordering::Relaxed);
                    out.extend(outcomes);
                }
                Err(e) => {
                    if matches!(e, QueueError::StreamFull { .. }) {
                        metrics.stream_full_refusals.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "push refused: job-event stream at its cap");
                    }
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    async fn push_chunk(&self, jobs: &[NewJob]) -> Result<Vec<PushOutcome>> {
        let cfg = &self.inner.config;
        let mut inv = self.inner.scripts.push.prepare_invoke();
        inv.key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(cfg.stream_cap)
            .arg(cfg.idempotency_ttl.as_millis() as u64);
        for job in jobs {
            let (ikey, imode, ittl) = match &job.idempotency {
                None => ("", "ttl", 0u64),
                Some(k) => match k.scope {
                    crate::KeyScope::WhileWaiting => (k.key.as_str(), "wait", 0),
                    crate::KeyScope::For(ttl) => (
                        k.key.as_str(),
                        "ttl",
                        ttl.map(|t| t.as_millis() as u64).unwrap_or(0),
                    ),
                },
            };
            let (id, explicit) = match &job.id {
                Some(id) => (id.clone(), "1"),
                None => (ulid::Ulid::new().to_string(), "0"),
            };
            inv.arg(id)
                .arg(explicit)
                .arg(&job.queue)
                .arg(&job.kind)
                .arg(&job.payload)
                .arg(job.payload_version)
                .arg(job.max_attempts)
                .arg(job.run_at_ms.unwrap_or(0))
                .arg(ikey)
                .arg(imode)
                .arg(ittl)
                .arg(job.workflow_id.as_deref().unwrap_or(""))
                .arg(job.extra_json());
        }
        let reply: Vec<Value> = match inv.invoke_async(&mut self.conn()).await {
            Ok(reply) => reply,
            Err(e) if e.code() == Some("STREAM_FULL") => {
                return Err(QueueError::StreamFull {
                    cap: cfg.stream_cap,
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(e) => return Err(e.into()),
        };
        reply
            .chunks(2)
            .map(|pair| match pair {
                [id, dup] => Ok(PushOutcome {
                    id: value_string(id).ok_or_else(|| protocol("push", "id"))?,
                    duplicate: value_i64(dup) == Some(1),
                }),
                _ => Err(protocol("push", "odd reply")),
            })
            .collect()
    }

    /// Reaps expired leases and promotes due jobs (bounded chunks), then leases up to
    /// `max_jobs` ready jobs to the worker.
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched> {
        let cfg = &self.inner.config;
        let reply: Vec<Value> = self
            .inner
            .scripts
            .fetch
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(req.queue)
            .arg(req.max_jobs)
            .arg(req.lease.as_millis() as u64)
            .arg(req.worker_id)
            .arg(cfg.promote_chunk)
            .arg(cfg.reap_chunk)
            .arg(req.backoff_base.as_millis() as u64)
            .arg(req.backoff_cap.as_millis() as u64)
            .arg(rand::random::<u32>())
            .invoke_async(&mut self.conn())
            .await?;
        let (hint, rest) = reply
            .split_first()
            .ok_or_else(|| protocol("fetch", "empty reply"))?;
        let next_due_in = value_i64(hint)
            .filter(|ms| *ms >= 0)
            .map(|ms| Duration::from_millis(ms as u64));
        let jobs = rest
            .chunks(10)
            .map(|f| {
                let s = |i: usize| value_string(&f[i]).unwrap_or_default();
                let n = |i: usize| value_i64(&f[i]).unwrap_or(0);
                if f.len() != 10 {
                    return Err(protocol("fetch", "short job record"));
                }
                let extra = JobExtra::decode(Some(&s(8)));
                Ok(LeasedJob {
                    id: s(0),
                    token: s(1),
                    attempt: n(2) as u32,
                    max_attempts: n(3) as u32,
                    kind: s(4),
                    payload: s(5),
                    payload_version: s(6).parse().unwrap_or(1),
                    workflow_id: Some(s(7)).filter(|w| !w.is_empty()),
                    correlation_id: extra.cid,
                    trace_context: extra.tc,
                    created_at_ms: s(9).parse().unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fetched { jobs, next_due_in })
    }

    /// Applies many handler outcomes in one call. An outcome whose lease token no longer
    /// matches is refused ([`Applied::Stale`]), never applied.
    pub async fn complete(&self, outcomes: &[(String, String, Outcome)]) -> Result<Vec<Applied>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.inner.scripts.complete.prepare_invoke();
        inv.key(self.keys().job_events()).arg(&self.keys().prefix);
        for (id, token, outcome) in outcomes {
            let (name, text, delay) = match outcome {
                Outcome::Succeeded { result } => ("ok", result.clone().unwrap_or_default(), 0),
                Outcome::Retry { error, delay } => {
                    ("retry", error.clone(), delay.as_millis() as u64)
                }
                Outcome::Fail { error } => ("fail", error.clone(), 0),
                Outcome::Snooze { delay, reason } => {
                    ("snooze", reason.clone(), delay.as_millis() as u64)
                }
                Outcome::Cancelled => ("cancel", String::new(), 0),
                Outcome::Release => ("release", String::new(), 0),
            };
            inv.arg(id).arg(token).arg(name).arg(text).arg(delay);
        }
        let reply: Vec<String> = inv.invoke_async(&mut self.conn()).await?;
        reply
            .iter()
            .map(|s| match s.as_str() {
                "ok" => Ok(Applied::Ok),
                "dead" => Ok(Applied::Died),
                "stale" => Ok(Applied::Stale),
                "missing" => Ok(Applied::Missing),
                other => Err(protocol("complete", other)),
            })
            .collect()
    }

    /// Extends the leases a worker holds on `queue`.
    pub async fn renew(
        &self,
        queue: &str,
        lease: Duration,
        held: &[(String, String)],
    ) -> Result<Vec<RenewStatus>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.inner.scripts.renew.prepare_invoke();
        inv.key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(queue)
            .arg(lease.as_millis() as u64);
        for (id, token) in held {
            inv.arg(id).arg(token);
        }
        let reply: Vec<i64> = inv.invoke_async(&mut self.conn()).await?;
        Ok(reply
            .into_iter()
            .map(|r| match r {
                1 => RenewStatus::CancelRequested,
                0 => RenewStatus::Renewed,
                _ => RenewStatus::Lost,
            })
            .collect())
    }

    /// Cancels a waiting job at once, or asks a running one to stop.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let reply: String = self
            .inner
            .scripts
            .cancel
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(id)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match reply.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "requested" => CancelOutcome::Requested,
            "missing" => CancelOutcome::Missing,
            state => CancelOutcome::NotCancellable(state.to_owned()),
        })
    }

    /// Requeues dead jobs by id; each keeps its id and history and starts a new round of attempts.
    pub async fn requeue_dead(&self, ids: &[String]) -> Result<Vec<DeadOpOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Vec<String> = self
            .inner
            .scripts
            .requeue
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg("ids")
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(reply.into_iter().map(dead_op_outcome).collect())
    }

    /// Requeues every dead job matching the filter, in bounded chunks; returns how many.
    pub async fn requeue_dead_matching(&self, filter: &DeadFilter, chunk: usize) -> Result<u64> {
        let until = filter.until_ms.unwrap_or_else(crate::now_ms);
        let mut total = 0;
        loop {
            let n: u64 = self
                .inner
                .scripts
                .requeue
                .key(self.keys().job_events())
                .arg(&self.keys().prefix)
                .arg("filter")
                .arg(&filter.queue)
                .arg(filter.since_ms.unwrap_or(0))
                .arg(until)
                .arg(filter.fingerprint.as_deref().unwrap_or(""))
                .arg(chunk.max(1))
                .invoke_async(&mut self.conn())
                .await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Deletes a dead job for good (the event stream records that it happened).
    pub async fn discard_dead(&self, id: &str) -> Result<DeadOpOutcome> {
        let mut outcomes = self.discard_dead_many(&[id.to_owned()]).await?;
        Ok(outcomes.pop().unwrap_or(DeadOpOutcome::Missing))
    }

    /// Deletes dead jobs for good in one round trip; answers per id, in input order.
    pub async fn discard_dead_many(&self, ids: &[String]) -> Result<Vec<DeadOpOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reply: Vec<String> = self
            .inner
            .scripts
            .discard
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(ids)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(reply.into_iter().map(dead_op_outcome).collect())
    }

    /// The job as Redis holds it, or `None` once it is gone (finished past retention, or never).
    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(self.jobs(&[id.to_owned()]).await?.pop().flatten())
    }

    /// Many jobs in one round trip, in input order.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys().job(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
        Ok(ids
            .iter()
            .zip(hashes)
            .map(|(id, h)| JobRecord::from_hash(id, h))
            .collect())
    }

    /// Dead jobs of a queue, newest first, paged by offset.
    pub async fn dead_jobs(
        &self,
        filter: &DeadFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let set = match &filter.fingerprint {
            Some(fp) => self.keys().queue(&filter.queue, &format!("deadfp:{fp}")),
            None => self.keys().queue(&filter.queue, "dead"),
        };
        let max = filter
            .until_ms
            .map(|t| t.to_string())
            .unwrap_or_else(|| "+inf".into());
        let min = filter
            .since_ms
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-inf".into());
        let ids: Vec<String> = self
            .conn()
            .zrevrangebyscore_limit(set, max, min, offset as isize, limit as isize)
            .await?;
        Ok(self.jobs(&ids).await?.into_iter().flatten().collect())
    }

    /// Dead jobs of a queue grouped by error fingerprint, largest group first.
    pub async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroup>> {
        let mut conn = self.conn();
        let (counts, samples, lasts): (
            HashMap<String, u64>,
            HashMap<String, String>,
            HashMap<String, u64>,
        ) = redis::pipe()
            .hgetall(self.keys().queue(queue, "deadfp"))
            .hgetall(self.keys().queue(queue, "deadfp:sample"))
            .hgetall(self.keys().queue(queue, "deadfp:last"))
            .query_async(&mut conn)
            .await?;
        let mut groups: Vec<DeadGroup> = counts
            .into_iter()
            .filter(|(_, count)| *count > 0)
            .map(|(fp, count)| DeadGroup {
                queue: queue.to_owned(),
                sample_error: samples.get(&fp).cloned().unwrap_or_default(),
                last_died_at_ms: lasts.get(&fp).copied().unwrap_or(0),
                fingerprint: fp,
                count,
            })
            .collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        Ok(groups)
    }

    /// The queues this deployment has seen a push for.
    pub async fn queues(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.conn().smembers(self.keys().queues()).await?;
        names.sort();
        Ok(names)
    }

    /// Counts of a queue, in one round trip of O(1) reads.
    /// How long the next job to run on `queue` has waited since it last became runnable
    /// (pushed, promoted from the schedule, released or requeued); `None` when none is ready.
    /// The first sign that a queue lacks workers: depth can be high and healthy, age cannot.
    pub async fn oldest_ready_age(&self, queue: &str) -> Result<Option<Duration>> {
        // Cancelled jobs leave tombstones at the head until a fetch pops them: look past a few.
        const LOOK_AT: isize = 16;
        let mut conn = self.conn();
        let head: Vec<String> = conn
            .lrange(self.keys().queue(queue, "ready"), 0, LOOK_AT - 1)
            .await?;
        if head.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for id in &head {
            pipe.cmd("HMGET")
                .arg(self.keys().job(id))
                .arg(&["st", "ua", "ca"]);
        }
        let rows: Vec<(Option<String>, Option<u64>, Option<u64>)> =
            pipe.query_async(&mut conn).await?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .find(|(state, _, _)| state.as_deref() == Some("QUEUED"))
            .map(|(_, updated, created)| {
                let since = updated.or(created).unwrap_or(now);
                Duration::from_millis(now.saturating_sub(since))
            }))
    }

    pub async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let k = |part: &str| self.keys().queue(queue, part);
        let (ready, scheduled, running, dead, finished, counters): (
            u64,
            u64,
            u64,
            u64,
            u64,
            HashMap<String, i64>,
        ) = redis::pipe()
            .llen(k("ready"))
            .zcard(k("sched"))
            .zcard(k("lease"))
            .zcard(k("dead"))
            .llen(k("done"))
            .hgetall(k("stats"))
            .query_async(&mut self.conn())
            .await?;
        let c = |name: &str| counters.get(name).copied().unwrap_or(0).max(0) as u64;
        Ok(QueueStats {
            queue: queue.to_owned(),
            ready: ready.saturating_sub(c("tomb")),
            scheduled,
            running,
            dead,
            finished_held: finished,
            pushed_total: c("pushed"),
            succeeded_total: c("succeeded"),
            failed_total: c("failed"),
            retried_total: c("retried"),
            cancelled_total: c("cancelled"),
            requeued_total: c("requeued"),
        })
    }

    /// Forgets finished jobs past retention (one bounded chunk); returns how many.
    pub async fn cleanup_finished(&self, queue: &str) -> Result<u64> {
        let cfg = &self.inner.config;
        Ok(self
            .inner
            .scripts
            .cleanup
            .key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(queue)
            .arg(cfg.completed_retention.as_millis() as u64)
            .arg(cfg.completed_max)
            .arg(cfg.cleanup_chunk)
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Trims the job-event stream behind its slowest consumer group; returns entries removed.
    pub async fn trim_job_events(&self) -> Result<u64> {
        self.trim_stream(self.keys().job_events()).await
    }

    /// Trims the application-event stream the same way.
    pub async fn trim_app_events(&self) -> Result<u64> {
        self.trim_stream(self.keys().app_events()).await
    }

    async fn trim_stream(&self, stream: String) -> Result<u64> {
        let cfg = &self.inner.config;
        Ok(self
            .inner
            .scripts
            .trim
            .key(stream)
            .arg(&self.keys().prefix)
            .arg(cfg.resume_window.as_millis() as u64)
            .arg(cfg.stream_cap)
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Appends an application event (field, value pairs) under the stream cap; returns its id.
    pub async fn publish_app_event(&self, fields: &[(&str, &str)]) -> Result<String> {
        let mut inv = self.inner.scripts.publish.prepare_invoke();
        inv.key(self.keys().app_events())
            .arg(&self.keys().prefix)
            .arg(self.inner.config.stream_cap);
        for (name, value) in fields {
            inv.arg(*name).arg(*value);
        }
        match inv.invoke_async(&mut self.conn()).await {
            Ok(id) => Ok(id),
            Err(e) if e.code() == Some("STREAM_FULL") => Err(QueueError::StreamFull {
                cap: self.inner.config.stream_cap,
                retry_after: Duration::from_secs(1),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every key of this deployment's prefix. For tests and tear-down only.
    pub async fn destroy_all_data(&self) -> Result<u64> {
        let mut conn = self.conn();
        let pattern = format!(
            "{}:*",
            self.keys().prefix.replace('{', "\\{").replace('}', "\\}")
        );
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                removed += keys.len() as u64;
                let _: () = conn.unlink(keys).await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

fn dead_op_outcome(reply: String) -> DeadOpOutcome {
    match reply.as_str() {
        "requeued" | "discarded" => DeadOpOutcome::Done,
        "missing" => DeadOpOutcome::Missing,
        state => DeadOpOutcome::NotDead(state.to_owned()),
    }
}

fn protocol(script: &'static str, detail: &str) -> QueueError {
    QueueError::Protocol {
        script,
        detail: detail.to_owned(),
    }
}

pub(crate) fn value_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

pub(crate) fn value_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}
