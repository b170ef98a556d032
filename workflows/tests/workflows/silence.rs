use std::time::Duration;

use chrono::Utc;
use entities::{alerts, readings};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::json;
use testkit::fixtures as testing;
use workflows::jobs::{
    alert::{self, Alert, Change},
    evaluate::{self, Evaluate},
    ingest,
    silence_check::{self, SilenceCheck},
};

use super::env::{Sql, TestEnv, on_both_databases};

async fn ingest_one(env: &TestEnv, seq: i64) {
    let batch: ingest::Ingest = workflows::decode_payload(json!({"readings": [
        {"sensor": "pump", "ts": Utc::now().to_rfc3339(), "value": 1.0, "seq": seq}
    ]}))
    .expect("payload");
    ingest::run(env.db(), &env.engine, &format!("run-{seq}"), &batch)
        .await
        .expect("ingest");
}

/// Makes every reading of the sensor look as if it arrived `ago` earlier.
async fn age_readings(env: &TestEnv, ago: chrono::Duration) {
    readings::Entity::update_many()
        .col_expr(readings::Column::CreatedAt, Expr::value(Utc::now() - ago))
        .exec(env.db())
        .await
        .expect("age readings");
}

async fn check(env: &TestEnv) -> Vec<queue::PushOutcome> {
    silence_check::run(env.db(), &env.engine, &SilenceCheck { tick_ms: 0 })
        .await
        .expect("silence check")
}

async fn a_silent_sensor_raises_one_alert_and_its_next_reading_clears_it(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let sensor = testing::sensor(env.db(), "pump").await;
    let rule = testing::silence_rule(env.db(), sensor.id, 60).await;
    // A sensor that never reported is not silent: there is nothing to measure from.
    assert!(check(&env).await.is_empty());
    ingest_one(&env, 1).await;
    assert!(check(&env).await.is_empty(), "a fresh reading: not silent");

    age_readings(&env, chrono::Duration::seconds(120)).await;
    let raised = check(&env).await;
    assert_eq!(raised.len(), 1);
    assert!(!raised[0].duplicate);
    let again = check(&env).await;
    assert!(again[0].duplicate, "the same silence is one alert job");
    let job = env
        .engine
        .job(&raised[0].id)
        .await
        .expect("query")
        .expect("exists");
    let signal: Alert = serde_json::from_str(&job.payload).expect("alert payload");
    assert_eq!((signal.rule, signal.breach), (rule.id, true));
    let opened = alert::run(env.db(), &env.engine, &signal)
        .await
        .expect("alert");
    assert_eq!(opened.change, Change::Opened);

    // The sensor speaks again: evaluation clears the silence.
    ingest_one(&env, 2).await;
    let evaluated = evaluate::run(
        env.db(),
        &env.engine,
        &Evaluate {
            sensor: "pump".into(),
        },
    )
    .await
    .expect("evaluate");
    assert_eq!((evaluated.breaches, evaluated.clears), (0, 1));
    let job = env
        .engine
        .job(&evaluated.alerts[0].id)
        .await
        .expect("query")
        .expect("query");
    let clear: Alert = serde_json::from_str(&job.payload).expect("alert payload");
    let resolved = alert::run(env.db(), &env.engine, &clear)
        .await
        .expect("clear");
    assert_eq!(resolved.change, Change::Resolved);
    let alert = alerts::Entity::find()
        .filter(alerts::Column::RuleId.eq(rule.id))
        .one(env.db())
        .await
        .expect("query")
        .expect("query");
    assert_eq!(alert.state, "RESOLVED");
    assert!(check(&env).await.is_empty(), "not silent any more");
}

async fn every_process_scheduling_a_tick_makes_one_job(_sql: Sql) {
    let env = TestEnv::new(Sql::Postgres, "wf").await;
    let every = Duration::from_secs(3600);
    let first = silence_check::schedule_tick(&env.engine, every)
        .await
        .expect("query");
    let second = silence_check::schedule_tick(&env.engine, every)
        .await
        .expect("query");
    assert!(!first.duplicate);
    assert_eq!(
        (second.id.as_str(), second.duplicate),
        (first.id.as_str(), true)
    );
    let stats = env
        .engine
        .stats(<SilenceCheck as workflows::BackgroundJob>::KIND)
        .await
        .expect("query");
    assert_eq!(stats.ready, 1);
}

on_both_databases!(a_silent_sensor_raises_one_alert_and_its_next_reading_clears_it);

mod ticks {
    #[tokio::test]
    async fn every_process_scheduling_a_tick_makes_one_job() {
        super::every_process_scheduling_a_tick_makes_one_job(super::Sql::Postgres).await;
    }
}
