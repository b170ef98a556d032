//! What every job kind declares, and how payloads are decoded and validated.

use std::time::Duration;

use queue::{IdempotencyKey, NewJob, QueueError, RetryPolicy};
use serde::{Serialize, de::DeserializeOwned};

/// A payload that does not fit its kind: `field` is the dotted path of the offending input
/// (`readings.0.ts`), so an API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// How a kind runs: its retries, its lease (visibility timeout) and how long one attempt may
/// run (a job may bring a timeout of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPolicy {
    pub retry: RetryPolicy,
    pub visibility_timeout: Duration,
    /// Past it an attempt is asked to stop, then abandoned and retried.
    pub timeout: Option<Duration>,
}

/// One job kind's whole contract, in one place: its name (and the names it was known by), its
/// payload and the payload's schema version with the upgrade from the previous one, its policy
/// (attempts, backoff, lease), the idempotency key the pipeline pushes it under, and the one way
/// to build its push. Every push site builds through [`BackgroundJob::to_push`] or
/// [`BackgroundJob::to_submission`], so no site can forget the kind's attempts or its key.
pub trait BackgroundJob: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The queue and kind name. Never change it.
    const KIND: &'static str;
    /// Names this kind had before, still accepted from jobs queued under them.
    const ALIASES: &'static [&'static str] = &[];
    /// The payload schema version written now. Handlers accept this one and the previous one,
    /// so workers can be upgraded one by one with jobs in flight.
    const PAYLOAD_VERSION: u32;
    /// Whether the previous payload version still decodes into this type (set it when a change
    /// keeps old payloads readable, e.g. a new optional field).
    const ACCEPTS_PREVIOUS: bool = false;

    fn policy() -> JobPolicy;

    /// Checks what serde cannot (ranges, formats, lengths).
    fn validate(&self) -> Result<(), ValidationError>;

    /// The key the pipeline pushes this job under, so that a repeated push (a retried
    /// handler, several processes) is the same job. `None`: the kind has no natural key.
    fn idempotency_key(&self) -> Option<IdempotencyKey> {
        None
    }

    /// What its queue's per-key limits count this job under (`setQueueLimits`), e.g. its
    /// sensor. Costs nothing until an operator sets such a limit.
    fn limit_key(&self) -> Option<String> {
        None
    }

    /// The push of this job as the pipeline makes it: kind, payload version, the kind's
    /// attempts and its idempotency key.
    fn to_push(&self) -> Result<NewJob, QueueError> {
        let job = self.to_submission()?;
        Ok(match self.idempotency_key() {
            Some(key) => job.with_idempotency_key(key.key, key.scope),
            None => job,
        })
    }

    /// The push of this job as a client submits it: like [`BackgroundJob::to_push`] but
    /// without the pipeline's key (a submitter brings its own, or none).
    fn to_submission(&self) -> Result<NewJob, QueueError> {
        let job = NewJob::new(Self::KIND, self)?
            .with_payload_version(Self::PAYLOAD_VERSION)
            .with_max_attempts(Self::policy().retry.max_attempts);
        Ok(match self.limit_key() {
            Some(key) => job.with_limit_key(key),
            None => job,
        })
    }

    /// Whether `kind` names this kind, under its name or an alias.
    fn answers_to(kind: &str) -> bool {
        kind == Self::KIND || Self::ALIASES.contains(&kind)
    }

    /// Refuses a job whose payload was written at a version this build cannot read (the current
    /// one and, for kinds that changed, the previous one).
    fn check_version(version: u32) -> Result<(), ValidationError> {
        let previous = Self::PAYLOAD_VERSION.saturating_sub(1).max(1);
        if version == Self::PAYLOAD_VERSION || (Self::ACCEPTS_PREVIOUS && version == previous) {
            return Ok(());
        }
        Err(ValidationError::new(
            "payloadVersion",
            format!(
                "{} reads payload version {} here, not {version}",
                Self::KIND,
                Self::PAYLOAD_VERSION
            ),
        ))
    }

    /// Reads a payload written at `version`. The default accepts only the current version;
    /// a kind whose payload changed overrides it to also accept the previous one. The worker
    /// backend decodes every leased job through it.
    fn from_version(version: u32, payload: serde_json::Value) -> Result<Self, ValidationError> {
        Self::check_version(version)?;
        decode_payload(payload)
    }

    /// [`BackgroundJob::from_version`] from the queue's raw payload text: the backend's
    /// decoder (`RedisBackend::decode_with`).
    fn decode_leased(version: u32, raw: &str) -> Result<Self, String> {
        let payload: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("payload is not JSON: {e}"))?;
        Self::from_version(version, payload).map_err(|e| e.to_string())
    }
}

