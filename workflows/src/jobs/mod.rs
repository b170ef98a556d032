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

/// The kind a queue name stands for: the kind itself, or a kind that was once called so (its
/// [`BackgroundJob::ALIASES`]), whose old queue is drained by the same handler.
pub fn kind_named(name: &str) -> Option<&'static str> {
    fn of<J: BackgroundJob>(name: &str) -> Option<&'static str> {
        J::answers_to(name).then_some(J::KIND)
    }
    of::<ingest::Ingest>(name)
        .or_else(|| of::<evaluate::Evaluate>(name))
        .or_else(|| of::<alert::Alert>(name))
        .or_else(|| of::<notify::Notify>(name))
        .or_else(|| of::<silence_check::SilenceCheck>(name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_kind_answers_to_its_own_name_and_nothing_else_does() {
        for kind in super::KINDS {
            assert_eq!(super::kind_named(kind), Some(kind));
        }
        assert_eq!(super::kind_named("ingests"), None);
        assert_eq!(super::kind_named(""), None);
    }
}
