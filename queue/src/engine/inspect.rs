//! Reading jobs and queues: records, queue names, stats, the oldest waiting job.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use redis::AsyncCommands;

use crate::{
    Result,
    job::{JobRecord, JobState, Priority, now_ms},
    keys::Partition,
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

    /// Many jobs, in input order: one round trip per partition where their ids point, and
    /// more only for ids not found there.
    pub async fn jobs(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys();
        let mut out: Vec<Option<JobRecord>> = vec![None; ids.len()];
        let mut left: Vec<usize> = (0..ids.len()).collect();
        for round in 0..keys.partitions() {
            let mut groups: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
            for &i in &left {
                let p = (keys.partition_of(&ids[i]) + round) % keys.partitions();
                groups.entry(p).or_default().push(i);
            }
            let reads = groups.iter().map(|(p, at)| {
                let mut pipe = redis::pipe();
                for &i in at {
                    pipe.hgetall(keys.job(*p, &ids[i]));
                }
                let mut conn = self.conn();
                async move {
                    pipe.query_async::<Vec<HashMap<String, String>>>(&mut conn)
                        .await
                }
            });
            let replies = futures::future::try_join_all(reads).await?;
            left.clear();
            for ((_, at), hashes) in groups.iter().zip(replies) {
                for (&i, hash) in at.iter().zip(hashes) {
                    match JobRecord::from_hash(&ids[i], hash) {
                        Some(record) => out[i] = Some(record),
                        None => left.push(i),
                    }
                }
            }
            if left.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// The queues this deployment has seen a push for.
    pub async fn queues(&self) -> Result<Vec<String>> {
        let per_partition = self
            .each_partition(|p| {
                let mut conn = self.conn();
                let key = self.keys().queues(p);
                async move { Ok(conn.smembers::<_, Vec<String>>(key).await?) }
            })
            .await?;
        let names: BTreeSet<String> = per_partition.into_iter().flatten().collect();
        Ok(names.into_iter().collect())
    }

    /// How long the next job to run on `queue` has waited since it last became runnable
    /// (pushed, promoted from the schedule, released or requeued); `None` when none is ready.
    /// The first sign that a queue lacks workers: depth can be high and healthy, age cannot.
    pub async fn oldest_ready_age(&self, queue: &str) -> Result<Option<Duration>> {
        let ages = self
            .each_partition(|p| self.oldest_ready_age_in(p, queue))
            .await?;
        Ok(ages.into_iter().flatten().max())
    }

    async fn oldest_ready_age_in(&self, p: Partition, queue: &str) -> Result<Option<Duration>> {
        // Cancelled jobs leave tombstones at the head until a fetch pops them: look past a few.
        const LOOK_AT: isize = 16;
        let mut conn = self.conn();
        let mut heads = redis::pipe();
        for level in Priority::ALL {
            heads.lrange(
                self.keys().queue(p, queue, level.ready_part()),
                0,
                LOOK_AT - 1,
            );
        }
        let heads: Vec<Vec<String>> = heads.query_async(&mut conn).await?;
        let head: Vec<String> = heads.into_iter().flatten().collect();
        if head.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for id in &head {
            pipe.cmd("HMGET")
                .arg(self.keys().job(p, id))
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

    /// Counts of a queue: one round trip of O(1) reads per partition, added up.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats> {
        let parts = self.each_partition(|p| self.stats_in(p, queue)).await?;
        let mut total = QueueStats {
            queue: queue.to_owned(),
            ..QueueStats::default()
        };
        for s in parts {
            total.ready += s.ready;
            total.waiting_for_key += s.waiting_for_key;
            total.scheduled += s.scheduled;
            total.running += s.running;
            total.dead += s.dead;
            total.finished_held += s.finished_held;
            total.pushed_total += s.pushed_total;
            total.succeeded_total += s.succeeded_total;
            total.failed_total += s.failed_total;
            total.retried_total += s.retried_total;
            total.cancelled_total += s.cancelled_total;
            total.requeued_total += s.requeued_total;
            // A pause is written to every partition; the earliest says since when.
            total.paused_since_ms = match (total.paused_since_ms, s.paused_since_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(total)
    }

    /// Counts of a queue in each partition, in partition order: how evenly it spreads.
    pub async fn partition_stats(&self, queue: &str) -> Result<Vec<QueueStats>> {
        self.each_partition(|p| self.stats_in(p, queue)).await
    }

    async fn stats_in(&self, p: Partition, queue: &str) -> Result<QueueStats> {
        let k = |part: &str| self.keys().queue(p, queue, part);
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
        let per_partition = self
            .each_partition(|p| {
                let mut pipe = redis::pipe();
                for level in Priority::ALL {
                    pipe.lrange(self.keys().queue(p, queue, level.ready_part()), 0, last);
                }
                pipe.zrange(self.keys().queue(p, queue, "sched"), 0, last);
                let mut conn = self.conn();
                async move { Ok(pipe.query_async::<Vec<Vec<String>>>(&mut conn).await?) }
            })
            .await?;
        // Each level of every partition, then the schedules: the order leasing goes in.
        let lists = Priority::ALL.len() + 1;
        let ids: Vec<String> = (0..lists)
            .flat_map(|list| per_partition.iter().flat_map(move |p| p[list].clone()))
            .collect();
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
