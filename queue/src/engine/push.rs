//! Pushing jobs: one or many, idempotent, in bounded chunks.

use std::{sync::atomic::Ordering, time::Duration};

use redis::Value;

use crate::{
    QueueError, Result,
    job::{NewJob, PushOutcome},
};

use super::{Call, Engine, protocol, value_i64, value_string};

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
        let mut inv = Call::new(&self.inner.scripts.push);
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
