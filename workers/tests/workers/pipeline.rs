use std::time::Duration;

use entities::{alerts, deliveries, jobs, workflow_runs, workflow_steps};
use queue::{EventStream, JobState, NewJob};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use testkit::fixtures as testing;
use workflows::jobs::{evaluate::Evaluate, notify};

use super::common::{Sql, TestApp, eventually, readings};

/// Ingest → evaluate → alert → notify (a signed webhook to a real receiver, and in-app), with
/// the ledger recording it all, on one database.
async fn an_ingest_flows_to_a_signed_webhook_and_the_ledger_matches(sql: Sql) {
    let app = TestApp::new(sql, "pipeline").await;
    let sensor = testing::sensor(app.db(), "boiler").await;
    let rule = testing::rule(app.db(), sensor.id, "ABOVE", 80.0, 75.0, 2, 300).await;
    testing::webhook_for(app.db(), rule.id, &app.receiver.url()).await;
    testing::channel_for(app.db(), rule.id, "in-app", "IN_APP").await;
    // Two recorders, as `--ledger-recorders 2` runs them: between them they record it all once.
    let pools = app.start_pools(|c| c.ledger_recorders = 2);

    let values = [81.0, 85.0, 90.0];
    let batch = readings("boiler", 1..4, |seq| values[seq as usize - 1]);
    let ingest = app
        .engine
        .push(NewJob::new("ingest", &batch).expect("job"))
        .await
        .expect("push")
        .id;

    let db = app.db().clone();
    eventually(Duration::from_secs(20), "both deliveries", || {
        let db = db.clone();
        async move {
            let delivered = deliveries::Entity::find()
                .filter(deliveries::Column::Status.eq("DELIVERED"))
                .count(&db)
                .await
                .map_err(|e| e.to_string())?;
            (delivered == 2)
                .then_some(())
                .ok_or(format!("{delivered} delivered"))
        }
    })
    .await;
    let posts = app.receiver.received();
    assert_eq!(posts.len(), 1, "one POST for one alert on one webhook");
    let post = &posts[0];
    assert_eq!(
        post.signature,
        notify::signature(testing::WEBHOOK_SECRET, &post.body)
    );
    assert!(post.idempotency_key.starts_with("delivery-"));
    let body = post.json();
    assert_eq!(
        (body["type"].as_str(), body["alert"]["state"].as_str()),
        (Some("alert"), Some("OPEN"))
    );

    // Heartbeats: the process lists itself per queue while it runs.
    let listed = app.engine.workers().await.expect("workers");
    for queue in runtime::QUEUES {
        assert!(
            listed.iter().any(|w| w.queues.iter().any(|q| q == queue)),
            "no heartbeat for {queue}: {listed:?}"
        );
    }

    // The ledger catches up with everything that happened: the run is one ingest, its
    // evaluate, one alert job (applying both breaches: the first opens the alert, the second
    // raises it) and two notifies.
    let run = eventually(
        Duration::from_secs(20),
        "the run to finish in the ledger",
        || {
            let (db, ingest) = (db.clone(), ingest.clone());
            async move {
                let run = workflow_runs::Entity::find_by_id(ingest)
                    .one(&db)
                    .await
                    .map_err(|e| e.to_string())?;
                match run {
                    Some(run) if run.state == "SUCCEEDED" => Ok(run),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let steps = workflow_steps::Entity::find()
        .filter(workflow_steps::Column::RunId.eq(&ingest))
        .all(app.db())
        .await
        .expect("steps");
    let mut kinds: Vec<_> = steps.iter().map(|s| s.kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["alert", "evaluate", "ingest", "notify", "notify"],
        "{steps:?}"
    );
    assert_eq!((run.steps_total, run.steps_finished), (5, 5));
    let alert = alerts::Entity::find()
        .one(app.db())
        .await
        .expect("alerts")
        .expect("alert");
    assert_eq!((alert.state.as_str(), alert.count), ("OPEN", 2));

    let ledger_group = app
        .engine
        .group_progress(EventStream::Jobs, workflows::ledger::LEDGER_GROUP)
        .await
        .expect("group progress")
        .expect("the ledger group");
    assert_eq!(
        ledger_group.consumers,
        ["test-0", "test-1"],
        "one consumer per recorder, named after the worker"
    );
    if let Sql::Postgres = sql {
        // The recorders wrote through their own pool, as the binaries run them, so their
        // statements of every shape stay out of the handlers' statement caches.
        let used = recorder_connections_used(app.db()).await;
        assert!(
            (1..=2).contains(&used),
            "{used} of the recorders' connections ran statements"
        );
    }

    pools.stop().await;
    // Every job the ledger holds is in the state Redis says it is in.
    let ledger: Vec<_> = jobs::Entity::find()
        .all(app.db())
        .await
        .expect("ledger")
        .into_iter()
        // The silence tick this process scheduled is not part of the run.
        .filter(|j| j.kind != "silence_check")
        .collect();
    assert_eq!(ledger.len(), 5);
    for row in &ledger {
        let live = app.engine.job(&row.id).await.expect("job").expect("live");
        assert_eq!(row.state, live.state.as_str(), "{}", row.id);
        assert_eq!(live.state, JobState::Succeeded);
    }
}

/// The recorders' connections (named `LEDGER_APPLICATION`) in this database that have run a
/// statement.
async fn recorder_connections_used(db: &sea_orm::DatabaseConnection) -> i64 {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1 AND query <> ''",
        [workflows::ledger::LEDGER_APPLICATION.into()],
    ))
    .await
    .expect("pg_stat_activity")
    .expect("a row")
    .try_get::<i64>("", "n")
    .expect("a count")
}

mod pipeline_to_webhook {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        an_ingest_flows_to_a_signed_webhook_and_the_ledger_matches(Sql::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres() {
        an_ingest_flows_to_a_signed_webhook_and_the_ledger_matches(Sql::Postgres).await;
    }
}

#[tokio::test]
async fn a_payload_version_this_build_cannot_read_goes_dead_with_a_clear_error() {
    let app = TestApp::new(Sql::Postgres, "workers-version").await;
    // The end-of-test check: this job, and only it, is meant to die.
    app.expect_dead(1);
    testing::sensor(app.db(), "boiler").await;
    let future = NewJob::new("evaluate", &serde_json::json!({"sensor": "boiler"}))
        .expect("job")
        .with_payload_version(7);
    let id = app.engine.push(future).await.expect("push").id;
    // Performed as a pool would run it (the kind's decoder, the backend's outcome).
    app.perform::<Evaluate>().await;
    let record = app.engine.job(&id).await.expect("job").expect("kept");
    assert_eq!(record.state, JobState::Dead);
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

/// The process schedules the silence tick by itself; a silent sensor ends as an open alert and
/// a notification, through the pools.
#[tokio::test]
async fn the_pools_schedule_silence_checks_and_a_silent_sensor_raises_an_alert() {
    let app = TestApp::new(Sql::Postgres, "silence-pools").await;
    let sensor = testing::sensor(app.db(), "quiet").await;
    let rule = testing::silence_rule(app.db(), sensor.id, 60).await;
    testing::channel_for(app.db(), rule.id, "in-app", "IN_APP").await;
    let batch = readings("quiet", 1..2, |_| 20.0);
    let ingest = workflows::jobs::ingest::run(
        app.db(),
        &app.engine,
        "run-quiet",
        &workflows::decode_payload(batch).expect("payload"),
    )
    .await
    .expect("ingest");
    assert_eq!(ingest.stored, 1);
    // It arrived two minutes ago, as far as anyone can tell.
    entities::readings::Entity::update_many()
        .col_expr(
            entities::readings::Column::CreatedAt,
            sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::minutes(2)),
        )
        .exec(app.db())
        .await
        .expect("age the reading");
    let pools = app.start_pools(|c| c.silence_every = Duration::from_millis(50));
    let db = app.db().clone();
    let alert = eventually(Duration::from_secs(15), "the silence alert", || {
        let db = db.clone();
        async move {
            let alert = alerts::Entity::find()
                .one(&db)
                .await
                .map_err(|e| e.to_string())?;
            alert.ok_or_else(|| "no alert".to_owned())
        }
    })
    .await;
    eventually(Duration::from_secs(15), "its in-app notification", || {
        let db = db.clone();
        async move {
            let delivered = deliveries::Entity::find()
                .filter(deliveries::Column::Status.eq("DELIVERED"))
                .count(&db)
                .await
                .map_err(|e| e.to_string())?;
            (delivered == 1)
                .then_some(())
                .ok_or(format!("{delivered} delivered"))
        }
    })
    .await;
    pools.stop().await;
    assert_eq!((alert.rule_id, alert.state.as_str()), (rule.id, "OPEN"));
    let ticks = app.engine.stats("silence_check").await.expect("stats");
    assert!(ticks.succeeded_total >= 1);
    assert_eq!(
        alerts::Entity::find().count(app.db()).await.expect("count"),
        1,
        "every later tick finds the same silence: still one alert"
    );
}

/// The retention duty's first pass (at start) analyzes the growing tables exactly when the
/// server's autovacuum would not: what keeps the ledger's look-ups on their indexes.
#[tokio::test]
async fn pools_with_retention_analyze_the_growing_tables_where_autovacuum_is_off() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    use workflows::{retention::RetentionConfig, statistics};

    let app = TestApp::new(Sql::Postgres, "workers-stats").await;
    let autovacuum_off = statistics::autovacuum_on(app.db()).await.expect("setting") == Some(false);
    let pools = app.start_pools(|c| {
        c.retention = Some((RetentionConfig::default(), Duration::from_secs(600)));
    });
    let analyzed = || async {
        let row = app
            .db()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_stat_user_tables \
                 WHERE relname = 'workflow_steps' AND last_analyze IS NOT NULL",
            ))
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no row")?;
        row.try_get::<i64>("", "n").map_err(|e| e.to_string())
    };
    if autovacuum_off {
        eventually(
            Duration::from_secs(10),
            "workflow_steps analyzed",
            || async {
                match analyzed().await? {
                    1 => Ok(()),
                    n => Err(format!("{n} analyzed")),
                }
            },
        )
        .await;
    } else {
        // The first pass runs at start; give it the time it takes, then nothing was analyzed.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(analyzed().await, Ok(0), "autovacuum on: left to the server");
    }
    pools.stop().await;
}
