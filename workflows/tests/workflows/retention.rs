use std::time::Duration;

use chrono::Utc;
use entities::{job_attempts, jobs, readings};
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set, sea_query::Expr};
use serde_json::json;
use testkit::fixtures as testing;
use workflows::{
    jobs::{
        evaluate::{self, Evaluate},
        ingest,
    },
    retention::{self, RetentionConfig},
};

use super::env::{Sql, TestEnv, on_both_databases};

async fn ledger_row(env: &TestEnv, id: &str, finished_days_ago: Option<i64>) {
    let at = |days: i64| Utc::now() - chrono::Duration::days(days);
    jobs::ActiveModel {
        id: Set(id.into()),
        kind: Set("ingest".into()),
        queue: Set("ingest".into()),
        state: Set(if finished_days_ago.is_some() {
            "SUCCEEDED"
        } else {
            "RUNNING"
        }
        .into()),
        attempt: Set(1),
        round: Set(0),
        max_attempts: Set(3),
        priority: Set("normal".into()),
        payload: Set(json!({})),
        result: Set(None),
        last_error: Set(None),
        idempotency_key: Set(None),
        subject: Set(None),
        workflow_run_id: Set(None),
        run_at: Set(None),
        last_event_id: Set("0".into()),
        created_at: Set(at(60)),
        updated_at: Set(at(60)),
        finished_at: Set(finished_days_ago.map(at)),
    }
    .insert(env.db())
    .await
    .expect("job row");
    job_attempts::ActiveModel {
        job_id: Set(id.into()),
        round: Set(0),
        attempt: Set(1),
        worker: Set(None),
        started_at: Set(at(60)),
        ended_at: Set(None),
        outcome: Set(None),
        error: Set(None),
        ..Default::default()
    }
    .insert(env.db())
    .await
    .expect("attempt row");
}

async fn old_rows_go_in_bounded_batches_and_unevaluated_readings_stay(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    testing::sensor(env.db(), "old").await;
    let readings_json: Vec<_> = (0..30)
        .map(|i| json!({"sensor": "old", "ts": format!("2026-01-01T00:00:{i:02}Z"), "value": 1, "seq": i}))
        .collect();
    let batch: ingest::Ingest =
        workflows::decode_payload(json!({ "readings": readings_json[..20] })).expect("payload");
    ingest::run(env.db(), &env.engine, "run-1", &batch)
        .await
        .expect("ingest");
    evaluate::run(
        env.db(),
        &env.engine,
        &Evaluate {
            sensor: "old".into(),
        },
    )
    .await
    .expect("evaluate");
    let late: ingest::Ingest =
        workflows::decode_payload(json!({ "readings": readings_json[20..] })).expect("payload");
    ingest::run(env.db(), &env.engine, "run-2", &late)
        .await
        .expect("ingest");
    readings::Entity::update_many()
        .col_expr(
            readings::Column::CreatedAt,
            Expr::value(Utc::now() - chrono::Duration::days(100)),
        )
        .exec(env.db())
        .await
        .expect("age");
    for i in 0..9 {
        ledger_row(&env, &format!("old-{i}"), Some(40)).await;
    }
    ledger_row(&env, "recent", Some(1)).await;
    ledger_row(&env, "running", None).await;

    let config = RetentionConfig {
        ledger: Some(Duration::from_secs(30 * 86_400)),
        readings: Some(Duration::from_secs(90 * 86_400)),
        batch: 7,
    };
    let swept = retention::sweep(env.db(), &config).await.expect("sweep");
    assert_eq!((swept.jobs, swept.readings), (9, 20));
    // 9 jobs in 7 + 2, 20 readings in 7 + 7 + 6.
    assert_eq!(swept.batches, 5);
    let left: Vec<_> = jobs::Entity::find()
        .all(env.db())
        .await
        .expect("query")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(
        job_attempts::Entity::find()
            .count(env.db())
            .await
            .expect("query"),
        2,
        "attempts went with their jobs"
    );
    assert_eq!(
        readings::Entity::find()
            .count(env.db())
            .await
            .expect("query"),
        10,
        "readings not yet evaluated are kept, however old"
    );
    let again = retention::sweep(env.db(), &config).await.expect("sweep");
    assert_eq!((again.jobs, again.readings), (0, 0));
}

on_both_databases!(old_rows_go_in_bounded_batches_and_unevaluated_readings_stay);
