//! The job model shared by producers, workers and readers of the engine.

use std::{collections::HashMap, fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

/// The one job lifecycle (see `docs/design.md`): each state names where the job is in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// In the ready list.
    Queued,
    /// In the scheduled set: pushed with a future run time, or snoozed.
    Scheduled,
    /// Leased by a worker.
    Running,
    /// In the scheduled set after a retryable failure or an expired lease.
    Retrying,
    Succeeded,
    /// In the dead set, with its history and error fingerprint.
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Scheduled => "SCHEDULED",
            JobState::Running => "RUNNING",
            JobState::Retrying => "RETRYING",
            JobState::Succeeded => "SUCCEEDED",
            JobState::Dead => "DEAD",
            JobState::Cancelled => "CANCELLED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

/// How soon a job runs among the ready jobs of its queue. A higher level is leased first;
/// aging (`EngineConfig::priority_aging`) bounds how long a lower one can wait behind it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// In the order they are leased.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// As the job hash stores it (`pr`): normal is stored as nothing.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Priority::High => "h",
            Priority::Normal => "",
            Priority::Low => "l",
        }
    }

    pub(crate) fn from_code(code: Option<&str>) -> Self {
        match code {
            Some("h") => Priority::High,
            Some("l") => Priority::Low,
            _ => Priority::Normal,
        }
    }

    /// The part of the queue's key that holds its ready jobs of this level.
    pub(crate) fn ready_part(self) -> &'static str {
        match self {
            Priority::High => "ready:h",
            Priority::Normal => "ready",
            Priority::Low => "ready:l",
        }
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Priority::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown priority {s:?}: name high, normal or low"))
    }
}

/// How long an idempotency key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    /// For a time (the engine default, 24 h, when `None`).
    For(Option<Duration>),
    /// Only while the job waits: released when it starts (or is cancelled), so a second
    /// request for work that is already waiting joins it.
    WhileWaiting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub scope: KeyScope,
}

/// A job to push. Built with [`NewJob::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub(crate) id: Option<String>,
    pub queue: String,
    pub kind: String,
    /// The payload, already JSON.
    pub payload: String,
    pub payload_version: u32,
    pub max_attempts: u32,
    pub priority: Priority,
    /// Unix milliseconds; `None` or a past time means now.
    pub run_at_ms: Option<u64>,
    pub idempotency: Option<IdempotencyKey>,
    pub workflow_id: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_context: Option<String>,
    /// How long one attempt may run; `None`: the kind's (the worker's) timeout, if any.
    pub timeout: Option<Duration>,
    /// What the queue's per-key concurrency and rate limits count this job under (a sensor,
    /// a webhook host).
    pub limit_key: Option<String>,
}

/// The longest execution timeout a job may ask for.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);
/// The longest limit key accepted (it names Redis keys).
pub const MAX_LIMIT_KEY_BYTES: usize = 200;

impl NewJob {
    /// A job of `kind` on the queue of the same name.
    pub fn new(kind: impl Into<String>, payload: &impl Serialize) -> crate::Result<Self> {
        let kind = kind.into();
        Ok(Self::raw(
            kind.clone(),
            kind,
            serde_json::to_string(payload).map_err(crate::QueueError::Encode)?,
        ))
    }

    /// A job whose payload is already JSON text.
    pub fn raw(queue: impl Into<String>, kind: impl Into<String>, payload: String) -> Self {
        Self {
            id: None,
            queue: queue.into(),
            kind: kind.into(),
            payload,
            payload_version: 1,
            max_attempts: 25,
            priority: Priority::Normal,
            run_at_ms: None,
            idempotency: None,
            workflow_id: None,
            correlation_id: None,
            trace_context: None,
            timeout: None,
            limit_key: None,
        }
    }

