//! One module per job kind.

pub mod evaluate;
pub mod ingest;
