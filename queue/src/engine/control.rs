//! Operators' controls: cancel, and the dead set (list, group, requeue, discard).

use std::collections::HashMap;

use redis::AsyncCommands;

use crate::{Result, job::JobRecord};

use super::{Call, Engine};

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

fn dead_op_outcome(reply: String) -> DeadOpOutcome {
    match reply.as_str() {
        "requeued" | "discarded" => DeadOpOutcome::Done,
        "missing" => DeadOpOutcome::Missing,
        state => DeadOpOutcome::NotDead(state.to_owned()),
    }
}

impl Engine {
    /// Cancels a waiting job at once, or asks a running one to stop.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let reply: String = self
            .write(
                Call::new(&self.inner.scripts.cancel)
                    .key(self.keys().job_events())
                    .arg(&self.keys().prefix)
                    .arg(id),
            )
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
            .write(
                Call::new(&self.inner.scripts.requeue)
                    .key(self.keys().job_events())
                    .arg(&self.keys().prefix)
                    .arg("ids")
                    .arg(ids),
            )
            .await?;
        Ok(reply.into_iter().map(dead_op_outcome).collect())
    }

    /// Requeues every dead job matching the filter, in bounded chunks; returns how many.
    pub async fn requeue_dead_matching(&self, filter: &DeadFilter, chunk: usize) -> Result<u64> {
        let until = filter.until_ms.unwrap_or_else(crate::now_ms);
        let mut total = 0;
        loop {
            let n = self.requeue_dead_chunk(filter, until, chunk).await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Requeues up to `chunk` dead jobs matching the filter that died before `until_ms` (fix it
    /// once for a whole bulk requeue, so jobs requeued and dead again are not taken twice);
    /// returns how many. For callers that report progress between chunks.
    pub async fn requeue_dead_chunk(
        &self,
        filter: &DeadFilter,
        until_ms: u64,
        chunk: usize,
    ) -> Result<u64> {
        self.write(
            Call::new(&self.inner.scripts.requeue)
                .key(self.keys().job_events())
                .arg(&self.keys().prefix)
                .arg("filter")
                .arg(&filter.queue)
                .arg(filter.since_ms.unwrap_or(0))
                .arg(until_ms)
                .arg(filter.fingerprint.as_deref().unwrap_or(""))
                .arg(chunk.max(1)),
        )
        .await
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
            .write(
                Call::new(&self.inner.scripts.discard)
                    .key(self.keys().job_events())
                    .arg(&self.keys().prefix)
                    .arg(ids),
            )
            .await?;
        Ok(reply.into_iter().map(dead_op_outcome).collect())
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
}
