//! Pushing jobs: one or many, idempotent, in bounded chunks.

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Duration};

use redis::Value;

use crate::{
    QueueError, Result,
    job::{NewJob, PushOutcome},
    keys::Partition,
};

use super::{Engine, protocol, value_i64, value_string};

impl Engine {
    /// Pushes one job. With an idempotency key that already holds, returns the existing
    /// job's id with `duplicate: true` and creates nothing.
    pub async fn push(&self, job: NewJob) -> Result<PushOutcome> {
        let mut out = self.push_many(vec![job]).await?;
        out.pop().ok_or(QueueError::Protocol {
            script: "push",
            detail: "empty reply".into(),
        })
    }

    /// Pushes many jobs, one round trip per chunk and partition. Results are in input order.
    /// Every job is validated before anything is sent, so a bad one refuses the whole call.
    /// A chunk's jobs of one partition go in atomically; the call as a whole does not: if a
    /// later chunk, or another partition's part of a chunk, fails (Redis down, stream full),
    /// what went in stays pushed. Give jobs idempotency keys to make retrying the call safe.
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
            let metrics = &self.inner.metrics;
            match self.push_chunk(chunk).await {
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

    /// One chunk: one script call per partition the chunk's jobs route to (all at once), each
    /// atomic. A partition whose stream is at its cap is trimmed and asked once more, alone.
    /// Answers in input order.
    async fn push_chunk(&self, jobs: &[NewJob]) -> Result<Vec<PushOutcome>> {
        let routed: Vec<(Partition, String, bool)> = jobs.iter().map(|j| self.route(j)).collect();
        let mut groups: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
        for (i, (p, _, _)) in routed.iter().enumerate() {
            groups.entry(*p).or_default().push(i);
        }
        let group_jobs = |at: &[usize]| -> Vec<(&NewJob, &str, bool)> {
            at.iter()
                .map(|&i| (&jobs[i], routed[i].1.as_str(), routed[i].2))
                .collect()
        };
        let calls = groups
            .iter()
            .map(|(p, at)| self.push_to(*p, group_jobs(at)));
        let replies = futures::future::join_all(calls).await;
        let mut out: Vec<Option<PushOutcome>> = vec![None; jobs.len()];
        let mut first_error = None;
        for ((p, at), reply) in groups.iter().zip(replies) {
            let reply = match reply {
                // A consumer may have caught up since the last trim: trim, then try once more.
                // Only this partition's jobs: the others are in, and the same ids go again.
                Err(QueueError::StreamFull { .. }) => {
                    match self.trim_stream(self.keys().job_events(*p), *p).await {
                        Ok(_) => self.push_to(*p, group_jobs(at)).await,
                        Err(e) => Err(e),
                    }
                }
                other => other,
            };
            match reply {
                Ok(outcomes) => {
                    for (&i, outcome) in at.iter().zip(outcomes) {
                        out[i] = Some(outcome);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            // Other partitions' calls may have landed, as earlier chunks do when a later one
            // fails: a retry of the call finds them as duplicates where they carry
            // idempotency keys.
            return Err(e);
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| protocol("push", "a job without a reply")))
            .collect()
    }

    /// The partition a job goes to, its id, and whether its submitter named it. The partition
    /// is its limit key's, else its idempotency key's, else its id's; an id the engine makes
    /// is drawn until it routes to that same partition, so a lookup by id alone finds the job
    /// where its id points.
    fn route(&self, job: &NewJob) -> (Partition, String, bool) {
        let keys = self.keys();
        if keys.partitions() == 1 {
            // Nothing to route: no key strings built on the push path of the default layout.
            return match &job.id {
                Some(id) => (0, id.clone(), true),
                None => (0, ulid::Ulid::new().to_string(), false),
            };
        }
        let by_key = job
            .limit_key
            .as_deref()
            .map(|k| format!("limit:{k}"))
            .or_else(|| {
                job.idempotency
                    .as_ref()
                    .map(|k| format!("idem:{}:{}", job.queue, k.key))
            });
        match (&job.id, by_key) {
            (Some(id), Some(key)) => (keys.partition_of(&key), id.clone(), true),
            (Some(id), None) => (keys.partition_of(id), id.clone(), true),
            (None, key) => {
                let mut id = ulid::Ulid::new().to_string();
                if let Some(key) = key {
                    let target = keys.partition_of(&key);
                    while keys.partition_of(&id) != target {
                        id = ulid::Ulid::new().to_string();
                    }
                }
                (keys.partition_of(&id), id, false)
            }
        }
    }

    async fn push_to(
        &self,
        p: Partition,
        jobs: Vec<(&NewJob, &str, bool)>,
    ) -> Result<Vec<PushOutcome>> {
        let cfg = &self.inner.config;
        let mut inv = self.call_in(&self.inner.scripts.push, p);
        inv.arg(cfg.stream_cap)
            .arg(cfg.idempotency_ttl.as_millis() as u64);
        for (job, id, explicit) in jobs {
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
            inv.arg(id)
                .arg(if explicit { "1" } else { "0" })
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
                .arg(job.extra_json())
                .arg(job.priority.code())
                .arg(
                    job.timeout
                        .map(|t| t.as_millis().to_string())
                        .unwrap_or_default(),
                )
                .arg(job.limit_key.as_deref().unwrap_or(""));
        }
        let reply: Vec<Value> = match self.write(&inv).await {
            Ok(reply) => reply,
            Err(e) if e.redis_code() == Some("STREAM_FULL") => {
                return Err(QueueError::StreamFull {
                    cap: cfg.stream_cap,
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(e) => return Err(e),
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
}
