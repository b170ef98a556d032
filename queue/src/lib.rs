//! Steadfast's durable Redis queue engine, and its apalis 1.x backend.
//!
//! * [`Engine`] is the whole engine: push (one or many, idempotent), fetch with leases,
//!   outcomes (ack, retry with backoff, dead, snooze, cancel), lease renewal and reaping,
//!   dead-job listing, grouping, requeue and discard, stats, clean-up, the two event streams,
//!   worker heartbeats, circuit breakers shared by every process, and the Redis settings guard. Every state change is one Lua script
//!   that also appends the job event, so there is no state change without its event.
//! * [`RedisBackend`] plugs the engine into apalis: `WorkerBuilder::new("w").backend(..)`.
//!
//! The job lifecycle (states, events, and what moves a job) is documented in
//! `docs/design.md` and mirrored by [`JobState`].

mod backend;
mod blocking;
mod breaker;
mod config;
mod connection;
mod engine;
mod error;
mod events;
mod guard;
mod heartbeat;
mod job;
mod keys;
mod propagation;
mod rate_limit;
mod redact;
mod scripts;
#[cfg(feature = "testing")]
pub mod testing;

pub use backend::{
    InlineRun, InlineStep, InlineWorker, JobContext, JobError, OutcomeLayer, OutcomeService,
    PayloadDecoder, RedisBackend, WorkerCounters, WorkerOptions, decode_json,
};
pub use breaker::{BreakerGate, BreakerPolicy, BreakerStatus};
pub use config::{Durability, EngineConfig};
pub use connection::RedisTopology;
pub use engine::{
    CancelOutcome, DeadFilter, DeadGroup, DeadOpOutcome, Engine, EngineMetrics, FetchRequest,
    Fetched, MAX_RATE_WINDOW, QueueLimits, QueueStats, RenewStatus,
};
pub use error::{QueueError, Result};
pub use events::{
    Consumer, EventCursor, EventStream, Follower, GroupProgress, JobEvent, StreamEntry,
};
pub use guard::RedisGuardReport;
pub use heartbeat::WorkerInfo;
pub use job::{
    Applied, AttemptError, IdempotencyKey, JobProgress, JobRecord, JobState, KeyScope, LeasedJob,
    MAX_LIMIT_KEY_BYTES, MAX_TIMEOUT, NewJob, Outcome, Priority, PushOutcome, RetryPolicy, now_ms,
};
pub use keys::MAX_PARTITIONS;
pub use propagation::{TracePropagator, set_trace_propagator};
pub use rate_limit::{MAX_RATE_KEY_BYTES, RateDecision, RateLimit};
pub use redact::redact_url;
