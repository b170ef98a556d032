//! The workers' side: leasing jobs, applying their outcomes, renewing leases.

use std::time::Duration;

use redis::Value;

use crate::{
    Result,
    job::{Applied, JobExtra, LeasedJob, Outcome},
};

use super::{Engine, call::Call, protocol, value_i64, value_string};

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

impl Engine {
    /// Reaps expired leases and promotes due jobs (bounded chunks), then leases up to
    /// `max_jobs` ready jobs to the worker.
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched> {
        let cfg = &self.inner.config;
        let reply: Vec<Value> = self
            .run(
                Call::new(&self.inner.scripts.fetch)
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
                    .arg(cfg.priority_aging.as_millis() as u64)
                    .arg(req.timeout.map_or(0, |t| t.as_millis() as u64))
                    .arg(req.timeout_grace.as_millis() as u64),
            )
            .await?;
        let (hint, rest) = reply
            .split_first()
            .ok_or_else(|| protocol("fetch", "empty reply"))?;
        let next_due_in = value_i64(hint)
            .filter(|ms| *ms >= 0)
            .map(|ms| Duration::from_millis(ms as u64));
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
        let recorded: i64 = self
            .run(
                Call::new(&self.inner.scripts.progress)
                    .key(self.keys().job_events())
                    .arg(&self.keys().prefix)
                    .arg(id)
                    .arg(token)
                    .arg(percent.min(100))
                    .arg(message),
            )
            .await?;
        Ok(recorded == 1)
    }

    /// Applies many handler outcomes in one call. An outcome whose lease token no longer
    /// matches is refused ([`Applied::Stale`]), never applied.
    pub async fn complete(&self, outcomes: &[(String, String, Outcome)]) -> Result<Vec<Applied>> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = Call::new(&self.inner.scripts.complete);
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
        let mut inv = Call::new(&self.inner.scripts.renew);
        inv.key(self.keys().job_events())
            .arg(&self.keys().prefix)
            .arg(queue)
            .arg(lease.as_millis() as u64)
            .arg(timeout_grace.as_millis() as u64);
        for (id, token) in held {
            inv.arg(id).arg(token);
        }
        let reply: Vec<i64> = self.run(&inv).await?;
        Ok(reply
            .into_iter()
            .map(|r| match r {
                2 => RenewStatus::TimedOut,
                1 => RenewStatus::CancelRequested,
                0 => RenewStatus::Renewed,
                _ => RenewStatus::Lost,
            })
            .collect())
    }
}
