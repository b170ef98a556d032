//! Reading jobs and queues: records, queue names, stats, the oldest waiting job.

use std::{collections::HashMap, time::Duration};

use redis::AsyncCommands;

use crate::{
    Result,
    job::{JobRecord, JobState, Priority, now_ms},
};

use super::Engine;

/// The reply of the stats pipeline: ready (normal, high, low), scheduled, leased, dead, done,
/// the counters and the pause time.
type StatsReply = (
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    u64,
    HashMap<String, i64>,
    Option<u64>,
);

/// Counts of one queue, each read in O(1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue: String,
    pub ready: u64,
    /// Of the ready jobs, those waiting for a running job of their limit key to end.
    pub waiting_for_key: u64,
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
    /// Since when workers lease nothing from it (Unix ms; [`Engine::pause`]), or `None`.
    pub paused_since_ms: Option<u64>,
}

impl Engine {
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

    /// The queues this deployment has seen a push for.
    pub async fn queues(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.conn().smembers(self.keys().queues()).await?;
        names.sort();
        Ok(names)
    }

    /// How long the next job to run on `queue` has waited since it last became runnable
    /// (pushed, promoted from the schedule, released or requeued); `None` when none is ready.
    /// The first sign that a queue lacks workers: depth can be high and healthy, age cannot.
    pub async fn oldest_ready_age(&self, queue: &str) -> Result<Option<Duration>> {
        // Cancelled jobs leave tombstones at the head until a fetch pops them: look past a few.
        const LOOK_AT: isize = 16;
        let mut conn = self.conn();
        let mut heads = redis::pipe();
        for level in Priority::ALL {
            heads.lrange(self.keys().queue(queue, level.ready_part()), 0, LOOK_AT - 1);
        }
        let heads: Vec<Vec<String>> = heads.query_async(&mut conn).await?;
        let head: Vec<String> = heads.into_iter().flatten().collect();
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
        // The oldest of each level's first live job (each list is oldest first).
        Ok(rows
            .into_iter()
            .filter(|(state, _, _)| state.as_deref() == Some("QUEUED"))
            .map(|(_, updated, created)| {
                let since = updated.or(created).unwrap_or(now);
                Duration::from_millis(now.saturating_sub(since))
            })
            .max())
    }

    /// Counts of a queue, in one round trip of O(1) reads.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let k = |part: &str| self.keys().queue(queue, part);
        let (
            ready,
            ready_high,
            ready_low,
            scheduled,
            running,
            dead,
            finished,
            counters,
            paused_since_ms,
        ): StatsReply = redis::pipe()
            .llen(k("ready"))
            .llen(k(Priority::High.ready_part()))
            .llen(k(Priority::Low.ready_part()))
            .zcard(k("sched"))
            .zcard(k("lease"))
            .zcard(k("dead"))
            .llen(k("done"))
            .hgetall(k("stats"))
            .get(k("paused"))
            .query_async(&mut self.conn())
            .await?;
        let c = |name: &str| counters.get(name).copied().unwrap_or(0).max(0) as u64;
        Ok(QueueStats {
            queue: queue.to_owned(),
            // Jobs waiting for their limit key's slot are ready jobs held back.
            ready: (ready + ready_high + ready_low + c("kwait")).saturating_sub(c("tomb")),
            waiting_for_key: c("kwait"),
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
            paused_since_ms,
        })
    }

    /// The jobs of `queue` waiting to run, at most `limit` of each level and of the schedule:
    /// the ready ones by priority, each level in the order it is leased, then the scheduled ones (delayed, snoozed, retrying) by run
    /// time. Two range reads and one read per job: for tests and operators' listings, not
    /// for hot paths.
    pub async fn waiting(&self, queue: &str, limit: usize) -> Result<Vec<JobRecord>> {
        let last = isize::try_from(limit)
            .unwrap_or(isize::MAX)
            .saturating_sub(1);
        let mut pipe = redis::pipe();
        for level in Priority::ALL {
            pipe.lrange(self.keys().queue(queue, level.ready_part()), 0, last);
        }
        pipe.zrange(self.keys().queue(queue, "sched"), 0, last);
        let lists: Vec<Vec<String>> = pipe.query_async(&mut self.conn()).await?;
        let ids: Vec<String> = lists.into_iter().flatten().collect();
        Ok(self
            .jobs(&ids)
            .await?
            .into_iter()
            .flatten()
            // Cancelled jobs leave tombstones in the ready list until a fetch pops them.
            .filter(|job| {
                matches!(
                    job.state,
                    JobState::Queued | JobState::Scheduled | JobState::Retrying
                )
            })
            .collect())
    }
}
