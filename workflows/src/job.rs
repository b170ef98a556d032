//! What every job kind declares, and how payloads are decoded and validated.

use std::time::Duration;

use queue::RetryPolicy;
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

/// How a kind runs: its retries and its lease (visibility timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobPolicy {
    pub retry: RetryPolicy,
    pub visibility_timeout: Duration,
}

/// One job kind: a serde payload with a kind name that never changes (renaming the type must
/// not orphan queued jobs), its payload schema version, and its policy.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The queue and kind name. Never change it.
    const KIND: &'static str;
    /// The payload schema version written now. Handlers accept this one and the previous one,
    /// so workers can be upgraded one by one with jobs in flight.
    const PAYLOAD_VERSION: u32;

    fn policy() -> JobPolicy;

    /// Checks what serde cannot (ranges, formats, lengths).
    fn validate(&self) -> Result<(), ValidationError>;

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

    /// Whether the previous payload version still decodes into this type (set it when a change
    /// keeps old payloads readable, e.g. a new optional field).
    const ACCEPTS_PREVIOUS: bool = false;

    /// Reads a payload written at `version`. The default accepts only the current version;
    /// a kind whose payload changed overrides it to also accept the previous one.
    fn from_version(version: u32, payload: serde_json::Value) -> Result<Self, ValidationError> {
        Self::check_version(version)?;
        decode_payload(payload)
    }
}

/// Decodes a JSON payload and validates it; errors name the path of the offending field.
pub fn decode_payload<J: Job>(payload: serde_json::Value) -> Result<J, ValidationError> {
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
    /// receiver's `Retry-After`).
    #[error("snoozed for {after:?}: {reason}")]
    Snooze { after: Duration, reason: String },
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
            HandlerError::Snooze { after, reason } => {
                tracing::info!(?after, %reason, "job snoozed");
                queue::JobError::Snooze(after)
            }
        }
    }
}
