//! The worker pools against the real Redis, SQL databases, a real webhook receiver and the real
//! `workers` binary: the whole pipeline, delivery failures, crashes and the ledger.

mod workers {
    mod binary;
    mod cli;
    pub mod common;
    mod crash;
    mod delivery;
    mod judged;
    mod kit;
    mod mqtt;
    mod pipeline;
    mod schedules;
}
