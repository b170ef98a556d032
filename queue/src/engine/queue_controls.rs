//! Queue-wide controls: pause, resume and drain. A paused queue keeps taking pushes, and its
//! leases, retries and schedules keep moving; only leasing stops, in the fetch script itself,
//! so no worker takes a job from the moment the pause is written.

use std::time::Duration;

use crate::{QueueError, RateLimit, Result};

use super::Engine;
use crate::keys::Partition;

/// Partition `p`'s share of a queue-wide limit of `total` (at least `n`) over `n` partitions:
/// the shares add up to `total`.
fn share(total: u32, p: Partition, n: u16) -> u64 {
    let (total, p, n) = (u64::from(total), u64::from(p), u64::from(n));
    (total / n + u64::from(p < total % n)).max(1)
}

impl Engine {
    /// Stops workers leasing from `queue`; jobs already running finish. Answers whether the
    /// queue was running before (false: it was paused already).
    pub async fn pause(&self, queue: &str) -> Result<bool> {
        let now = crate::now_ms();
        let set = self
            .each_partition(|p| {
                let mut conn = self.conn();
                let key = self.keys().queue(p, queue, "paused");
                async move {
                    let set: Option<String> = redis::cmd("SET")
                        .arg(key)
                        .arg(now)
                        .arg("NX")
                        .query_async(&mut conn)
                        .await?;
                    Ok(set.is_some())
                }
            })
            .await?;
        Ok(set.into_iter().any(|newly| newly))
    }

    /// Lets workers lease from `queue` again and wakes an idle one at once. Answers whether
    /// the queue was paused.
    pub async fn resume(&self, queue: &str) -> Result<bool> {
        let removed = self
            .each_partition(|p| {
                let mut conn = self.conn();
                let wake = self.keys().queue(p, queue, "wake");
                let paused = self.keys().queue(p, queue, "paused");
                async move {
                    let (removed, _, _): (u64, u64, ()) = redis::pipe()
                        .atomic()
                        .del(paused)
                        .rpush(&wake, "1")
                        .ltrim(&wake, 0, 0)
                        .query_async(&mut conn)
                        .await?;
                    Ok(removed > 0)
                }
            })
            .await?;
        Ok(removed.into_iter().any(|was| was))
    }

    /// Cancels every job waiting on `queue` (ready, scheduled, retrying), `chunk` per script
    /// call so Redis is never held long; running jobs finish. Each cancelled job gets its
    /// `cancelled` event, so the ledger and subscribers see it. Answers how many were
    /// cancelled. Jobs pushed while it runs may be cancelled too (pause first for a clean
    /// cut), but it ends: it takes at most as many entries as were waiting when it began.
    pub async fn drain(&self, queue: &str, chunk: usize) -> Result<u64> {
        let cancelled = self
            .each_partition(|p| self.drain_in(p, queue, chunk))
            .await?;
        Ok(cancelled.into_iter().sum())
    }

    async fn drain_in(&self, p: Partition, queue: &str, chunk: usize) -> Result<u64> {
        let chunk = chunk.max(1) as u64;
        let (mut total, mut taken_total) = (0, 0);
        let mut limit: Option<u64> = None;
        loop {
            let (cancelled, taken, left): (u64, u64, u64) = self
                .write(
                    self.call_in(&self.inner.scripts.drain, p)
                        .arg(queue)
                        .arg(chunk),
                )
                .await?;
            total += cancelled;
            taken_total += taken;
            let limit = *limit.get_or_insert(taken + left);
            if left == 0 || taken == 0 || taken_total >= limit {
                return Ok(total);
            }
        }
    }
}

/// A queue's limits, shared by every worker because fetch enforces them in Redis. Per-key
/// limits count jobs by their limit key ([`crate::NewJob::with_limit_key`]); jobs without one
/// are bound only by the queue-wide limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueLimits {
    /// At most this many jobs of the queue running at once, across all workers.
    pub concurrency: Option<u32>,
    /// At most this many jobs of one limit key running at once.
    pub per_key_concurrency: Option<u32>,
    /// At most this many jobs of the queue started per window.
    pub rate: Option<RateLimit>,
    /// At most this many jobs of one limit key started per window.
    pub per_key_rate: Option<RateLimit>,
}

