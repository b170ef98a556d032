//! A job performed in the caller's task through the production adapter: the kind's decoder
//! and options, the handler the pools run ([`crate::registry::attempt`], metrics included),
//! and the queue backend's own classification and completion ([`queue::InlineWorker`]).
//! Tests drive the pipeline with it one job at a time, deterministically.

use futures::future::BoxFuture;
use queue::{InlineStep, InlineWorker, QueueError};

use crate::registry::{Context, KindVisitor, Perform, PoolConfig, attempt, for_kind, options};

/// What one call did: ran a job (and applied its outcome), or found nothing ready.
pub type Performed = InlineStep;

#[derive(Debug, thiserror::Error)]
pub enum PerformError {
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Leases the next ready job of kind `J` (on its own queue) and performs it.
pub async fn perform<J: Perform>(
    ctx: &Context,
    config: &PoolConfig,
) -> Result<Performed, QueueError> {
    perform_leased::<J>(ctx, config, J::KIND).await
}

/// Leases the next ready job on `queue`, whatever its kind, and performs it.
pub async fn perform_next(
    ctx: &Context,
    config: &PoolConfig,
    queue: &str,
) -> Result<Performed, PerformError> {
    let next = for_kind(queue, Next { ctx, config })
        .ok_or_else(|| PerformError::UnknownQueue(queue.to_owned()))?;
    Ok(next.await?)
}

async fn perform_leased<J: Perform>(
    ctx: &Context,
    config: &PoolConfig,
    queue: &str,
) -> Result<Performed, QueueError> {
    let mut options = options::<J>(config, queue);
    options = options.worker_id(format!("{}-inline-{queue}", config.worker_id));
    let worker = InlineWorker::<J>::new(ctx.engine.clone(), options, J::decode_leased);
    worker
        .run_next(|payload, job| attempt::<J>(payload, job, ctx))
        .await
}

struct Next<'a> {
    ctx: &'a Context,
    config: &'a PoolConfig,
}

impl<'a> KindVisitor for Next<'a> {
    type Output = BoxFuture<'a, Result<Performed, QueueError>>;

    fn visit<J: Perform>(self, queue: &str) -> Self::Output {
        let queue = queue.to_owned();
        Box::pin(async move { perform_leased::<J>(self.ctx, self.config, &queue).await })
    }
}