    /// Pushes under a known id (a requeue from the SQL record after Redis lost the job).
    /// If a job with this id exists, the push is a duplicate.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
    pub fn with_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }
    pub fn with_payload_version(mut self, version: u32) -> Self {
        self.payload_version = version;
        self
    }
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    pub fn with_run_at_ms(mut self, run_at_ms: u64) -> Self {
        self.run_at_ms = Some(run_at_ms);
        self
    }
    pub fn with_delay(self, delay: Duration) -> Self {
        self.with_run_at_ms(now_ms() + delay.as_millis() as u64)
    }
    pub fn with_idempotency_key(mut self, key: impl Into<String>, scope: KeyScope) -> Self {
        self.idempotency = Some(IdempotencyKey {
            key: key.into(),
            scope,
        });
        self
    }
    pub fn with_workflow_id(mut self, id: impl Into<String>) -> Self {
        self.workflow_id = Some(id.into());
        self
    }
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }
    pub fn with_trace_context(mut self, context: impl Into<String>) -> Self {
        self.trace_context = Some(context.into());
        self
    }
    /// Each attempt may run at most `timeout` (overrides the kind's).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    pub fn with_limit_key(mut self, key: impl Into<String>) -> Self {
        self.limit_key = Some(key.into());
        self
    }

    pub(crate) fn validate(&self) -> crate::Result<()> {
        let invalid = |why: &str| Err(crate::QueueError::InvalidJob(why.to_owned()));
        if !valid_name(&self.queue) {
            return invalid("queue name must be 1-64 characters of [A-Za-z0-9_.-]");
        }
        if self.kind.is_empty() || self.kind.len() > 64 {
            return invalid("kind must be 1-64 characters");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if let Some(key) = &self.idempotency
            && (key.key.is_empty() || key.key.len() > 512)
        {
            return invalid("idempotency key must be 1-512 characters");
        }
        if let Some(id) = &self.id
            && !valid_name(id)
        {
            return invalid("job id must be 1-64 characters of [A-Za-z0-9_.-]");
        }
        if let Some(timeout) = self.timeout
            && (timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT)
        {
            return invalid("timeout must be from 1 ms to 7 days");
        }
        if let Some(key) = &self.limit_key
            && (key.is_empty() || key.len() > MAX_LIMIT_KEY_BYTES)
        {
            return invalid("limit key must be 1-200 bytes");
        }
        Ok(())
    }

    /// Correlation id and trace context travel together as one small JSON field (`x`).
    pub(crate) fn extra_json(&self) -> String {
        JobExtra {
            cid: self.correlation_id.clone(),
            tc: self.trace_context.clone(),
        }
        .encode()
    }
}

/// The job hash's `x` field: what a job carries beside its payload, rarely set.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct JobExtra {
    pub cid: Option<String>,
    pub tc: Option<String>,
}

impl JobExtra {
    /// Empty when there is nothing to carry, so the common job stores no `x` at all.
    pub fn encode(&self) -> String {
        if self.cid.is_none() && self.tc.is_none() {
            return String::new();
        }
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn decode(raw: Option<&str>) -> Self {
        raw.filter(|r| !r.is_empty())
            .and_then(|r| serde_json::from_str(r).ok())
            .unwrap_or_default()
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// What a push returned: the job's id, and whether an existing job answered for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    pub id: String,
    pub duplicate: bool,
}

/// One failed attempt in a job's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    pub error: String,
    /// Unix milliseconds.
    pub at: u64,
}

/// How far a running attempt said it had got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobProgress {
    /// 0 to 100.
    pub percent: u8,
    pub message: String,
    /// The attempt that reported it.
    pub attempt: u32,
}

/// A job as Redis holds it while it is live (and for the retention window after).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub state: JobState,
    pub payload: String,
    pub payload_version: u32,
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: Priority,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub run_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    pub died_at_ms: Option<u64>,
    pub last_error: Option<String>,
    pub errors: Vec<AttemptError>,
    pub fingerprint: Option<String>,
    pub result: Option<String>,
    pub idempotency_key: Option<String>,
    pub workflow_id: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_context: Option<String>,
    pub cancel_requested: bool,
    pub leased_by: Option<String>,
    /// How many times an operator requeued it from dead.
    pub requeues: u32,
    /// Its own execution timeout, when it has one (else the kind's applies).
    pub timeout_ms: Option<u64>,
    /// When the running attempt must end (Unix ms), when it has a timeout.
    pub attempt_deadline_ms: Option<u64>,
    pub limit_key: Option<String>,
    /// Queued, but waiting for a running job of its limit key to end.
    pub waiting_for_key: bool,
    /// The latest progress its current (or last) attempt reported.
    pub progress: Option<JobProgress>,
    /// Stream id of the event that finished the job (succeeded or cancelled): clean-up waits
    /// until every consumer group has read past it.
    pub final_event_id: Option<String>,
}

