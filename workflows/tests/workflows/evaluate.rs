use std::time::Duration;

use chrono::{Duration as ChronoDuration, TimeZone, Utc};
use entities::{alert_signals, alerts, sensors};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::json;
use testkit::fixtures as testing;
use workflows::BackgroundJob;
use workflows::{
    HandlerError,
    jobs::{
        alert::{self, Alert, Change},
        evaluate::{self, Evaluate},
        ingest,
    },
};

use super::env::{Sql, TestEnv, on_both_databases};

async fn sensor_with_rule(
    env: &TestEnv,
    key: &str,
    kind: &str,
    threshold: f64,
    clear: f64,
    n: i32,
) -> i64 {
    let sensor = testing::sensor(env.db(), key).await;
    testing::rule(env.db(), sensor.id, kind, threshold, clear, n, 300)
        .await
        .id
}

async fn evaluate_sensor(env: &TestEnv, key: &str) -> evaluate::Evaluated {
    evaluate::run(env.db(), &env.engine, &Evaluate { sensor: key.into() })
        .await
        .expect("evaluate")
}

/// Ingests `values` one minute apart, starting at minute `start`, numbered from `start`.
async fn ingest_values(env: &TestEnv, key: &str, start: i64, values: &[f64]) {
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 21, 8, 0, 0)
        .single()
        .expect("time");
    let readings: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let minute = start + i as i64;
            json!({"sensor": key, "ts": (t0 + ChronoDuration::minutes(minute)).to_rfc3339(), "value": v, "seq": minute})
        })
        .collect();
    let batch: ingest::Ingest =
        workflows::decode_payload(json!({ "readings": readings })).expect("payload");
    ingest::run(env.db(), &env.engine, &format!("run-{key}-{start}"), &batch)
        .await
        .expect("ingest");
}

async fn alert_payloads(env: &TestEnv, outcomes: &[queue::PushOutcome]) -> Vec<(bool, f64)> {
    let mut out = Vec::new();
    for o in outcomes {
        let job = env.engine.job(&o.id).await.expect("job").expect("live");
        let p: serde_json::Value = serde_json::from_str(&job.payload).expect("json");
        out.push((
            p["breach"].as_bool().expect("breach"),
            p["reading"].as_f64().expect("reading"),
        ));
    }
    out
}

/// The signals the evaluations recorded for `rule`, in reading order: (breach, reading).
async fn signals_of(env: &TestEnv, rule: i64) -> Vec<(bool, f64)> {
    alert_signals::Entity::find()
        .filter(alert_signals::Column::RuleId.eq(rule))
        .order_by_asc(alert_signals::Column::ReadingId)
        .all(env.db())
        .await
        .expect("signals")
        .into_iter()
        .map(|s| (s.breach, s.reading_id as f64))
        .collect()
}

