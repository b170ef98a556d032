//! The backend's middleware: it sees every result of every job, turns it into an outcome for
//! the engine, and hands it to the batching acknowledger.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    task::{Context, Poll},
};

use apalis_core::{
    error::{AbortError, BoxDynError, RetryAfterError},
    task::Task,
};
use futures::{FutureExt, future::BoxFuture};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::{JobContext, JobError, runtime::Shared};
use crate::job::Outcome;

#[derive(Debug, Clone)]
pub struct OutcomeLayer {
    pub(crate) shared: Arc<Shared>,
}

impl<S> Layer<S> for OutcomeLayer {
    type Service = OutcomeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OutcomeService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OutcomeService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, Args> Service<Task<Args>> for OutcomeService<S>
where
    S: Service<Task<Args>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: serde::Serialize + Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let job = task.ctx().data().get::<JobContext>().cloned();
        let fut = self.inner.call(task);
        let shared = self.shared.clone();
        let Some(job) = job else {
            // Not one of ours (cannot happen with this backend); run it untracked.
            return async move { fut.await.map_err(Into::into) }.boxed();
        };
        let span = job_span(&shared, &job);
        async move {
            let (outcome, reply) = run_attempt(&shared, &job, fut).await;
            tracing::debug!(outcome = outcome.name(), "attempt finished");
            shared.finish(&job, outcome);
            reply
        }
        .instrument(span)
        .boxed()
    }
}

/// Runs one attempt to its outcome: the handler's own end; or, past the attempt's execution
/// timeout, a cooperative cancel and then, after the grace, abandonment (the future is
/// dropped, and the attempt counts as a failed one); or a release once the shutdown deadline
/// has passed.
pub(crate) async fn run_attempt<R, E>(
    shared: &Shared,
    job: &JobContext,
    handler: impl Future<Output = Result<R, E>>,
) -> (Outcome, Result<R, BoxDynError>)
where
    R: serde::Serialize,
    E: Into<BoxDynError>,
{
    let run = AssertUnwindSafe(handler).catch_unwind();
    let timed_out = async {
        match job.deadline {
            Some(deadline) => {
                tokio::time::sleep_until(deadline).await;
                tracing::warn!("execution timeout passed: asking the handler to stop");
                job.mark_timed_out();
                tokio::time::sleep(shared.opts.timeout_grace).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        biased;
        ended = run => outcome_of(shared, job, ended),
        _ = shared.release.cancelled() => {
            tracing::warn!("shutdown deadline passed: releasing the job unfinished");
            (
                Outcome::Release,
                Err(BoxDynError::from("released at shutdown")),
            )
        }
        _ = timed_out => {
            let error = format!(
                "{}; the handler did not stop within {:?}, so the attempt was abandoned",
                timeout_message(job),
                shared.opts.timeout_grace
            );
            tracing::error!(%error);
            (shared.retry_outcome(job, error.clone()), Err(BoxDynError::from(error)))
        }
    }
}

fn timeout_message(job: &JobContext) -> String {
    match job.timeout {
        Some(t) => format!("timed out after {t:?}"),
        None => "timed out".into(),
    }
}

/// The span every attempt runs in: job id, kind, attempt, queue and worker, continuing the
/// trace the job carries.
pub(crate) fn job_span(shared: &Shared, job: &JobContext) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        job.id = %job.id,
        job.kind = %job.kind,
        job.attempt = job.attempt,
        job.queue = %job.queue,
        worker.id = %shared.worker_id,
        trace_id = tracing::field::Empty,
    );
    crate::propagation::continue_job(&span, job.trace_context.as_deref());
    span
}

/// What an attempt's end (a panic, a value, an error) means for the job, and the handler's
/// reply with panics turned into errors.
pub(crate) fn outcome_of<R: serde::Serialize, E: Into<BoxDynError>>(
    shared: &Shared,
    job: &JobContext,
    ended: std::thread::Result<Result<R, E>>,
) -> (Outcome, Result<R, BoxDynError>) {
    match ended {
        Err(panic) => {
            let error = format!("handler panicked: {}", panic_message(&*panic));
            tracing::error!(%error);
            (
                shared.retry_outcome(job, error.clone()),
                Err(BoxDynError::from(error)),
            )
        }
        Ok(Ok(response)) => {
            let result = stored_result(&response);
            (Outcome::Succeeded { result }, Ok(response))
        }
        Ok(Err(error)) => {
            let error: BoxDynError = error.into();
            let outcome = classify(shared, job, &*error);
            tracing::warn!(error = %error, outcome = outcome.name(), "job attempt failed");
            (outcome, Err(error))
        }
    }
}

/// The handler's value as the job's `result` (JSON); nothing for `()`, so a job without a
/// result does not store one.
fn stored_result(response: &impl serde::Serialize) -> Option<String> {
    match serde_json::to_string(response) {
        Ok(json) if json != "null" => Some(json),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, "the job's result is not JSON; it is not stored");
            None
        }
    }
}

fn classify(
    shared: &Shared,
    job: &JobContext,
    error: &(dyn std::error::Error + 'static),
) -> Outcome {
    if job.is_timed_out() {
        return shared.retry_outcome(job, format!("{}: {error}", timeout_message(job)));
    }
    if job.is_cancel_requested() {
        return Outcome::Cancelled;
    }
    if let Some(e) = error.downcast_ref::<JobError>() {
        return match e {
            JobError::Retryable(msg) => shared.retry_outcome(job, msg.clone()),
            JobError::Permanent(msg) => Outcome::Fail { error: msg.clone() },
            JobError::Snooze { after, reason } => Outcome::Snooze {
                delay: *after,
                reason: reason.clone(),
            },
            JobError::Cancelled => Outcome::Cancelled,
        };
    }
    if let Some(e) = error.downcast_ref::<AbortError>() {
        return Outcome::Fail {
            error: e.to_string(),
        };
    }
    if let Some(e) = error.downcast_ref::<RetryAfterError>() {
        return Outcome::Snooze {
            delay: e.get_duration(),
            reason: e.to_string(),
        };
    }
    shared.retry_outcome(job, error.to_string())
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
