//! The workers' side: leasing jobs, applying their outcomes, renewing leases.

use std::{collections::BTreeMap, sync::atomic::Ordering, time::Duration};

use redis::Value;

use crate::{
    Result,
    job::{Applied, JobExtra, LeasedJob, Outcome},
    keys::Partition,
};

use super::{Engine, call::fenced, protocol, split_token, tag_token, value_i64, value_string};

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
    /// The kind's execution timeout, for jobs without one of their own.
    pub timeout: Option<Duration>,
    /// How long past its timeout an attempt's lease still lasts, for the handler to stop.
    pub timeout_grace: Duration,
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
    /// Past the attempt's execution timeout: the lease was renewed only to the end of the
    /// grace; the handler must stop.
    TimedOut,
}

/// How soon a worker that found its partition fenced asks again.
const FENCED_RECHECK: Duration = Duration::from_millis(250);

impl Engine {
    /// Reaps expired leases and promotes due jobs (bounded chunks), then leases up to
    /// `max_jobs` ready jobs to the worker. With several partitions it goes round them, each
    /// call starting one further on, until it has `max_jobs`; every partition visited is
    /// reaped and promoted.
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched> {
        let n = self.partitions();
        if n == 1 {
            return self.fetch_from(0, req, req.max_jobs).await;
        }
        let start = self.inner.fetch_turn.fetch_add(1, Ordering::Relaxed);
        let mut out = Fetched::default();
        let (mut visited, mut failures, mut failed) = (0, 0, None);
        for step in 0..usize::from(n) {
            visited += 1;
            let p = ((start + step) % usize::from(n)) as Partition;
            let want = req.max_jobs - out.jobs.len();
            let fetched = match self.fetch_from(p, req, want).await {
                Ok(fetched) => fetched,
                // One partition's primary failing over, or its slot moving: the others go on.
                Err(e) if e.is_retryable() => {
                    tracing::warn!(partition = p, error = %e, "fetch from one partition failed");
                    failures += 1;
                    failed = Some(e);
                    continue;
                }
                // Jobs leased from other partitions are the caller's now: hand them over, or
                // they would sit leased to nobody until their leases ran out.
                Err(e) if !out.jobs.is_empty() => {
                    tracing::warn!(partition = p, error = %e, "fetch from one partition failed");
                    break;
                }
                Err(e) => return Err(e),
            };
            out.jobs.extend(fetched.jobs);
            out.next_due_in = match (out.next_due_in, fetched.next_due_in) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // A fetch of none only reaps and promotes: every partition.
            if req.max_jobs > 0 && out.jobs.len() >= req.max_jobs {
                break;
            }
        }
        // Every partition visited failed: report it (the caller backs off) rather than look idle.
        match failed {
            Some(e) if failures == visited => Err(e),
            _ => Ok(out),
        }
    }

