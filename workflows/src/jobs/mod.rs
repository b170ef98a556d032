//! One module per job kind.

pub mod alert;
pub mod evaluate;
pub mod ingest;
pub mod notify;
pub mod silence_check;
