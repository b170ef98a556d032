//! Steadfast's worker pools. [`registry`] is the one place that lists the job kinds and wires
//! each to its queue and handler; a process only chooses which queues it runs and how wide.

pub mod args;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use args::{PoolArgs, PoolArgsError};
pub use registry::{Context, PoolConfig, PoolError, QUEUES, run_pools};
