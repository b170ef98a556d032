//! Operators' controls: cancel, and the dead set (list, group, requeue, discard).

use std::collections::{BTreeMap, HashMap};

use redis::AsyncCommands;

use crate::{Result, job::JobRecord, keys::Partition};

use super::Engine;

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
        let Some(p) = self.locate(&[id.to_owned()]).await?.pop().flatten() else {
            return Ok(CancelOutcome::Missing);
        };
        let reply: String = self
            .write(self.call_in(&self.inner.scripts.cancel, p).arg(id))
            .await?;
        Ok(match reply.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "requested" => CancelOutcome::Requested,
            "missing" => CancelOutcome::Missing,
            state => CancelOutcome::NotCancellable(state.to_owned()),
        })
    }

    /// Runs an operation on jobs by id: one script call per partition holding some of them
    /// (`script` gets `extra` and then the ids). Answers per id, in input order; `Missing` for
    /// an id no partition holds.
    async fn dead_op_by_id(
        &self,
        script: &redis::Script,
        extra: &[&str],
        ids: &[String],
    ) -> Result<Vec<DeadOpOutcome>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
        for (i, p) in self.locate(ids).await?.into_iter().enumerate() {
            if let Some(p) = p {
                groups.entry(p).or_default().push(i);
            }
        }
        let calls = groups.iter().map(|(p, at)| {
            let mut inv = self.call_in(script, *p);
            for arg in extra {
                inv.arg(*arg);
            }
            for &i in at {
                inv.arg(&ids[i]);
            }
            async move { self.write::<Vec<String>>(&inv).await }
        });
        let mut out = vec![DeadOpOutcome::Missing; ids.len()];
        for ((_, at), reply) in groups.iter().zip(futures::future::join_all(calls).await) {
            for (&i, one) in at.iter().zip(reply?) {
                out[i] = dead_op_outcome(one);
            }
        }
        Ok(out)
    }

    /// Requeues dead jobs by id; each keeps its id and history and starts a new round of attempts.
    pub async fn requeue_dead(&self, ids: &[String]) -> Result<Vec<DeadOpOutcome>> {
        self.dead_op_by_id(&self.inner.scripts.requeue, &["ids"], ids)
            .await
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
    /// once for a whole bulk requeue, so jobs requeued and dead again are not taken twice),
    /// from each partition; returns how many. For callers that report progress between chunks.
    pub async fn requeue_dead_chunk(
        &self,
        filter: &DeadFilter,
        until_ms: u64,
        chunk: usize,
    ) -> Result<u64> {
        let counts = self
            .each_partition(|p| async move {
                self.write::<u64>(
                    self.call_in(&self.inner.scripts.requeue, p)
                        .arg("filter")
                        .arg(&filter.queue)
                        .arg(filter.since_ms.unwrap_or(0))
                        .arg(until_ms)
                        .arg(filter.fingerprint.as_deref().unwrap_or(""))
                        .arg(chunk.max(1)),
                )
                .await
            })
            .await?;
        Ok(counts.into_iter().sum())
    }

    /// Deletes a dead job for good (the event stream records that it happened).
    pub async fn discard_dead(&self, id: &str) -> Result<DeadOpOutcome> {
        let mut outcomes = self.discard_dead_many(&[id.to_owned()]).await?;
        Ok(outcomes.pop().unwrap_or(DeadOpOutcome::Missing))
    }

    /// Deletes dead jobs for good, one round trip per partition; answers per id, in input order.
    pub async fn discard_dead_many(&self, ids: &[String]) -> Result<Vec<DeadOpOutcome>> {
        self.dead_op_by_id(&self.inner.scripts.discard, &[], ids)
            .await
    }

    /// Dead jobs of a queue, newest first, paged by offset (over every partition).
    pub async fn dead_jobs(
        &self,
        filter: &DeadFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<JobRecord>> {
        let max = filter
            .until_ms
            .map(|t| t.to_string())
            .unwrap_or_else(|| "+inf".into());
        let min = filter
            .since_ms
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-inf".into());
        // Each partition's newest `offset + limit`; the page is cut from their merge.
        let take = offset.saturating_add(limit);
        let per_partition = self
            .each_partition(|p| {
                let set = match &filter.fingerprint {
                    Some(fp) => self.keys().queue(p, &filter.queue, &format!("deadfp:{fp}")),
                    None => self.keys().queue(p, &filter.queue, "dead"),
                };
                let (max, min, mut conn) = (max.clone(), min.clone(), self.conn());
                async move {
                    let scored: Vec<(String, f64)> = conn
                        .zrevrangebyscore_limit_withscores(set, max, min, 0, take as isize)
                        .await?;
                    Ok(scored)
                }
            })
            .await?;
        let mut merged: Vec<(String, f64)> = per_partition.into_iter().flatten().collect();
        merged.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let ids: Vec<String> = merged
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(id, _)| id)
            .collect();
        Ok(self.jobs(&ids).await?.into_iter().flatten().collect())
    }

    /// Dead jobs of a queue grouped by error fingerprint (over every partition), largest group
    /// first.
    pub async fn dead_groups(&self, queue: &str) -> Result<Vec<DeadGroup>> {
        let per_partition = self
            .each_partition(|p| {
                let mut conn = self.conn();
                let keys = self.keys();
                async move {
                    let reply: (
                        HashMap<String, u64>,
                        HashMap<String, String>,
                        HashMap<String, u64>,
                    ) = redis::pipe()
                        .hgetall(keys.queue(p, queue, "deadfp"))
                        .hgetall(keys.queue(p, queue, "deadfp:sample"))
                        .hgetall(keys.queue(p, queue, "deadfp:last"))
                        .query_async(&mut conn)
                        .await?;
                    Ok(reply)
                }
            })
            .await?;
        let mut merged: HashMap<String, DeadGroup> = HashMap::new();
        for (counts, samples, lasts) in per_partition {
            for (fp, count) in counts.into_iter().filter(|(_, count)| *count > 0) {
                let last = lasts.get(&fp).copied().unwrap_or(0);
                let group = merged.entry(fp.clone()).or_insert_with(|| DeadGroup {
                    queue: queue.to_owned(),
                    fingerprint: fp.clone(),
                    count: 0,
                    sample_error: String::new(),
                    last_died_at_ms: 0,
                });
                group.count += count;
                if last >= group.last_died_at_ms {
                    group.last_died_at_ms = last;
                    group.sample_error = samples.get(&fp).cloned().unwrap_or_default();
                }
            }
        }
        let mut groups: Vec<DeadGroup> = merged.into_values().collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        Ok(groups)
    }
}
