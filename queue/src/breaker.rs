//! Circuit breakers whose state lives in Redis, so every worker and the API see the same
//! breaker for a destination: after `failure_threshold` consecutive failures it opens for
//! `cool_down`, then lets one probe through at a time (half-open) until a success closes it.
//! Callers snooze their jobs while it is open rather than spend attempts on a dead host.

use std::time::Duration;

use redis::{AsyncCommands, Value};
use serde::Serialize;

use crate::{
    Engine, QueueError, Result,
    engine::{Call, value_i64, value_string},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting a probe through.
    pub cool_down: Duration,
    /// How long one probe holds the half-open breaker before another may try.
    pub probe_timeout: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(15),
        }
    }
}

/// What a caller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerGate {
    /// Go ahead.
    Closed,
    /// Go ahead: this call is the half-open breaker's one probe.
    Probe,
    /// Do not call; try again after `retry_in`.
    Open { retry_in: Duration },
}

impl BreakerGate {
    pub fn allows(self) -> bool {
        !matches!(self, BreakerGate::Open { .. })
    }
}

/// A breaker that is not closed, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    pub name: String,
    pub failures: u32,
    /// `open` or `half_open`.
    pub state: String,
    pub opened_at_ms: u64,
    pub open_until_ms: u64,
}

impl Engine {
    async fn breaker_call(&self, op: &str, name: &str, policy: &BreakerPolicy) -> Result<Value> {
        let keys = self.keys();
        // Forgotten long after it would have closed, so abandoned destinations leave nothing.
        let ttl = (policy.cool_down + policy.probe_timeout) * 10 + Duration::from_secs(3600);
        let reply: Value = self
            .run(
                Call::new(&self.scripts().breaker)
                    .key(keys.breaker(name))
                    .key(keys.breakers())
                    .arg(op)
                    .arg(name)
                    .arg(policy.failure_threshold.max(1))
                    .arg(policy.cool_down.as_millis() as u64)
                    .arg(policy.probe_timeout.as_millis() as u64)
                    .arg(ttl.as_millis() as u64),
            )
            .await?;
        Ok(reply)
    }

    /// May a call to `name` go ahead now?
    pub async fn breaker_acquire(&self, name: &str, policy: &BreakerPolicy) -> Result<BreakerGate> {
        let reply = self.breaker_call("acquire", name, policy).await?;
        gate(&reply)
    }

    /// Records the outcome of a call to `name`; returns the gate that now holds.
    pub async fn breaker_record(
        &self,
        name: &str,
        success: bool,
        policy: &BreakerPolicy,
    ) -> Result<BreakerGate> {
        let op = if success { "success" } else { "failure" };
        let reply = self.breaker_call(op, name, policy).await?;
        gate(&reply)
    }

    /// Breakers that are open or half-open, most recently failed first.
    pub async fn breakers(&self) -> Result<Vec<BreakerStatus>> {
        let mut conn = self.conn();
        let names: Vec<String> = conn.zrevrange(self.keys().breakers(), 0, 999).await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(self.keys().breaker(name));
        }
        let hashes: Vec<std::collections::HashMap<String, u64>> =
            pipe.query_async(&mut conn).await?;
        let now = crate::now_ms();
        let mut out = Vec::with_capacity(names.len());
        let mut expired = Vec::new();
        for (name, h) in names.into_iter().zip(hashes) {
            let Some(&open_until_ms) = h.get("open_until") else {
                // Expired: closed long ago.
                expired.push(name);
                continue;
            };
            out.push(BreakerStatus {
                failures: h.get("failures").copied().unwrap_or(0) as u32,
                state: if now < open_until_ms {
                    "open"
                } else {
                    "half_open"
                }
                .into(),
                opened_at_ms: h.get("opened_at").copied().unwrap_or(0),
                open_until_ms,
                name,
            });
        }
        if !expired.is_empty() {
            let _: () = conn.zrem(self.keys().breakers(), expired).await?;
        }
        Ok(out)
    }
}

fn gate(reply: &Value) -> Result<BreakerGate> {
    let protocol = |detail: String| QueueError::Protocol {
        script: "breaker",
        detail,
    };
    let Value::Array(parts) = reply else {
        return Err(protocol(format!("{reply:?}")));
    };
    let kind = parts.first().and_then(value_string);
    let wait = parts.get(1).and_then(value_i64).unwrap_or(0).max(0) as u64;
    match kind.as_deref() {
        Some("closed") => Ok(BreakerGate::Closed),
        Some("probe") => Ok(BreakerGate::Probe),
        Some("open") => Ok(BreakerGate::Open {
            retry_in: Duration::from_millis(wait.max(1)),
        }),
        other => Err(protocol(format!("gate {other:?}"))),
    }
}
