//! Queue-wide controls: pause, resume and drain. A paused queue keeps taking pushes, and its
//! leases, retries and schedules keep moving; only leasing stops, in the fetch script itself,
//! so no worker takes a job from the moment the pause is written.

use std::time::Duration;

use crate::{QueueError, RateLimit, Result};

use super::{Call, Engine};

impl Engine {
    /// Stops workers leasing from `queue`; jobs already running finish. Answers whether the
    /// queue was running before (false: it was paused already).
    pub async fn pause(&self, queue: &str) -> Result<bool> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys().queue(queue, "paused"))
            .arg(crate::now_ms())
            .arg("NX")
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    /// Lets workers lease from `queue` again and wakes an idle one at once. Answers whether
    /// the queue was paused.
    pub async fn resume(&self, queue: &str) -> Result<bool> {
        let wake = self.keys().queue(queue, "wake");
        let (removed, _, _): (u64, u64, ()) = redis::pipe()
            .atomic()
            .del(self.keys().queue(queue, "paused"))
            .rpush(&wake, "1")
            .ltrim(&wake, 0, 0)
            .query_async(&mut self.conn())
            .await?;
        Ok(removed > 0)
    }

    /// Cancels every job waiting on `queue` (ready, scheduled, retrying), `chunk` per script
    /// call so Redis is never held long; running jobs finish. Each cancelled job gets its
    /// `cancelled` event, so the ledger and subscribers see it. Answers how many were
    /// cancelled. Jobs pushed while it runs may be cancelled too (pause first for a clean
    /// cut), but it ends: it takes at most as many entries as were waiting when it began.
    pub async fn drain(&self, queue: &str, chunk: usize) -> Result<u64> {
        let chunk = chunk.max(1) as u64;
        let (mut total, mut taken_total) = (0, 0);
        let mut limit: Option<u64> = None;
        loop {
            let (cancelled, taken, left): (u64, u64, u64) = self
                .write(
                    Call::new(&self.inner.scripts.drain)
                        .key(self.keys().job_events())
                        .arg(&self.keys().prefix)
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
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let window = |r: Option<RateLimit>| r.map(|r| r.window.as_millis() as u64);
        let _: i64 = self
            .write(
                Call::new(&self.inner.scripts.limits)
                    .key(self.keys().job_events())
                    .arg(&self.keys().prefix)
                    .arg(queue)
                    .arg(opt(limits.concurrency.map(u64::from)))
                    .arg(opt(limits.per_key_concurrency.map(u64::from)))
                    .arg(opt(limits.rate.map(|r| u64::from(r.limit))))
                    .arg(opt(window(limits.rate)))
                    .arg(opt(limits.per_key_rate.map(|r| u64::from(r.limit))))
                    .arg(opt(window(limits.per_key_rate))),
            )
            .await?;
        Ok(())
    }

    /// `queue`'s limits as set.
    pub async fn queue_limits(&self, queue: &str) -> Result<QueueLimits> {
        let raw: Vec<Option<u64>> = redis::cmd("HMGET")
            .arg(self.keys().queue(queue, "limits"))
            .arg(&["conc", "kconc", "rate", "rwin", "krate", "krwin"])
            .query_async(&mut self.conn())
            .await?;
        let at = |i: usize| raw.get(i).copied().flatten();
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
