//! Rate limits whose state lives in Redis, so every API replica and worker counts against the
//! same budget: `limit` calls per `window`, bursts up to `limit`, smoothed (GCRA), one round
//! trip per call.

use std::time::Duration;

use redis::Value;

use crate::{
    Engine, QueueError, Result,
    engine::{Call, value_i64},
};

/// The longest limiter name accepted: names come from callers (an email, an address, a
/// device), and an unbounded one would let a caller grow Redis at will.
pub const MAX_RATE_KEY_BYTES: usize = 256;

/// A budget: `limit` calls per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub window: Duration,
}

impl RateLimit {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(60),
        }
    }

    pub fn per_second(limit: u32) -> Self {
        Self {
            limit,
            window: Duration::from_secs(1),
        }
    }
}

/// What the limiter answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead; `remaining` more calls fit in the budget right now.
    Allowed { remaining: u32 },
    /// Over budget: the next call fits after `retry_after`.
    Limited { retry_after: Duration },
}

impl RateDecision {
    pub fn is_allowed(self) -> bool {
        matches!(self, RateDecision::Allowed { .. })
    }
}

impl Engine {
    /// Counts one call against the limiter `name` (a refused call counts nothing).
    pub async fn rate_limit(&self, name: &str, budget: RateLimit) -> Result<RateDecision> {
        if name.is_empty() || name.len() > MAX_RATE_KEY_BYTES {
            return Err(QueueError::InvalidArgument(format!(
                "a rate-limit name needs 1 to {MAX_RATE_KEY_BYTES} bytes"
            )));
        }
        let window_ms = budget.window.as_millis().max(1) as u64;
        let reply: Value = self
            .run(
                Call::new(&self.scripts().rate_limit)
                    .key(self.keys().rate_limit(name))
                    .arg(budget.limit.max(1))
                    .arg(window_ms)
                    .arg(1),
            )
            .await?;
        decision(&reply)
    }
}

fn decision(reply: &Value) -> Result<RateDecision> {
    let Value::Array(parts) = reply else {
        return Err(QueueError::Protocol {
            script: "rate_limit",
            detail: format!("{reply:?}"),
        });
    };
    let field = |i: usize| parts.get(i).and_then(value_i64).unwrap_or(0).max(0) as u64;
    Ok(if field(0) == 1 {
        RateDecision::Allowed {
            remaining: field(2).min(u64::from(u32::MAX)) as u32,
        }
    } else {
        RateDecision::Limited {
            retry_after: Duration::from_millis(field(1).max(1)),
        }
    })
}
