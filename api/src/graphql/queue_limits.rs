//! A queue's limits: how many of its jobs may run at once and start per window, queue-wide
//! and per limit key (a job's `limitKey`). Every worker obeys them from its next fetch,
//! because the engine enforces them in Redis.

use std::time::Duration;

use async_graphql::{Context, InputObject, Object, SimpleObject};
use queue::{QueueLimits, RateLimit};

use super::{queues::known_queue, require, shared};
use crate::{
    auth::Role,
    error::{ApiError, ApiResult},
};

/// At most `limit` starts per `windowMs` milliseconds (bursts up to `limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, SimpleObject, InputObject)]
#[graphql(name = "RateLimit", input_name = "RateLimitInput")]
pub struct Rate {
    pub limit: i64,
    pub window_ms: i64,
}

/// A queue's limits; a null field is no limit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, SimpleObject, InputObject,
)]
#[graphql(name = "QueueLimits", input_name = "QueueLimitsInput")]
pub struct Limits {
    /// Jobs of the queue running at once, across all workers.
    pub concurrency: Option<i64>,
    /// Jobs of one limit key running at once (e.g. one evaluation per sensor).
    pub per_key_concurrency: Option<i64>,
    /// Jobs of the queue started per window.
    pub rate: Option<Rate>,
    /// Jobs of one limit key started per window (e.g. per webhook host).
    pub per_key_rate: Option<Rate>,
}

/// The engine's limits for `input`, or the first field that is out of range.
fn engine_limits(input: &Limits) -> ApiResult<QueueLimits> {
    let count = |field: &str, value: Option<i64>| -> ApiResult<Option<u32>> {
        match value {
            None => Ok(None),
            Some(n) if (1..=1_000_000).contains(&n) => Ok(Some(n as u32)),
            Some(_) => Err(ApiError::bad_input(
                format!("limits.{field}"),
                "a limit is from 1 to 1000000 (null for none)",
            )),
        }
    };
    let rate = |field: &str, value: Option<Rate>| -> ApiResult<Option<RateLimit>> {
        let Some(rate) = value else { return Ok(None) };
        let limit = count(&format!("{field}.limit"), Some(rate.limit))?.unwrap_or(1);
        let max_window = queue::MAX_RATE_WINDOW.as_millis() as i64;
        if !(1..=max_window).contains(&rate.window_ms) {
            return Err(ApiError::bad_input(
                format!("limits.{field}.windowMs"),
                format!("a window is from 1 ms to 24 h ({max_window} ms)"),
            ));
        }
        Ok(Some(RateLimit {
            limit,
            window: Duration::from_millis(rate.window_ms as u64),
        }))
    };
    Ok(QueueLimits {
        concurrency: count("concurrency", input.concurrency)?,
        per_key_concurrency: count("perKeyConcurrency", input.per_key_concurrency)?,
        rate: rate("rate", input.rate)?,
        per_key_rate: rate("perKeyRate", input.per_key_rate)?,
    })
}

fn shown(limits: QueueLimits) -> Limits {
    let rate = |r: Option<RateLimit>| {
        r.map(|r| Rate {
            limit: i64::from(r.limit),
            window_ms: r.window.as_millis() as i64,
        })
    };
    Limits {
        concurrency: limits.concurrency.map(i64::from),
        per_key_concurrency: limits.per_key_concurrency.map(i64::from),
        rate: rate(limits.rate),
        per_key_rate: rate(limits.per_key_rate),
    }
}

#[derive(Default)]
pub struct QueueLimitsQuery;

#[Object]
impl QueueLimitsQuery {
    /// The queue's limits as set (all null: none).
    async fn queue_limits(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Limits> {
        require(ctx, Role::Viewer)?;
        let shared = shared(ctx);
        let queue = known_queue(&name)?;
        Ok(shown(
            shared.redis(shared.engine.queue_limits(queue)).await?,
        ))
    }
}

#[derive(Default)]
pub struct QueueLimitsMutation;

#[Object]
impl QueueLimitsMutation {
    /// Replaces the queue's limits (operator); fields left null are no limit. Applies from
    /// every worker's next fetch. Jobs held back by a limit wait without spending attempts.
    /// Audited.
    async fn set_queue_limits(
        &self,
        ctx: &Context<'_>,
        name: String,
        limits: Limits,
    ) -> async_graphql::Result<Limits> {
        let session = require(ctx, Role::Operator)?;
        let shared = shared(ctx);
        let queue = known_queue(&name)?;
        let wanted = engine_limits(&limits)?;
        // Each partition holds a share of a queue-wide limit, and at least 1.
        let partitions = u32::from(shared.engine.partitions());
        if wanted.concurrency.is_some_and(|c| c < partitions) {
            return Err(ApiError::bad_input(
                "limits.concurrency",
                format!("this deployment has {partitions} partitions: set at least {partitions}, or use perKeyConcurrency"),
            )
            .into());
        }
        if wanted.rate.is_some_and(|r| r.limit < partitions) {
            return Err(ApiError::bad_input(
                "limits.rate.limit",
                format!("this deployment has {partitions} partitions: allow at least {partitions} per window, or use perKeyRate"),
            )
            .into());
        }
        let before = shared.redis(shared.engine.queue_limits(queue)).await?;
        shared
            .redis(shared.engine.set_queue_limits(queue, &wanted))
            .await?;
        shared
            .audit(
                &shared.db,
                Some(session.user_id),
                "queue.limits",
                &format!("queue:{queue}"),
                serde_json::json!({
                    "before": serde_json::to_value(shown(before)).unwrap_or_default(),
                    "after": serde_json::to_value(shown(wanted)).unwrap_or_default(),
                }),
            )
            .await?;
        tracing::info!(queue, user = session.user_id, ?wanted, "queue limits set");
        Ok(shown(wanted))
    }
}
