//! The job ledger: the SQL record of every job, its attempts, dead jobs and workflow runs.
//!
//! The [`Recorder`] consumes the engine's job-event stream through a Redis consumer group and
//! writes what it read in one transaction per batch, acknowledging the entries only after the
//! commit. Any number of processes may run it; the group shares the entries out, and a
//! recorder that dies has its entries taken over. Handlers never wait on it.
//!
//! Recording is idempotent: a job row remembers the last event applied to it, and an event at
//! or before that changes nothing, so a batch redelivered after a crash is harmless.

mod recorder;
mod requeue;

pub use recorder::{
    LEDGER_APPLICATION, LEDGER_GROUP, LedgerError, Recorder, RecorderConfig, sortable_event_id,
};
pub use requeue::{RequeueFromLedger, requeue_dead};

/// The workflow every run of the sensor pipeline belongs to.
pub const SENSOR_PIPELINE: &str = "sensor_pipeline";
