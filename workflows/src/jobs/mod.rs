//! One module per job kind, and the one list of them.

pub mod alert;
pub mod evaluate;
pub mod ingest;
pub mod notify;
pub mod silence_check;

use queue::NewJob;

use crate::{BackgroundJob, ValidationError, decode_payload};

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

/// The kinds a client or a schedule may submit (`silence_check` is the workers' own).
pub const SUBMITTABLE: [&str; 4] = [
    ingest::Ingest::KIND,
    evaluate::Evaluate::KIND,
    alert::Alert::KIND,
    notify::Notify::KIND,
];

/// The job a client or a schedule submits: `payload` decoded and checked as `kind`'s, with the
/// kind's version and attempts. An ingest gets an id of its own, which also names the
/// workflow run it starts. Errors name the field: `kind`, or `payload...` (the dotted path).
pub fn submission(kind: &str, payload: serde_json::Value) -> Result<NewJob, ValidationError> {
    fn typed<J: BackgroundJob>(payload: serde_json::Value) -> Result<NewJob, ValidationError> {
        let job: J = decode_payload(payload).map_err(|e| {
            let field = if e.field == "payload" {
                e.field
            } else {
                format!("payload.{}", e.field)
            };
            ValidationError::new(field, e.message)
        })?;
        job.to_submission()
            .map_err(|e| ValidationError::new("payload", e.to_string()))
    }
    match kind_named(kind) {
        Some(ingest::Ingest::KIND) => Ok(starting_a_run(typed::<ingest::Ingest>(payload)?)),
        Some(evaluate::Evaluate::KIND) => typed::<evaluate::Evaluate>(payload),
        Some(alert::Alert::KIND) => typed::<alert::Alert>(payload),
        Some(notify::Notify::KIND) => typed::<notify::Notify>(payload),
        Some(other) => Err(ValidationError::new(
            "kind",
            format!(
                "{other} jobs are the workers' own; submit one of {}",
                SUBMITTABLE.join(", ")
            ),
        )),
        None => Err(ValidationError::new(
            "kind",
            format!(
                "no kind is named {kind:?}; the kinds are {}",
                SUBMITTABLE.join(", ")
            ),
        )),
    }
}

/// What a job of `kind` with `payload` is about, to find it by (the ledger's `subject`): the
/// sensor of an evaluate or alert, of an ingest whose readings are all of one sensor, and
/// `channel:<id>` for a notify.
pub fn subject_of(kind: &str, payload: &serde_json::Value) -> Option<String> {
    match kind_named(kind)? {
        evaluate::Evaluate::KIND | alert::Alert::KIND => {
            payload.get("sensor")?.as_str().map(str::to_owned)
        }
        ingest::Ingest::KIND => {
            let mut sensors = payload
                .get("readings")?
                .as_array()?
                .iter()
                .map(|r| r.get("sensor").and_then(|s| s.as_str()));
            let first = sensors.next()??;
            sensors.all(|s| s == Some(first)).then(|| first.to_owned())
        }
        notify::Notify::KIND => Some(format!("channel:{}", payload.get("channel")?.as_i64()?)),
        _ => None,
    }
}

/// An ingest's push under an id chosen here, which also names the workflow run it starts (and
/// rides on every job of that run). Every ingest push site goes through it.
pub fn ingest_submission(batch: &ingest::Ingest) -> Result<NewJob, queue::QueueError> {
    Ok(starting_a_run(batch.to_submission()?))
}

fn starting_a_run(job: NewJob) -> NewJob {
    let id = ulid::Ulid::new().to_string();
    job.with_id(&id).with_workflow_id(&id)
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

    #[test]
    fn a_job_is_found_by_its_sensor_or_channel() {
        use serde_json::json;
        let subject = super::subject_of;
        assert_eq!(
            subject("evaluate", &json!({"sensor": "boiler"})),
            Some("boiler".into())
        );
        assert_eq!(
            subject("notify", &json!({"channel": 7})),
            Some("channel:7".into())
        );
        let one = json!({"readings": [{"sensor": "a"}, {"sensor": "a"}]});
        assert_eq!(subject("ingest", &one), Some("a".into()));
        let two = json!({"readings": [{"sensor": "a"}, {"sensor": "b"}]});
        assert_eq!(
            subject("ingest", &two),
            None,
            "a mixed batch is about no one sensor"
        );
        assert_eq!(subject("silence_check", &json!({"tick_ms": 1})), None);
    }
}
