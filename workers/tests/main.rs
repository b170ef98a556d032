//! The pools run the pipeline: an ingest job pushed to Redis ends as an open alert in SQL and a
//! notify job per channel, through real apalis workers, on SQLite.

use std::time::Duration;

use entities::alerts;
use migration::testing::TestDb;
use queue::{JobState, NewJob, testing::TestPrefix};
use sea_orm::EntityTrait;
use workers::{Context, PoolConfig};
use workflows::testing;

#[tokio::test]
async fn an_ingest_job_flows_to_an_alert_and_its_notifications() {
    let db = TestDb::migrated_sqlite().await;
    let redis = TestPrefix::new("workers").await;
    let engine = redis.engine.clone();
    let sensor = testing::sensor(db.db(), "boiler").await;
    let rule = testing::rule(db.db(), sensor.id, "ABOVE", 80.0, 75.0, 2, 300).await;
    testing::channel_for(db.db(), rule.id, "ops", "IN_APP").await;
    testing::channel_for(db.db(), rule.id, "app", "IN_APP").await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pools = tokio::spawn(workers::run_pools(
        Context {
            db: db.db().clone(),
            engine: engine.clone(),
        },
        PoolConfig {
            queues: workers::QUEUES.iter().map(|q| (*q).to_owned()).collect(),
            concurrency: 4,
            shutdown_grace: Duration::from_millis(500),
            worker_id: "test".into(),
        },
        async move {
            let _ = stopped.await;
            Ok(())
        },
    ));

    let ingest = NewJob::new(
        "ingest",
        &serde_json::json!({"readings": [
            {"sensor": "boiler", "ts": "2026-11-21T08:00:00Z", "value": 81.0, "seq": 1},
            {"sensor": "boiler", "ts": "2026-11-21T08:01:00Z", "value": 85.0, "seq": 2},
            {"sensor": "boiler", "ts": "2026-11-21T08:02:00Z", "value": 90.0, "seq": 3}
        ]}),
    )
    .expect("job");
    let pushed = engine.push(ingest).await.expect("push");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (alert, notify_ready) = loop {
        let alert = alerts::Entity::find()
            .all(db.db())
            .await
            .expect("alerts")
            .into_iter()
            .next();
        let notify_ready = engine.stats("notify").await.expect("stats").ready;
        let alert_stats = engine.stats("alert").await.expect("stats");
        if alert.as_ref().is_some_and(|a| a.count == 2)
            && notify_ready == 2
            && alert_stats.succeeded_total == 2
        {
            break (alert, notify_ready);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pipeline did not finish: {alert:?}, notify ready {notify_ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    pools.await.expect("join").expect("pools stop cleanly");

    let alert = alert.expect("alert");
    assert_eq!(alert.state, "OPEN");
    assert_eq!(alert.workflow_run_id.as_deref(), Some(pushed.id.as_str()));
    assert_eq!(notify_ready, 2, "one notify job per channel, once");
    let ingest_job = engine.job(&pushed.id).await.expect("job").expect("live");
    assert_eq!(ingest_job.state, JobState::Succeeded);
    for queue in ["ingest", "evaluate", "alert"] {
        let stats = engine.stats(queue).await.expect("stats");
        assert_eq!(
            (stats.ready, stats.running, stats.dead),
            (0, 0, 0),
            "{queue} drained cleanly"
        );
    }
}

#[tokio::test]
async fn a_payload_version_this_build_cannot_read_goes_dead_with_a_clear_error() {
    let db = TestDb::migrated_sqlite().await;
    let redis = TestPrefix::new("workers-version").await;
    let engine = redis.engine.clone();
    testing::sensor(db.db(), "boiler").await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pools = tokio::spawn(workers::run_pools(
        Context {
            db: db.db().clone(),
            engine: engine.clone(),
        },
        PoolConfig {
            queues: vec!["evaluate".into()],
            concurrency: 2,
            shutdown_grace: Duration::from_millis(500),
            worker_id: "test-version".into(),
        },
        async move {
            let _ = stopped.await;
            Ok(())
        },
    ));
    let future = NewJob::new("evaluate", &serde_json::json!({"sensor": "boiler"}))
        .expect("job")
        .with_payload_version(7);
    let id = engine.push(future).await.expect("push").id;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let record = loop {
        let record = engine.job(&id).await.expect("job").expect("live");
        if record.state == JobState::Dead {
            break record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            record.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    pools.await.expect("join").expect("pools stop cleanly");
    assert_eq!(
        record.attempt, 1,
        "not retried: retrying cannot make it readable"
    );
    let error = record.last_error.unwrap_or_default();
    assert!(
        error.contains("payloadVersion") && error.contains('7'),
        "{error}"
    );
}
