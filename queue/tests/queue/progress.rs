//! Progress: a running attempt reports a percent and a message; it shows on the job (for that
//! attempt only) and as a `progress` event, and a stale lease cannot report.

use std::time::Duration;

use queue::{EventStream, JobEvent, JobState, Outcome};

use super::common::TestQueue;

#[tokio::test]
async fn a_running_attempt_reports_progress_that_shows_on_the_job_and_in_the_stream() {
    let t = TestQueue::new("progress").await;
    let id = t.push_payload("work", "{}").await;
    let leased = t.lease("work", 1, 60_000).await;
    let token = leased[0].token.clone();

    assert!(
        t.engine
            .report_progress(&id, &token, 40, "copied 4 of 10 files")
            .await
            .expect("report")
    );
    let record = t.engine.job(&id).await.expect("job").expect("live");
    let progress = record.progress.expect("progress");
    assert_eq!(
        (
            progress.percent,
            progress.message.as_str(),
            progress.attempt
        ),
        (40, "copied 4 of 10 files", 1)
    );
    assert!(
        !t.engine
            .report_progress(&id, "0.stale", 50, "not mine")
            .await
            .expect("report"),
        "a token that is not the lease's writes nothing"
    );
    assert!(
        t.engine
            .report_progress(&id, &token, 250, &"x".repeat(500))
            .await
            .expect("report")
    );
    let record = t.engine.job(&id).await.expect("job").expect("live");
    let progress = record.progress.expect("progress");
    assert_eq!(
        (progress.percent, progress.message.len()),
        (100, 200),
        "clamped"
    );

    let events: Vec<JobEvent> = t
        .engine
        .read_stream(EventStream::Jobs, "0-0", 100)
        .await
        .expect("events")
        .iter()
        .filter_map(JobEvent::from_entry)
        .collect();
    let reported: Vec<_> = events.iter().filter(|e| e.event == "progress").collect();
    assert_eq!(reported.len(), 2);
    assert_eq!(reported[0].state, JobState::Running);
    assert_eq!(
        reported[0].progress,
        Some((40, "copied 4 of 10 files".to_owned()))
    );

    // The next attempt shows none until it reports its own.
    t.engine
        .complete(&[(
            id.clone(),
            token.clone(),
            Outcome::Retry {
                error: "flaky".into(),
                delay: Duration::ZERO,
            },
        )])
        .await
        .expect("retry");
    let again = t.lease("work", 1, 60_000).await;
    assert_eq!(again[0].attempt, 2);
    let record = t.engine.job(&id).await.expect("job").expect("live");
    assert_eq!(record.progress, None);
    assert!(
        !t.engine
            .report_progress(&id, &token, 10, "the old attempt")
            .await
            .expect("report"),
        "the first attempt's token no longer reports"
    );
}
