//! One job at a time in the caller's task, through the backend's own steps: the lease, the
//! backend's decoder, the job's span, the same classification of the handler's result into an
//! outcome, and the same completion script. Tests perform jobs with it deterministically,
//! without a worker polling in the background; nothing about a job differs from a run in a
//! pool except who awaits the handler.

use std::{future::Future, sync::Arc, time::Duration};

use apalis_core::error::BoxDynError;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{
    JobContext, PayloadDecoder, WorkerOptions, layer,
    runtime::{OutcomeMsg, Shared, decode_leased},
};
use crate::{Applied, Engine, QueueError, job::Outcome};

/// A worker of one queue that runs a job only when asked ([`InlineWorker::run_next`]).
pub struct InlineWorker<Args> {
    shared: Arc<Shared>,
    decode: PayloadDecoder<Args>,
    // Kept so the shared state's outcome channel stays open; outcomes are applied directly.
    _outcomes: mpsc::UnboundedReceiver<OutcomeMsg>,
}

impl<Args> std::fmt::Debug for InlineWorker<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineWorker")
            .field("queue", &self.shared.opts.queue)
            .finish()
    }
}

/// One attempt run by [`InlineWorker::run_next`]: the job as its handler saw it, the outcome
/// the backend made of the result, and whether the engine applied it.
#[derive(Debug, Clone)]
pub struct InlineRun {
    pub job: JobContext,
    pub outcome: Outcome,
    pub applied: Applied,
}

/// What [`InlineWorker::run_next`] did.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per call, never stored in bulk
pub enum InlineStep {
    Ran(InlineRun),
    /// Nothing was ready; `next_due_in` is when a scheduled job or a lease falls due.
    Idle {
        next_due_in: Option<Duration>,
    },
}

impl<Args> InlineWorker<Args> {
    /// A worker of `options.queue` decoding leased payloads with `decode` (as
    /// `RedisBackend::decode_with`).
    pub fn new(engine: Engine, options: WorkerOptions, decode: PayloadDecoder<Args>) -> Self {
        let worker_id = options
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("inline-{}", options.queue));
        let (shared, outcomes) = Shared::new(engine, options, worker_id);
        Self {
            shared,
            decode,
            _outcomes: outcomes,
        }
    }

    /// Leases the next ready job (promoting due ones and reaping expired leases first, as a
    /// pool's fetch does), runs `handler` on it and applies its outcome before returning.
    pub async fn run_next<F, Fut, R, E>(&self, handler: F) -> Result<InlineStep, QueueError>
    where
        F: FnOnce(Args, JobContext) -> Fut,
        Fut: Future<Output = Result<R, E>>,
        R: serde::Serialize,
        E: Into<BoxDynError>,
    {
        let fetched = self
            .shared
            .engine
            .fetch(&self.shared.fetch_request(1))
            .await?;
        let Some(leased) = fetched.jobs.into_iter().next() else {
            return Ok(InlineStep::Idle {
                next_due_in: fetched.next_due_in,
            });
        };
        let job = self.shared.job_context(&leased);
        let outcome = match decode_leased(&job, &leased, self.decode) {
            Err(outcome) => outcome,
            Ok(args) => {
                let span = layer::job_span(&self.shared, &job);
                layer::run_attempt(&self.shared, &job, handler(args, job.clone()))
                    .instrument(span)
                    .await
                    .0
            }
        };
        let applied = self
            .shared
            .engine
            .complete(&[(job.id.clone(), job.token.clone(), outcome.clone())])
            .await?
            .into_iter()
            .next()
            .unwrap_or(Applied::Missing);
        Ok(InlineStep::Ran(InlineRun {
            job,
            outcome,
            applied,
        }))
    }
}