/// The longest rate window accepted.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl QueueLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks each limit, naming the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &str, why: &str| Err(QueueError::InvalidArgument(format!("{field}: {why}")));
        if self.concurrency == Some(0) {
            return bad(
                "concurrency",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        if self.per_key_concurrency == Some(0) {
            return bad(
                "perKeyConcurrency",
                "must be at least 1 (leave it unset for no limit)",
            );
        }
        for (field, rate) in [("rate", self.rate), ("perKeyRate", self.per_key_rate)] {
            if let Some(rate) = rate {
                if rate.limit == 0 {
                    return bad(field, "limit must be at least 1");
                }
                if rate.window < Duration::from_millis(1) || rate.window > MAX_RATE_WINDOW {
                    return bad(field, "window must be from 1 ms to 24 h");
                }
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Replaces `queue`'s limits (an empty [`QueueLimits`] removes them). They apply from
    /// the next fetch of any worker.
    pub async fn set_queue_limits(&self, queue: &str, limits: &QueueLimits) -> Result<()> {
        limits.validate()?;
        if !crate::job::valid_name(queue) {
            return Err(QueueError::InvalidArgument(format!(
                "queue name {queue:?} is not valid"
            )));
        }
        let n = self.partitions();
        // Each partition enforces its share, and a share is at least 1: below the partition
        // count a queue-wide limit would silently allow more than it says.
        if limits.concurrency.is_some_and(|c| c < u32::from(n)) {
            return Err(QueueError::InvalidArgument(format!(
                "concurrency: this deployment has {n} partitions, each running at least one job of the queue; set at least {n}, or limit per key (perKeyConcurrency)"
            )));
        }
        if limits.rate.is_some_and(|r| r.limit < u32::from(n)) {
            return Err(QueueError::InvalidArgument(format!(
                "rate: this deployment has {n} partitions, each starting at least one job of the queue per window; allow at least {n} per window, or limit per key (perKeyRate)"
            )));
        }
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let window = |r: Option<RateLimit>| r.map(|r| r.window.as_millis() as u64);
        // Queue-wide limits are shared out among the partitions (at least 1 each); per-key
        // limits hold whole, as a key's jobs all live in one partition.
        self.each_partition(|p| {
            let mut call = self.call_in(&self.inner.scripts.limits, p);
            call.arg(queue)
                .arg(opt(limits.concurrency.map(|c| share(c, p, n))))
                .arg(opt(limits.per_key_concurrency.map(u64::from)))
                .arg(opt(limits.rate.map(|r| share(r.limit, p, n))))
                .arg(opt(window(limits.rate)))
                .arg(opt(limits.per_key_rate.map(|r| u64::from(r.limit))))
                .arg(opt(window(limits.per_key_rate)))
                .arg(opt(limits.concurrency.filter(|_| n > 1).map(u64::from)))
                .arg(opt(limits
                    .rate
                    .filter(|_| n > 1)
                    .map(|r| u64::from(r.limit))));
            async move { self.write::<i64>(&call).await }
        })
        .await?;
        Ok(())
    }

    /// `queue`'s limits as set.
    pub async fn queue_limits(&self, queue: &str) -> Result<QueueLimits> {
        let raw: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.keys().queue(0, queue, "limits"))
            .arg(&[
                "conc", "kconc", "rate", "rwin", "krate", "krwin", "conc_set", "rate_set",
            ])
            .query_async(&mut self.conn())
            .await?;
        // Partition 0 holds its share of the queue-wide limits, and the limits as set.
        let at = |i: usize| match i {
            0 => raw
                .get(6)
                .copied()
                .flatten()
                .or(raw.first().copied().flatten()),
            2 => raw
                .get(7)
                .copied()
                .flatten()
                .or(raw.get(2).copied().flatten()),
            i => raw.get(i).copied().flatten(),
        };
        let rate = |n: usize, w: usize| {
            at(n).zip(at(w)).map(|(limit, window)| RateLimit {
                limit: limit as u32,
                window: Duration::from_millis(window),
            })
        };
        Ok(QueueLimits {
            concurrency: at(0).map(|n| n as u32),
            per_key_concurrency: at(1).map(|n| n as u32),
            rate: rate(2, 3),
            per_key_rate: rate(4, 5),
        })
    }
}
