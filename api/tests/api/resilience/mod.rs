//! The resilience suite: the real `api` and `workers` binaries as separate processes, load
//! through the public API, one fault per scenario, then the books. Each scenario prints its
//! figures. The short form runs with the other tests; `scripts/resilience` runs the long form.

mod books;
mod cluster;
mod load;
mod proxy;

mod api_failover;
mod burst;
mod postgres_cut;
mod receivers;
mod redis_kill;
mod sigterm;
mod worker_kill;
