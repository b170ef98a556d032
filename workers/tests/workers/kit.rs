//! The test kit's own promises, against the real Redis and both databases: `perform` runs a
//! job through the production adapter, `assert_enqueued` sees what a handler pushed, `drain`
//! runs the pipeline to rest (waiting for retries exactly until they fall due), and the
//! end-of-test check fails a test whose job died unexpectedly.

use queue::{Applied, JobState, NewJob, Outcome};
use testkit::{Reply, fixtures as testing, on_both_databases};
use workflows::{
    BackgroundJob,
    jobs::{evaluate::Evaluate, ingest::Ingest, notify::Notify},
};

use super::common::{Sql, TestApp, readings};

async fn perform_and_drain_run_the_pipeline_to_rest(sql: Sql) {
    let app = TestApp::new(sql, "kit").await;
    let sensor = testing::sensor(app.db(), "boiler").await;
    let rule = testing::rule(app.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, 300).await;
    testing::webhook_for(app.db(), rule.id, &app.receiver.url()).await;
    // The receiver fails the first POST: the delivery is retried after its backoff.
    app.receiver.script([Reply::Status(500)]);
    let batch = readings("boiler", 1..2, |_| 90.0);
    app.engine
        .push(NewJob::new("ingest", &batch).expect("job"))
        .await
        .expect("push");

    let ingest = app.perform::<Ingest>().await;
    assert!(
        matches!(ingest.outcome, Outcome::Succeeded { .. }),
        "{:?}",
        ingest.outcome
    );
    assert_eq!(ingest.applied, Applied::Ok);
    let (evaluate, _) = app
        .assert_enqueued::<Evaluate>(|job| job.sensor == "boiler")
        .await;
    assert_eq!(
        evaluate.max_attempts,
        <Evaluate as BackgroundJob>::policy().retry.max_attempts,
        "pushed with its kind's attempts"
    );

    let drained = app.drain().await;
    assert_eq!(drained.count("evaluate", "succeeded"), 1, "{drained:?}");
    assert_eq!(drained.count("alert", "succeeded"), 1, "{drained:?}");
    assert_eq!(drained.count("notify", "retry"), 1, "{drained:?}");
    assert_eq!(drained.count("notify", "succeeded"), 1, "{drained:?}");
    assert_eq!(
        app.receiver.received().len(),
        2,
        "the failed POST, then the retry"
    );
    app.refute_enqueued::<Notify>(|_| true).await;
    for queue in runtime::QUEUES {
        let stats = app.engine.stats(queue).await.expect("stats");
        assert_eq!(
            (stats.ready, stats.scheduled, stats.running, stats.dead),
            (0, 0, 0, 0),
            "{queue} at rest"
        );
    }
}

async fn a_payload_perform_cannot_decode_dies_through_the_adapter(sql: Sql) {
    let app = TestApp::new(sql, "kit-bad").await;
    app.expect_dead(1);
    let bad = NewJob::new("evaluate", &serde_json::json!({"sensor": 7})).expect("job");
    let id = app.engine.push(bad).await.expect("push").id;
    let run = app.perform::<Evaluate>().await;
    assert_eq!(run.job.id, id);
    assert!(
        matches!(&run.outcome, Outcome::Fail { error } if error.contains("does not decode")),
        "{:?}",
        run.outcome
    );
    let record = app.engine.job(&id).await.expect("job").expect("kept");
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(app.dead_jobs().await, 1);
}

on_both_databases!(
    perform_and_drain_run_the_pipeline_to_rest,
    a_payload_perform_cannot_decode_dies_through_the_adapter
);

#[tokio::test]
#[should_panic(expected = "1 jobs died and the test expected 0")]
async fn the_end_of_test_check_fails_a_test_whose_job_died_unexpectedly() {
    let app = TestApp::new(Sql::Sqlite, "kit-unexpected").await;
    let bad = NewJob::new("evaluate", &serde_json::json!({"sensor": 7})).expect("job");
    app.engine.push(bad).await.expect("push");
    app.perform::<Evaluate>().await;
    // Every assertion of the test passed; the app's check at the end still fails it.
}

#[tokio::test]
async fn drain_leaves_a_paused_queue_s_jobs_waiting_and_says_so() {
    let app = TestApp::new(Sql::Sqlite, "kit-paused").await;
    testing::sensor(app.db(), "vat").await;
    app.engine.pause("ingest").await.expect("pause");
    app.engine
        .push(NewJob::new("ingest", &readings("vat", 1..3, |_| 20.0)).expect("job"))
        .await
        .expect("push");
    let held = app.drain().await;
    assert_eq!(held.held.get("ingest"), Some(&1), "{held:?}");
    assert_eq!(held.count("ingest", "succeeded"), 0, "a pause holds it");

    app.engine.resume("ingest").await.expect("resume");
    let drained = app.drain().await;
    assert!(drained.held.is_empty(), "{drained:?}");
    assert_eq!(drained.count("ingest", "succeeded"), 1, "{drained:?}");
}
