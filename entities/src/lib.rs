//! Steadfast's SQL schema as sea-orm 2 entities (one module per table), and the connection to
//! the database: SQLite (the embedded default) or PostgreSQL (production). The tables are
//! created by the `migration` crate; these modules only describe them.

pub mod db;

pub mod alert_signals;
pub mod alerts;
pub mod audit_log;
pub mod channels;
pub mod dead_jobs;
pub mod deliveries;
pub mod devices;
pub mod job_attempts;
pub mod jobs;
pub mod ledger_quarantine;
pub mod manage;
pub mod readings;
pub mod refresh_tokens;
pub mod rule_channels;
pub mod rules;
pub mod schedules;
pub mod sensors;
pub mod states;
pub mod users;
pub mod workflow_runs;
pub mod workflow_steps;

pub use db::{Backend, DbError, begin_write, connect, connect_bulk_writer};