/// Decodes a JSON payload and validates it; errors name the path of the offending field.
pub fn decode_payload<J: BackgroundJob>(payload: serde_json::Value) -> Result<J, ValidationError> {
    if let Some(field) = nul_at(&payload, "") {
        // PostgreSQL takes no NUL in text or JSON: refused here, it can never reach the ledger.
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters (\\u0000)",
        ));
    }
    let job: J = serde_path_to_error::deserialize(payload).map_err(|e| {
        let field = dotted(&e.path().to_string());
        ValidationError::new(field, e.inner().to_string())
    })?;
    job.validate()?;
    Ok(job)
}

/// The dotted path (as [`ValidationError::field`] has it: `readings.0.sensor`, the root
/// `payload`) of the first string or key in `value` that holds a NUL character.
fn nul_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if path.is_empty() {
            "payload".to_owned()
        } else {
            path.to_owned()
        }
    };
    let below = |segment: &str| {
        if path.is_empty() {
            segment.to_owned()
        } else {
            format!("{path}.{segment}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, &below(&i.to_string()))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                Some(here())
            } else {
                nul_at(v, &below(k))
            }
        }),
        _ => None,
    }
}

/// `readings[0].ts` → `readings.0.ts`; the root is `payload`.
fn dotted(path: &str) -> String {
    if path == "." || path.is_empty() {
        return "payload".into();
    }
    path.replace('[', ".").replace(']', "")
}

/// The workflow run a job belongs to: the one it was pushed into, or its own id for an
/// `ingest` pushed without one (each ingest starts a run). The one place this rule lives.
pub fn run_of<'a>(kind: &str, job_id: &'a str, workflow_id: Option<&'a str>) -> Option<&'a str> {
    workflow_id
        .filter(|w| !w.is_empty())
        .or_else(|| (kind == crate::jobs::ingest::Ingest::KIND).then_some(job_id))
}

/// What a handler's failure means to the queue.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Retrying cannot help (bad payload, unknown sensor): the job goes dead at once.
    #[error("{0}")]
    Permanent(String),
    /// Try again after backoff (a database or Redis outage).
    #[error("{0}")]
    Retryable(String),
    /// Run again after `after` without spending an attempt (an open circuit breaker, a
    /// receiver's `Retry-After`); `reason` is shown as the job's last error meanwhile.
    #[error("snoozed for {after:?}: {reason}")]
    Snooze { after: Duration, reason: String },
    /// The handler saw the job's cancel request and stopped.
    #[error("cancelled")]
    Cancelled,
}

impl From<sea_orm::DbErr> for HandlerError {
    fn from(e: sea_orm::DbErr) -> Self {
        HandlerError::Retryable(format!("database: {e}"))
    }
}

impl From<queue::QueueError> for HandlerError {
    fn from(e: queue::QueueError) -> Self {
        HandlerError::Retryable(format!("queue: {e}"))
    }
}

impl From<ValidationError> for HandlerError {
    fn from(e: ValidationError) -> Self {
        HandlerError::Permanent(format!("invalid payload: {e}"))
    }
}

impl From<HandlerError> for queue::JobError {
    fn from(e: HandlerError) -> Self {
        match e {
            HandlerError::Permanent(msg) => queue::JobError::Permanent(msg),
            HandlerError::Retryable(msg) => queue::JobError::Retryable(msg),
            HandlerError::Snooze { after, reason } => queue::JobError::Snooze { after, reason },
            HandlerError::Cancelled => queue::JobError::Cancelled,
        }
    }
}
