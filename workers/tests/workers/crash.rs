//! A `workers` process killed with SIGKILL in the middle of the pipeline, and a new one started
//! in its place: nothing is lost, nothing is applied twice.

use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    time::Duration,
};

use entities::{alerts, deliveries, job_attempts, jobs, readings, rules, sensors};
use queue::NewJob;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use testkit::fixtures as testing;
use tokio::process::{Child, Command};

use super::common::{Sql, TestApp, eventually, http_get, readings as batch};

const SENSORS: i64 = 20;
const READINGS_PER_SENSOR: i64 = 200;
const READINGS_PER_JOB: i64 = 10;
const THRESHOLD: f64 = 80.0;
const CLEAR: f64 = 75.0;

/// Ten low readings, then ten high, and so on: an episode per high stretch.
fn value(seq: i64) -> f64 {
    if (seq / 10) % 2 == 1 { 90.0 } else { 50.0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn spawn_worker(app: &TestApp, metrics_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_workers"))
        .args(["--redis-url", &app.redis.url])
        .args(["--prefix", &app.redis.prefix])
        .args(["--database-url", app.db.url()])
        .args(["--worker-id", "crash-test-worker"])
        .args(["--concurrency", "8"])
        .args(["--lease-ms", "400"])
        .args(["--shutdown-grace-secs", "1"])
        .args(["--webhook-timeout-ms", "2000"])
        .args(["--silence-check-secs", "3600"])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("RUST_LOG", "warn")
        .env("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the workers binary")
}

/// What the alerts must be: the episodes found by walking each sensor's readings in the
/// order they were stored (the order `evaluate` sees them).
async fn expected_episodes(app: &TestApp) -> usize {
    let all = readings::Entity::find()
        .order_by_asc(readings::Column::Id)
        .all(app.db())
        .await
        .expect("readings");
    let mut open: HashMap<i64, bool> = HashMap::new();
    let mut episodes = 0;
    for r in all {
        let is_open = open.entry(r.sensor_id).or_default();
        if r.value > THRESHOLD && !*is_open {
            *is_open = true;
            episodes += 1;
        } else if r.value <= CLEAR && *is_open {
            *is_open = false;
        }
    }
    episodes
}

#[tokio::test]
async fn a_worker_killed_mid_pipeline_loses_nothing_and_applies_nothing_twice() {
    let app = TestApp::new(Sql::Postgres, "crash").await;
    for s in 0..SENSORS {
        let sensor = testing::sensor(app.db(), &format!("s{s}")).await;
        let rule = testing::rule(app.db(), sensor.id, "ABOVE", THRESHOLD, CLEAR, 1, 3600).await;
        testing::webhook_for(app.db(), rule.id, &app.receiver.url()).await;
    }
    let mut pushed = 0;
    for chunk in (0..READINGS_PER_SENSOR).step_by(READINGS_PER_JOB as usize) {
        for s in 0..SENSORS {
            let payload = batch(&format!("s{s}"), chunk..chunk + READINGS_PER_JOB, value);
            app.engine
                .push(NewJob::new("ingest", &payload).expect("job"))
                .await
                .expect("push");
            pushed += 1;
        }
    }

    let metrics_port = free_port();
    let mut first = spawn_worker(&app, metrics_port);
    let engine = app.engine.clone();
    eventually(
        Duration::from_secs(60),
        "the first worker to get going",
        || {
            let engine = engine.clone();
            async move {
                let ingest = engine.stats("ingest").await.map_err(|e| e.to_string())?;
                let done = ingest.succeeded_total;
                // Killed while several jobs hold leases, so the kill surely interrupts some.
                (done >= pushed / 10 && ingest.running >= 4)
                    .then_some(())
                    .ok_or(format!("{done} ingested, {} running", ingest.running))
            }
        },
    )
    .await;
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");

    let mut second = spawn_worker(&app, metrics_port);
    let settled = |engine: queue::Engine| async move {
        let mut busy = Vec::new();
        for queue in runtime::QUEUES {
            let s = engine.stats(queue).await.map_err(|e| e.to_string())?;
            if s.dead > 0 {
                let filter = queue::DeadFilter {
                    queue: queue.into(),
                    ..Default::default()
                };
                let dead = engine
                    .dead_jobs(&filter, 0, 10)
                    .await
                    .map_err(|e| e.to_string())?;
                let errors: Vec<_> = dead.iter().map(|d| (&d.payload, &d.errors)).collect();
                panic!("a {queue} job died: {errors:?}");
            }
            if s.ready + s.scheduled + s.running > 0 {
                busy.push(format!("{queue}: {s:?}"));
            }
        }
        busy.is_empty().then_some(()).ok_or(busy.join("; "))
    };
    eventually(Duration::from_secs(120), "the pipeline to drain", || {
        settled(engine.clone())
    })
    .await;

    // Every reading stored once and evaluated: each sensor's cursor is at its last reading.
    let stored = readings::Entity::find()
        .count(app.db())
        .await
        .expect("count");
    assert_eq!(stored, (SENSORS * READINGS_PER_SENSOR) as u64);
    for sensor in sensors::Entity::find()
        .all(app.db())
        .await
        .expect("sensors")
    {
        let last = readings::Entity::find()
            .filter(readings::Column::SensorId.eq(sensor.id))
            .order_by_desc(readings::Column::Id)
            .one(app.db())
            .await
            .expect("last")
            .expect("some");
        assert_eq!(
            sensor.eval_cursor, last.id,
            "sensor {} evaluated to its end",
            sensor.key
        );
    }
    // One alert per breach episode.
    let alerts = alerts::Entity::find().all(app.db()).await.expect("alerts");
    assert_eq!(
        alerts.len(),
        expected_episodes(&app).await,
        "one alert per episode"
    );
    assert_eq!(
        rules::Entity::find().count(app.db()).await.expect("query"),
        SENSORS as u64
    );
    // One distinct delivery key per alert and channel; the receiver saw each key.
    let rows = deliveries::Entity::find()
        .all(app.db())
        .await
        .expect("deliveries");
    let per_alert: HashSet<(Option<i64>, i64)> =
        rows.iter().map(|d| (d.alert_id, d.channel_id)).collect();
    assert_eq!(
        per_alert.len(),
        rows.len(),
        "one delivery per alert and channel"
    );
    assert_eq!(rows.len(), alerts.len());
    assert!(rows.iter().all(|d| d.status == "DELIVERED"));
    let posts = app.receiver.received();
    let keys: HashSet<_> = posts.iter().map(|p| p.idempotency_key.clone()).collect();
    let expected: HashSet<_> = rows.iter().map(|d| d.idempotency_key.clone()).collect();
    assert_eq!(keys, expected, "exactly the recorded keys were posted");
    eprintln!(
        "kill -9 mid-pipeline: {} POSTs for {} deliveries ({} duplicate POSTs, same key)",
        posts.len(),
        keys.len(),
        posts.len() - keys.len()
    );

    // The ledger catches up: every job Redis knows, in the same final state.
    let db = app.db().clone();
    eventually(Duration::from_secs(60), "the ledger to match Redis", || {
        let (db, engine) = (db.clone(), engine.clone());
        async move {
            let ledger = jobs::Entity::find()
                .all(&db)
                .await
                .map_err(|e| e.to_string())?;
            let mut total = 0;
            for queue in runtime::QUEUES {
                total += engine
                    .stats(queue)
                    .await
                    .map_err(|e| e.to_string())?
                    .pushed_total;
            }
            let unfinished = ledger.iter().filter(|j| j.state != "SUCCEEDED").count();
            (ledger.len() as u64 == total && unfinished == 0)
                .then_some(())
                .ok_or(format!(
                    "{} of {total} recorded, {unfinished} unfinished",
                    ledger.len()
                ))
        }
    })
    .await;

    // The kill did catch jobs mid-flight: their leases expired and they ran again.
    let orphaned = job_attempts::Entity::find()
        .filter(job_attempts::Column::Outcome.eq("lease_expired"))
        .count(app.db())
        .await
        .expect("attempts");
    eprintln!("kill -9 mid-pipeline: {orphaned} jobs were running in the killed worker");
    assert!(orphaned > 0, "the kill caught no job in flight");
    let ids: Vec<String> = jobs::Entity::find()
        .all(app.db())
        .await
        .expect("ledger")
        .into_iter()
        .map(|j| j.id)
        .collect();
    let in_redis = app
        .engine
        .jobs(&ids)
        .await
        .expect("jobs")
        .into_iter()
        .flatten()
        .filter(|j| j.errors.iter().any(|e| e.error.contains("lease expired")))
        .count() as u64;
    assert_eq!(
        orphaned, in_redis,
        "the ledger's attempts match the jobs' histories"
    );

    // The survivor serves metrics, and counted its work.
    let metrics = http_get(metrics_port, "/metrics").await;
    for needle in [
        "steadfast_jobs_processed_total{kind=\"ingest\"}",
        "steadfast_job_duration_seconds_bucket{kind=\"evaluate\"",
        "steadfast_queue_depth{queue=\"notify\",state=\"ready\"}",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
    second.start_kill().expect("stop");
    second.wait().await.expect("reaped");
}