async fn thresholds_need_n_readings_and_clear_with_hysteresis(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = sensor_with_rule(&env, "boiler", "ABOVE", 80.0, 75.0, 3).await;
    // Two above the threshold: not yet an alert (the rule wants three in a row).
    ingest_values(&env, "boiler", 0, &[81.0, 82.0]).await;
    let first = evaluate_sensor(&env, "boiler").await;
    assert_eq!((first.evaluated, first.breaches, first.clears), (2, 0, 0));
    // The third in a row breaches, counting the two from the earlier run; the fourth raises the
    // count; 78 is inside the hysteresis band (no clear); 74 clears; 70 changes nothing.
    ingest_values(&env, "boiler", 2, &[83.0, 84.0, 78.0, 74.0, 70.0]).await;
    let second = evaluate_sensor(&env, "boiler").await;
    assert_eq!(
        (second.evaluated, second.breaches, second.clears),
        (5, 2, 1)
    );
    assert_eq!(
        signals_of(&env, rule).await,
        vec![(true, 3.0), (true, 4.0), (false, 6.0)],
        "reading ids in insertion order"
    );
    assert_eq!(
        alert_payloads(&env, &second.alerts).await,
        vec![(false, 6.0)],
        "one alert job for the rule: its last signal's"
    );
    let job = env
        .engine
        .job(&second.alerts[0].id)
        .await
        .expect("job")
        .expect("live");
    assert_eq!(
        job.workflow_id.as_deref(),
        Some("run-boiler-2"),
        "the alert job belongs to its reading's run"
    );
    assert!(job.payload.contains(&format!("\"rule\":{rule}")));
    // That one job applies all three signals, in order: opened, raised, resolved.
    let payload: Alert = serde_json::from_str(&job.payload).expect("alert payload");
    let applied = alert::run(env.db(), &env.engine, &payload)
        .await
        .expect("alert");
    assert_eq!(applied.change, Change::Resolved);
    assert_eq!(applied.notifications.len(), 0, "the rule has no channels");
    let alert = alerts::Entity::find()
        .one(env.db())
        .await
        .expect("alerts")
        .expect("one alert");
    assert_eq!(
        (alert.state.as_str(), alert.count, alert.opened_reading_id),
        ("RESOLVED", 2, 3)
    );
    // Nothing new: nothing evaluated, nothing enqueued.
    let third = evaluate_sensor(&env, "boiler").await;
    assert_eq!(third, evaluate::Evaluated::default());
    let sensor = sensors::Entity::find_by_id(1i64)
        .one(env.db())
        .await
        .expect("find")
        .expect("sensor");
    assert_eq!(sensor.eval_cursor, 7);
    assert_eq!(
        env.engine.stats("alert").await.expect("stats").pushed_total,
        1
    );
}

async fn rate_of_change_breaches_and_clears(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = sensor_with_rule(&env, "tank", "RATE_OF_CHANGE", 5.0, 2.0, 1).await;
    ingest_values(&env, "tank", 0, &[10.0, 11.0, 30.0, 31.0]).await;
    let done = evaluate_sensor(&env, "tank").await;
    assert_eq!((done.breaches, done.clears), (1, 1));
    assert_eq!(
        signals_of(&env, rule).await,
        vec![(true, 3.0), (false, 4.0)]
    );
    assert_eq!(alert_payloads(&env, &done.alerts).await, vec![(false, 4.0)]);
}

