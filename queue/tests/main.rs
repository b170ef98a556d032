//! Integration tests of the queue engine against a real Redis (`REDIS_URL`, default
//! redis://127.0.0.1:6379). Each test works under its own key prefix and deletes it after.

mod queue {
    mod breaker;
    mod cluster;
    pub mod common;
    mod durability;
    mod engine_ops;
    mod lifecycle_property;
    mod limits;
    mod limits_property;
    mod partitions;
    mod priorities;
    mod progress;
    mod propagation;
    mod queue_controls;
    mod refusals;
    mod streams;
    mod worker;
}
