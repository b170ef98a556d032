use entities::{readings, sensors};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use testkit::fixtures as testing;
use workflows::{
    BackgroundJob, HandlerError,
    jobs::ingest::{self, Ingest},
};

use super::env::{Sql, TestEnv, on_both_databases};

fn payload(value: serde_json::Value) -> Ingest {
    workflows::decode_payload(value).expect("valid payload")
}

async fn stores_readings_once_and_enqueues_one_evaluation_per_sensor(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    testing::sensor(env.db(), "boiler").await;
    testing::sensor(env.db(), "pump").await;
    let batch = payload(json!({"readings": [
        {"sensor": "boiler", "ts": "2026-11-21T10:00:00Z", "value": 71.5, "seq": 1},
        {"sensor": "boiler", "ts": "2026-11-21T10:00:05Z", "value": 72.0, "seq": 2},
        {"sensor": "pump", "ts": "2026-11-21T11:00:00+01:00", "value": 3.2}
    ]}));
    let first = ingest::run(env.db(), &env.engine, "01INGEST", &batch)
        .await
        .expect("ingest");
    assert_eq!((first.stored, first.duplicates), (3, 0));
    assert_eq!(first.evaluations.len(), 2);
    assert!(first.evaluations.iter().all(|e| !e.duplicate));
    let evaluate = env
        .engine
        .job(&first.evaluations[0].id)
        .await
        .expect("job")
        .expect("live");
    assert_eq!(evaluate.kind, "evaluate");
    assert_eq!(
        evaluate.workflow_id.as_deref(),
        Some("01INGEST"),
        "part of the ingest's run"
    );
    assert_eq!(env.engine.stats("evaluate").await.expect("stats").ready, 2);

    // Run again (a retry after a crash): nothing stored twice, the waiting evaluations joined.
    let again = ingest::run(env.db(), &env.engine, "01INGEST", &batch)
        .await
        .expect("ingest");
    assert_eq!((again.stored, again.duplicates), (0, 3));
    assert!(again.evaluations.iter().all(|e| e.duplicate));
    assert_eq!(
        again.evaluations.iter().map(|e| &e.id).collect::<Vec<_>>(),
        first.evaluations.iter().map(|e| &e.id).collect::<Vec<_>>()
    );
    assert_eq!(env.engine.stats("evaluate").await.expect("stats").ready, 2);

    // The same instant written with another offset is the same reading (no seq: keyed by time).
    let same_instant = payload(json!({"readings": [
        {"sensor": "pump", "ts": "2026-11-21T10:00:00Z", "value": 3.2}
    ]}));
    let third = ingest::run(env.db(), &env.engine, "01INGEST2", &same_instant)
        .await
        .expect("ingest");
    assert_eq!((third.stored, third.duplicates), (0, 1));
    assert_eq!(
        readings::Entity::find()
            .count(env.db())
            .await
            .expect("count"),
        3
    );
    let boiler = sensors::Entity::find_by_id(1i64)
        .one(env.db())
        .await
        .expect("find")
        .expect("boiler");
    assert_eq!(
        boiler.last_reading_at.map(|t| t.to_rfc3339()),
        Some("2026-11-21T10:00:05+00:00".to_string())
    );
}

async fn an_unknown_sensor_is_a_permanent_error_and_stores_nothing(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    testing::sensor(env.db(), "boiler").await;
    let batch = payload(json!({"readings": [
        {"sensor": "boiler", "ts": "2026-11-21T10:00:00Z", "value": 1.0},
        {"sensor": "ghost-7", "ts": "2026-11-21T10:00:00Z", "value": 1.0}
    ]}));
    let err = ingest::run(env.db(), &env.engine, "01X", &batch)
        .await
        .expect_err("unknown sensor");
    match err {
        HandlerError::Permanent(msg) => assert!(msg.contains("ghost-7"), "{msg}"),
        other => panic!("expected a permanent error, got {other:?}"),
    }
    assert_eq!(
        readings::Entity::find()
            .count(env.db())
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        env.engine
            .stats("evaluate")
            .await
            .expect("stats")
            .pushed_total,
        0
    );
}

#[test]
fn bad_payloads_are_refused_with_the_path_of_the_field() {
    let field = |value: serde_json::Value| {
        workflows::decode_payload::<Ingest>(value)
            .expect_err("invalid")
            .field
    };
    assert_eq!(field(json!({"readings": []})), "readings");
    let too_many: Vec<_> = (0..1001)
        .map(|i| json!({"sensor": "s", "ts": "2026-11-21T10:00:00Z", "value": i}))
        .collect();
    assert_eq!(field(json!({ "readings": too_many })), "readings");
    assert_eq!(
        field(json!({"readings": [{"sensor": "s", "ts": "2026-11-21T10:00:00Z", "value": "hot"}]})),
        "readings.0.value"
    );
    assert_eq!(
        field(json!({"readings": [
            {"sensor": "s", "ts": "2026-11-21T10:00:00Z", "value": 1},
            {"sensor": "s", "ts": "yesterday", "value": 1}
        ]})),
        "readings.1.ts"
    );
    assert_eq!(
        field(json!({"readings": [{"sensor": "", "ts": "2026-11-21T10:00:00Z", "value": 1}]})),
        "readings.0.sensor"
    );
    assert_eq!(
        field(
            json!({"readings": [{"sensor": "s", "ts": "2026-11-21T10:00:00Z", "value": 1, "seq": -1}]})
        ),
        "readings.0.seq"
    );
    // A NUL would fail PostgreSQL's lookup of the key instead of being refused as input.
    assert_eq!(
        field(
            json!({"readings": [{"sensor": "a\u{0}", "ts": "2026-11-21T10:00:00Z", "value": 1}]})
        ),
        "readings.0.sensor"
    );
    assert_eq!(field(json!({"reading": []})), "reading");
    let wrong_version = Ingest::from_version(9, json!({"readings": []})).expect_err("version");
    assert_eq!(wrong_version.field, "payloadVersion");
    let ok = Ingest::from_version(
        Ingest::PAYLOAD_VERSION,
        json!({"readings": [{"sensor": "s", "ts": "2026-11-21T10:00:00Z", "value": 1}]}),
    );
    assert!(ok.is_ok());
}

on_both_databases!(
    stores_readings_once_and_enqueues_one_evaluation_per_sensor,
    an_unknown_sensor_is_a_permanent_error_and_stores_nothing,
);