    async fn fetch_from(
        &self,
        p: Partition,
        req: &FetchRequest<'_>,
        want: usize,
    ) -> Result<Fetched> {
        let cfg = &self.inner.config;
        let reply: Vec<Value> = match self
            .run_once(
                self.call_in(&self.inner.scripts.fetch, p)
                    .arg(req.queue)
                    .arg(want)
                    .arg(req.lease.as_millis() as u64)
                    .arg(req.worker_id)
                    .arg(cfg.promote_chunk)
                    .arg(cfg.reap_chunk)
                    .arg(req.backoff_base.as_millis() as u64)
                    .arg(req.backoff_cap.as_millis() as u64)
                    .arg(rand::random::<u32>())
                    .arg(cfg.priority_aging.as_millis() as u64)
                    .arg(req.timeout.map_or(0, |t| t.as_millis() as u64))
                    .arg(req.timeout_grace.as_millis() as u64),
            )
            .await
        {
            // A fenced partition's slot is moving: pass over it, and come back soon.
            Err(e) if fenced(&e) => {
                return Ok(Fetched {
                    jobs: Vec::new(),
                    next_due_in: Some(FENCED_RECHECK),
                });
            }
            other => other?,
        };
        let (hint, rest) = reply
            .split_first()
            .ok_or_else(|| protocol("fetch", "empty reply"))?;
        let next_due_in = value_i64(hint)
            .filter(|ms| *ms >= 0)
            .map(|ms| Duration::from_millis(ms as u64));
        let partitions = self.partitions();
        let jobs = rest
            .chunks(11)
            .map(|f| {
                let s = |i: usize| value_string(&f[i]).unwrap_or_default();
                let n = |i: usize| value_i64(&f[i]).unwrap_or(0);
                if f.len() != 11 {
                    return Err(protocol("fetch", "short job record"));
                }
                let extra = JobExtra::decode(Some(&s(8)));
                Ok(LeasedJob {
                    id: s(0),
                    token: tag_token(partitions, p, s(1)),
                    attempt: n(2) as u32,
                    max_attempts: n(3) as u32,
                    kind: s(4),
                    payload: s(5),
                    payload_version: s(6).parse().unwrap_or(1),
                    workflow_id: Some(s(7)).filter(|w| !w.is_empty()),
                    correlation_id: extra.cid,
                    trace_context: extra.tc,
                    created_at_ms: s(9).parse().unwrap_or(0),
                    timeout: Some(n(10))
                        .filter(|ms| *ms > 0)
                        .map(|ms| Duration::from_millis(ms as u64)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Fetched { jobs, next_due_in })
    }

    /// Records how far the attempt holding `token` has got: `percent` (0 to 100) and a short
    /// message (at most 200 characters kept), on the job and as a `progress` event. Answers
    /// false, writing nothing, when the job no longer runs under that token.
    pub async fn report_progress(
        &self,
        id: &str,
        token: &str,
        percent: u8,
        message: &str,
    ) -> Result<bool> {
        let message: String = message.chars().take(200).collect();
        let (p, token) = split_token(token);
        if p >= self.partitions() {
            return Ok(false);
        }
        // Progress is a side note of a running handler: a fenced partition answers `FENCED`
        // at once (retryable) rather than hold the handler up to `fence_wait`.
        let recorded: i64 = self
            .run_once(
                self.call_in(&self.inner.scripts.progress, p)
                    .arg(id)
                    .arg(token)
                    .arg(percent.min(100))
                    .arg(message),
            )
            .await?;
        Ok(recorded == 1)
    }

    /// Applies many handler outcomes, one call per partition they belong to. An outcome whose
    /// lease token no longer matches is refused ([`Applied::Stale`]), never applied.
    pub async fn complete(&self, outcomes: &[(String, String, Outcome)]) -> Result<Vec<Applied>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        if self.partitions() == 1 {
            // One partition: one call, as before partitions, without grouping.
            return self.complete_in(0, outcomes.iter().collect()).await;
        }
        let mut groups = by_token_partition(outcomes.iter().map(|(_, token, _)| token.as_str()));
        let mut applied = vec![Applied::Missing; outcomes.len()];
        // A token that names no partition of the deployment was never handed out by it.
        groups.retain(|p, at| {
            let known = *p < self.partitions();
            if !known {
                for &i in at.iter() {
                    applied[i] = Applied::Stale;
                }
            }
            known
        });
        let calls = groups.iter().map(|(p, at)| {
            let part: Vec<&(String, String, Outcome)> = at.iter().map(|&i| &outcomes[i]).collect();
            self.complete_in(*p, part)
        });
        for ((_, at), reply) in groups.iter().zip(futures::future::join_all(calls).await) {
            for (&i, one) in at.iter().zip(reply?) {
                applied[i] = one;
            }
        }
        Ok(applied)
    }

    async fn complete_in(
        &self,
        p: Partition,
        outcomes: Vec<&(String, String, Outcome)>,
    ) -> Result<Vec<Applied>> {
        let mut inv = self.call_in(&self.inner.scripts.complete, p);
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
            inv.arg(id)
                .arg(split_token(token).1)
                .arg(name)
                .arg(text)
                .arg(delay);
        }
        let reply: Vec<String> = self.write(&inv).await?;
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
        timeout_grace: Duration,
        held: &[(String, String)],
    ) -> Result<Vec<RenewStatus>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let mut groups = by_token_partition(held.iter().map(|(_, token)| token.as_str()));
        groups.retain(|p, _| *p < self.partitions());
        let calls = groups.iter().map(|(p, at)| {
            let mut inv = self.call_in(&self.inner.scripts.renew, *p);
            inv.arg(queue)
                .arg(lease.as_millis() as u64)
                .arg(timeout_grace.as_millis() as u64);
            for &i in at {
                let (id, token) = &held[i];
                inv.arg(id).arg(split_token(token).1);
            }
            // Not waiting for a fenced partition: the other partitions' leases must not lapse
            // meanwhile. Nothing reaps a lease on a fenced partition (a fetch is a script
            // too), so its jobs count as renewed, and the next round renews them for real.
            async move {
                match self.run_once::<Vec<i64>>(&inv).await {
                    Err(e) if fenced(&e) => Ok(vec![0; at.len()]),
                    other => other,
                }
            }
        });
        let mut statuses = vec![RenewStatus::Lost; held.len()];
        for ((_, at), reply) in groups.iter().zip(futures::future::join_all(calls).await) {
            for (&i, r) in at.iter().zip(reply?) {
                statuses[i] = match r {
                    2 => RenewStatus::TimedOut,
                    1 => RenewStatus::CancelRequested,
                    0 => RenewStatus::Renewed,
                    _ => RenewStatus::Lost,
                };
            }
        }
        Ok(statuses)
    }
}

/// Indexes grouped by the partition their lease token names.
fn by_token_partition<'a>(
    tokens: impl Iterator<Item = &'a str>,
) -> BTreeMap<Partition, Vec<usize>> {
    let mut groups: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
    for (i, token) in tokens.enumerate() {
        groups.entry(split_token(token).0).or_default().push(i);
    }
    groups
}
