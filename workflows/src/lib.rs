//! Steadfast's job kinds and their handlers: the sensor pipeline
//! `ingest → evaluate → alert → notify`. One module per kind under [`jobs`]; each has a typed,
//! validated payload, a kind name that never changes, its policy, and a handler whose core
//! logic tests call directly.

pub mod job;
pub mod jobs;
pub mod ledger;
pub mod retention;
pub mod schedules;
pub mod statistics;

pub use job::{BackgroundJob, HandlerError, JobPolicy, ValidationError, decode_payload, run_of};