async fn two_racing_evaluations_apply_once(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = sensor_with_rule(&env, "race", "ABOVE", 50.0, 40.0, 2).await;
    let values: Vec<f64> = (0..200)
        .map(|i| if (i / 5) % 2 == 0 { 60.0 } else { 30.0 })
        .collect();
    ingest_values(&env, "race", 0, &values).await;
    let payload = Evaluate {
        sensor: "race".into(),
    };
    let (a, b) = tokio::join!(
        evaluate::run(env.db(), &env.engine, &payload),
        evaluate::run(env.db(), &env.engine, &payload)
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(
        a.evaluated + b.evaluated,
        200,
        "every reading evaluated exactly once"
    );
    let winner = if a.evaluated > 0 { &a } else { &b };
    // 20 runs of five readings above 50: each breaches on its 2nd..5th reading, and clears at the
    // first reading of the next low run (except after the last high run).
    assert_eq!((winner.breaches, winner.clears), (80, 20));
    assert_eq!(signals_of(&env, rule).await.len(), 100, "each signal once");
    let distinct = env.engine.stats("alert").await.expect("stats").pushed_total;
    assert_eq!(
        distinct, 1,
        "one job for the rule, and a lost race enqueues nothing twice"
    );
    let sensor = sensors::Entity::find_by_id(1i64)
        .one(env.db())
        .await
        .expect("find")
        .expect("sensor");
    assert_eq!(sensor.eval_cursor, 200);
}

/// Ingests of one sensor racing with its evaluations: no reading may commit behind the cursor
/// (under a smaller id than one already evaluated), or it would never be evaluated.
async fn ingests_racing_evaluations_never_leave_a_reading_behind(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    // Every reading breaches: each one evaluated yields exactly one signal.
    let rule = sensor_with_rule(&env, "busy", "ABOVE", 0.0, -1.0, 1).await;
    const WRITERS: i64 = 8;
    const BATCHES: i64 = 10;
    const PER_BATCH: i64 = 20;
    let payload = Evaluate {
        sensor: "busy".into(),
    };
    let writers = (0..WRITERS).map(|w| {
        let env = &env;
        async move {
            for b in 0..BATCHES {
                let start = (w * BATCHES + b) * PER_BATCH;
                ingest_values(env, "busy", start, &vec![1.0; PER_BATCH as usize]).await;
            }
        }
    });
    let evaluator = async {
        for _ in 0..40 {
            evaluate::run(env.db(), &env.engine, &payload)
                .await
                .expect("evaluate");
            tokio::task::yield_now().await;
        }
    };
    tokio::join!(futures::future::join_all(writers), evaluator);
    evaluate::run(env.db(), &env.engine, &payload)
        .await
        .expect("final evaluate");
    let signals = alert_signals::Entity::find()
        .filter(alert_signals::Column::RuleId.eq(rule))
        .count(env.db())
        .await
        .expect("signals");
    assert_eq!(
        signals,
        (WRITERS * BATCHES * PER_BATCH) as u64,
        "every reading evaluated exactly once"
    );
}

#[tokio::test]
async fn evaluating_an_unknown_sensor_is_permanent() {
    let env = TestEnv::new(Sql::Sqlite, "wf").await;
    let err = evaluate::run(
        env.db(),
        &env.engine,
        &Evaluate {
            sensor: "nope".into(),
        },
    )
    .await
    .expect_err("unknown");
    assert!(
        matches!(err, HandlerError::Permanent(ref m) if m.contains("nope")),
        "{err:?}"
    );
}

/// An evaluation that leaves readings for later pushes its follow-up the one way every kind
/// is pushed: with the kind's attempts (10, not the engine's default 25) and its while-waiting
/// key, so the follow-up and an ingest's evaluation for the same sensor are one job.
async fn the_follow_up_evaluation_carries_its_kinds_attempts_and_key(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    sensor_with_rule(&env, "busy", "ABOVE", 1e9, 1e9, 1).await;
    let per_batch = ingest::MAX_READINGS as i64;
    let batches = evaluate::MAX_READINGS_PER_RUN as i64 / per_batch + 1;
    for b in 0..batches {
        ingest_values(&env, "busy", b * per_batch, &vec![1.0; per_batch as usize]).await;
    }
    let lease = |engine: queue::Engine| async move {
        engine
            .fetch(&queue::FetchRequest {
                queue: Evaluate::KIND,
                worker_id: "w-test",
                max_jobs: 10,
                lease: Duration::from_secs(30),
                backoff_base: Duration::ZERO,
                backoff_cap: Duration::ZERO,
                timeout: None,
                timeout_grace: Duration::ZERO,
            })
            .await
            .expect("fetch")
            .jobs
    };
    // The ingests' evaluation (one for the sensor, whatever the number of ingests), leased.
    let first = lease(env.engine.clone()).await;
    assert_eq!(first.len(), 1, "one waiting evaluation per sensor");
    let evaluated = evaluate_sensor(&env, "busy").await;
    assert!(evaluated.more, "readings are left for a follow-up");
    let follow_up = lease(env.engine.clone()).await;
    assert_eq!(follow_up.len(), 1);
    assert_eq!(
        follow_up[0].max_attempts,
        Evaluate::policy().retry.max_attempts,
        "the kind's attempts"
    );
    let record = env
        .engine
        .job(&follow_up[0].id)
        .await
        .expect("job")
        .expect("record");
    assert_eq!(record.idempotency_key.as_deref(), Some("sensor:busy"));
}

on_both_databases!(
    the_follow_up_evaluation_carries_its_kinds_attempts_and_key,
    thresholds_need_n_readings_and_clear_with_hysteresis,
    rate_of_change_breaches_and_clears,
    two_racing_evaluations_apply_once,
    ingests_racing_evaluations_never_leave_a_reading_behind,
);
