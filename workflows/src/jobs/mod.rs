//! One module per job kind, and the one list of them.

pub mod alert;
pub mod evaluate;
pub mod ingest;
pub mod notify;
pub mod silence_check;

use crate::BackgroundJob;

/// Every kind this build runs, each its own queue. The workers register one pool per entry,
/// and a test holds the API's `JobKind` and the web app's list to it.
pub const KINDS: [&str; 5] = [
    ingest::Ingest::KIND,
    evaluate::Evaluate::KIND,
    alert::Alert::KIND,
    notify::Notify::KIND,
    silence_check::SilenceCheck::KIND,
];