impl JobRecord {
    pub(crate) fn from_hash(id: &str, mut h: HashMap<String, String>) -> Option<Self> {
        let state: JobState = h.get("st")?.parse().ok()?;
        let num =
            |h: &HashMap<String, String>, k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        let extra = JobExtra::decode(h.get("x").map(String::as_str));
        let errors = h
            .get("errs")
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or_default();
        Some(Self {
            id: id.to_owned(),
            queue: h.remove("q")?,
            kind: h.remove("k")?,
            state,
            payload: h.remove("p").unwrap_or_default(),
            payload_version: num(&h, "v").unwrap_or(1) as u32,
            attempt: num(&h, "a").unwrap_or(0) as u32,
            max_attempts: num(&h, "ma").unwrap_or(1) as u32,
            priority: Priority::from_code(h.get("pr").map(String::as_str)),
            created_at_ms: num(&h, "ca").unwrap_or(0),
            updated_at_ms: num(&h, "ua").or(num(&h, "ca")).unwrap_or(0),
            run_at_ms: num(&h, "ra"),
            finished_at_ms: matches!(state, JobState::Succeeded | JobState::Cancelled)
                .then(|| num(&h, "ua"))
                .flatten(),
            died_at_ms: num(&h, "da"),
            last_error: h.remove("err"),
            errors,
            fingerprint: h.remove("fp"),
            result: h.remove("res"),
            idempotency_key: h.remove("ik"),
            workflow_id: h.remove("wf"),
            correlation_id: extra.cid,
            trace_context: extra.tc,
            cancel_requested: state == JobState::Running && h.get("cr").is_some_and(|v| v == "1"),
            leased_by: h.remove("lb"),
            requeues: num(&h, "rnd").unwrap_or(0) as u32,
            timeout_ms: num(&h, "to"),
            attempt_deadline_ms: (state == JobState::Running)
                .then(|| num(&h, "dl"))
                .flatten(),
            waiting_for_key: state == JobState::Queued && h.get("kw").is_some_and(|v| v == "1"),
            limit_key: h.remove("lk"),
            progress: num(&h, "pg")
                .zip(num(&h, "pga"))
                .filter(|(_, of)| *of == num(&h, "a").unwrap_or(0))
                .map(|(percent, attempt)| JobProgress {
                    percent: percent.min(100) as u8,
                    message: h.remove("pgm").unwrap_or_default(),
                    attempt: attempt as u32,
                }),
            final_event_id: h.remove("le"),
        })
    }
}

/// Retry policy of a kind: how many attempts, and exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 25,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the delay before the attempt after `attempt` (1-based): base·2^(attempt-1), capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let base = self.backoff_base.as_millis() as u64;
        let ceiling = base.saturating_mul(1u64 << exp);
        Duration::from_millis(ceiling.min(self.backoff_cap.as_millis() as u64))
    }

    /// Full jitter: uniform in [0, ceiling].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How a handler's attempt ended, as the engine applies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded {
        result: Option<String>,
    },
    /// Retryable: the next attempt runs after `delay` unless attempts are exhausted.
    Retry {
        error: String,
        delay: Duration,
    },
    /// Permanent: straight to dead.
    Fail {
        error: String,
    },
    /// Run again after `delay`; the attempt is given back. `reason` (may be empty) is the
    /// job's last error meanwhile, and rides on its `snoozed` event.
    Snooze {
        delay: Duration,
        reason: String,
    },
    Cancelled,
    /// Given back unstarted or unfinished at shutdown; the attempt is given back.
    Release,
}

impl Outcome {
    /// The outcome's name in logs and test reports.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Succeeded { .. } => "succeeded",
            Outcome::Retry { .. } => "retry",
            Outcome::Fail { .. } => "dead",
            Outcome::Snooze { .. } => "snooze",
            Outcome::Cancelled => "cancelled",
            Outcome::Release => "released",
        }
    }
}

/// Whether the engine applied an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Ok,
    /// A retry that found no attempts left: the job died.
    Died,
    /// The lease token no longer matched (the job was reaped and maybe leased again): refused.
    Stale,
    Missing,
}

/// A job leased to a worker: its payload and the token that proves the lease.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub id: String,
    pub token: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub kind: String,
    pub payload: String,
    pub payload_version: u32,
    pub workflow_id: Option<String>,
    pub correlation_id: Option<String>,
    pub trace_context: Option<String>,
    pub created_at_ms: u64,
    /// How long this attempt may run (its own or its kind's timeout).
    pub timeout: Option<Duration>,
}
