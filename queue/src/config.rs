use std::time::Duration;

/// Settings of one deployment's engine. Every process of a deployment uses the same prefix.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Key prefix, carried as a `{prefix}` hash tag. Tests use one of their own.
    pub prefix: String,
    /// How long a time-scoped idempotency key holds.
    pub idempotency_ttl: Duration,
    /// Hard cap of each event stream: at the cap, pushes are refused with a retryable error.
    pub stream_cap: u64,
    /// Entries younger than this are kept for subscriptions that resume from a cursor.
    pub resume_window: Duration,
    /// Finished jobs' data is kept this long ...
    pub completed_retention: Duration,
    /// ... and at most this many per queue.
    pub completed_max: u64,
    /// Jobs pushed per round trip.
    pub push_chunk: usize,
    /// Due scheduled jobs promoted per fetch call.
    pub promote_chunk: usize,
    /// Expired leases reaped per fetch call.
    pub reap_chunk: usize,
    /// Jobs removed per clean-up call.
    pub cleanup_chunk: usize,
    /// A command that gets no answer in this time fails (Redis down, network cut).
    pub response_timeout: Duration,
    /// How much longer a high-priority job counts as having waited than a normal one (and a
    /// normal one than a low one): fetch leases the head that has waited longest by that
    /// count, so a lower level is never starved: it waits at most this long per level behind
    /// a steady stream of higher ones.
    pub priority_aging: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            prefix: "steadfast".into(),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            stream_cap: 5_000_000,
            resume_window: Duration::from_secs(600),
            completed_retention: Duration::from_secs(3600),
            completed_max: 100_000,
            push_chunk: 1000,
            promote_chunk: 1000,
            reap_chunk: 500,
            cleanup_chunk: 1000,
            response_timeout: Duration::from_secs(5),
            priority_aging: Duration::from_secs(60),
        }
    }
}

impl EngineConfig {
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}
