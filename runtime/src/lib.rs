//! Steadfast's worker runtime, shared by the `workers` binary and `api --with-workers`.
//! [`registry`] is the one place that lists the job kinds and wires each to its queue and
//! handler (one generic registration per kind); a process only chooses which queues it runs
//! and how wide. [`perform`] runs one job through the same adapter, in the caller's task.

pub mod args;
pub mod metrics;
pub mod mqtt;
pub mod perform;
pub mod registry;

pub use args::{PoolArgs, PoolArgsError};
pub use perform::{PerformError, Performed, perform, perform_next};
pub use registry::{
    Context, KindVisitor, Perform, PoolConfig, PoolError, QUEUES, for_kind, run_pools,
};
