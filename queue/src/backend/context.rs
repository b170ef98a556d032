use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use apalis_core::task::{Task, data::MissingDataError, from_request::FromRequest};
use tokio_util::sync::CancellationToken;

/// What a handler knows about the job it runs. Extract it by adding a `JobContext`
/// argument to the handler.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub id: String,
    pub queue: String,
    pub kind: String,
    /// 1-based; counts started attempts (a snooze gives its attempt back).
    pub attempt: u32,
    pub max_attempts: u32,
    pub payload_version: u32,
    pub workflow_id: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_context: Option<String>,
    pub created_at_ms: u64,
    /// How long this attempt may run (its own or its kind's timeout).
    pub timeout: Option<Duration>,
    pub(crate) deadline: Option<tokio::time::Instant>,
    pub(crate) timed_out: Arc<AtomicBool>,
    pub(crate) token: String,
    pub(crate) cancel: CancellationToken,
    pub(crate) engine: crate::Engine,
}

impl JobContext {
    /// True once an operator asked for this job to be cancelled, or its execution timeout
    /// passed. A handler that sees it should stop and return an error (an operator's cancel
    /// then ends the job as cancelled; a timeout retries it).
    pub fn is_cancel_requested(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// True once the attempt ran past its execution timeout.
    pub fn is_timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
        self.cancel.cancel();
    }

    /// Resolves when the handler should stop (a cancel request or the timeout): `select!`
    /// on it beside long work.
    pub async fn cancel_requested(&self) {
        self.cancel.cancelled().await
    }

    /// Tells the job's watchers how far this attempt has got (`percent` 0 to 100, a short
    /// message): it shows on the job and in its event stream. One Redis call: report at
    /// milestones, not per item. Answers false when the lease was lost (the attempt should
    /// stop); a Redis error is left to the caller, since progress is never worth failing for.
    pub async fn report_progress(&self, percent: u8, message: &str) -> crate::Result<bool> {
        self.engine
            .report_progress(&self.id, &self.token, percent, message)
            .await
    }

    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }
}

impl<Args: Sync> FromRequest<Task<Args>> for JobContext {
    type Error = MissingDataError;
    async fn from_request(task: &Task<Args>) -> Result<Self, Self::Error> {
        task.ctx().data().get_checked::<JobContext>().cloned()
    }
}

/// What a failed attempt means. Return it (boxed, or through `?`) from a handler; any other
/// error is treated as retryable. apalis's `AbortError` counts as permanent and its
/// `RetryAfterError` as a snooze for the given duration. Once cancellation was requested,
/// any error ends the job as cancelled.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Try again after the kind's backoff, while attempts remain.
    #[error("{0}")]
    Retryable(String),
    /// Never retried: the job goes to the dead set (a bad payload, an unknown sensor).
    #[error("{0}")]
    Permanent(String),
    /// Run again after `after` without spending an attempt (an open circuit breaker, a rate
    /// limit, a `Retry-After`); `reason` is the job's last error while it waits.
    #[error("snoozed for {after:?}: {reason}")]
    Snooze { after: Duration, reason: String },
    /// The handler observed a cancel request and stopped.
    #[error("cancelled")]
    Cancelled,
}

impl JobError {
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        JobError::Retryable(e.to_string())
    }
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        JobError::Permanent(e.to_string())
    }
    pub fn snooze(after: Duration, reason: impl std::fmt::Display) -> Self {
        JobError::Snooze {
            after,
            reason: reason.to_string(),
        }
    }
}
