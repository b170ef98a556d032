//! The API through real HTTP and websockets, against the real Redis, SQLite and PostgreSQL.

mod api {
    mod abuse;
    mod access;
    mod auth;
    mod binary;
    pub mod common;
    mod degraded;
    mod fuzz;
    mod jobs;
    mod limits;
    mod manage;
    mod queues;
    mod resilience;
    mod rest;
    mod rest_operations;
    mod schedules;
    mod schema;
    mod subscriptions;
    mod telemetry;
}
