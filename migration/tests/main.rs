//! Migrations and the schema's constraints on both databases: a temporary SQLite file and a
//! fresh PostgreSQL database per test (`TEST_POSTGRES_URL`, default
//! postgres://postgres@127.0.0.1:5432/test), dropped afterwards.

use chrono::Utc;
use entities::{alerts, job_attempts, jobs, readings, rules, sensors};
use migration::{Migrator, MigratorTrait, testing::TestDb};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, Set, Statement,
};
use testkit::{Sql, on_both_databases};

const TABLES: [&str; 18] = [
    "ledger_quarantine",
    "users",
    "devices",
    "refresh_tokens",
    "sensors",
    "channels",
    "rules",
    "rule_channels",
    "readings",
    "alerts",
    "deliveries",
    "workflow_runs",
    "workflow_steps",
    "jobs",
    "job_attempts",
    "dead_jobs",
    "audit_log",
    "alert_signals",
];

const INDEXES: [&str; 23] = [
    "idx_ledger_quarantine_stream_id",
    "idx_alerts_sensor",
    "uq_alert_signals_rule_reading_breach",
    "idx_alert_signals_applied_by",
    "idx_alerts_state_opened",
    "idx_audit_log_at",
    "idx_dead_jobs_died",
    "idx_dead_jobs_kind_fingerprint",
    "idx_deliveries_alert",
    "idx_job_attempts_started",
    "idx_jobs_kind_created",
    "idx_jobs_state_updated",
    "idx_jobs_updated",
    "idx_jobs_workflow_run",
    "idx_readings_created_at",
    "idx_readings_sensor_id",
    "idx_readings_sensor_ts",
    "idx_refresh_tokens_family",
    "idx_rules_sensor",
    "idx_workflow_runs_created",
    "idx_workflow_steps_run",
    "uq_job_attempts_job_round_attempt",
    "uq_readings_sensor_natural_key",
];

async fn index_names(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index'",
        _ => "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'",
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("indexes")
        .iter()
        .filter_map(|row| row.try_get::<String>("", "name").ok())
        .collect()
}

async fn table_names(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        _ => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        }
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("tables")
        .iter()
        .filter_map(|row| row.try_get::<String>("", "name").ok())
        .collect()
}

async fn migrations_apply_roll_back_and_apply_again(sql: Sql) {
    let fresh = sql.fresh().await;
    let db = fresh.db();
    Migrator::up(db, None).await.expect("up");
    let tables = table_names(db).await;
    for table in TABLES {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    let indexes = index_names(db).await;
    for index in INDEXES {
        assert!(
            indexes.iter().any(|i| i == index),
            "{index} missing from {indexes:?}"
        );
    }
    assert!(
        Migrator::get_pending_migrations(db)
            .await
            .expect("pending")
            .is_empty()
    );
    Migrator::up(db, None).await.expect("up again is a no-op");
    Migrator::down(db, None).await.expect("down");
    let left = table_names(db).await;
    for table in TABLES {
        assert!(
            !left.iter().any(|t| t == table),
            "{table} left after down: {left:?}"
        );
    }
    Migrator::up(db, None).await.expect("up after down");

    // On a large table an operator builds migration 000019's index beforehand (CONCURRENTLY);
    // the migration must then find it in place rather than fail.
    // 000019 and every migration after it.
    let from_19 = Migrator::migrations().len() as u32 - 18;
    Migrator::down(db, Some(from_19))
        .await
        .expect("down to before 000019");
    assert!(
        !index_names(db)
            .await
            .iter()
            .any(|i| i == "idx_readings_sensor_id")
    );
    db.execute_unprepared("CREATE INDEX idx_readings_sensor_id ON readings (sensor_id, id)")
        .await
        .expect("index built by hand");
    Migrator::up(db, None)
        .await
        .expect("up finds the index in place");
}

fn now() -> chrono::DateTime<Utc> {
    Utc::now()
}

async fn new_sensor(db: &DatabaseConnection, key: &str) -> sensors::Model {
    sensors::ActiveModel {
        key: Set(key.into()),
        name: Set(format!("{key} sensor")),
        unit: Set("°C".into()),
        device_id: Set(None),
        eval_cursor: Set(0),
        last_reading_at: Set(None),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("sensor")
}

fn reading(sensor: i64, natural_key: &str) -> readings::ActiveModel {
    readings::ActiveModel {
        sensor_id: Set(sensor),
        ts: Set(now()),
        value: Set(21.5),
        seq: Set(None),
        natural_key: Set(natural_key.into()),
        ingest_job_id: Set("01JOB".into()),
        created_at: Set(now()),
        ..Default::default()
    }
}

fn alert(rule: i64, sensor: i64, open_key: Option<String>) -> alerts::ActiveModel {
    alerts::ActiveModel {
        rule_id: Set(rule),
        sensor_id: Set(sensor),
        state: Set(if open_key.is_some() {
            "OPEN"
        } else {
            "RESOLVED"
        }
        .into()),
        open_key: Set(open_key),
        count: Set(1),
        opened_reading_id: Set(1),
        last_reading_id: Set(1),
        workflow_run_id: Set(None),
        opened_at: Set(now()),
        updated_at: Set(now()),
        resolved_at: Set(None),
        acknowledged_by: Set(None),
        acknowledged_at: Set(None),
        last_notified_at: Set(None),
        last_notified_reading_id: Set(None),
        ..Default::default()
    }
}

/// The natural keys the handlers rely on for exactly-once effects hold on this database.
async fn natural_keys_are_enforced(sql: Sql) {
    let fresh = sql.fresh().await;
    let db = fresh.db();
    Migrator::up(db, None).await.expect("up");
    let sensor = new_sensor(db, "boiler-1").await;
    reading(sensor.id, "seq:1")
        .insert(db)
        .await
        .expect("first reading");
    assert!(
        reading(sensor.id, "seq:1").insert(db).await.is_err(),
        "a reading is stored once per sensor and natural key"
    );
    let other = new_sensor(db, "boiler-2").await;
    reading(other.id, "seq:1")
        .insert(db)
        .await
        .expect("same seq, other sensor");

    let rule = rules::ActiveModel {
        sensor_id: Set(sensor.id),
        kind: Set("ABOVE".into()),
        threshold: Set(Some(80.0)),
        clear_threshold: Set(Some(75.0)),
        for_readings: Set(3),
        silence_seconds: Set(None),
        throttle_seconds: Set(300),
        enabled: Set(true),
        in_breach: Set(false),
        evaluated_to: Set(0),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("rule");
    let open_key = format!("{}:{}", rule.id, sensor.id);
    alert(rule.id, sensor.id, Some(open_key.clone()))
        .insert(db)
        .await
        .expect("open alert");
    assert!(
        alert(rule.id, sensor.id, Some(open_key))
            .insert(db)
            .await
            .is_err(),
        "one open alert per rule and sensor"
    );
    alert(rule.id, sensor.id, None)
        .insert(db)
        .await
        .expect("resolved alerts do not collide");
    alert(rule.id, sensor.id, None)
        .insert(db)
        .await
        .expect("resolved alerts do not collide");

    jobs::ActiveModel {
        id: Set("01JOBA".into()),
        kind: Set("ingest".into()),
        queue: Set("ingest".into()),
        state: Set("RUNNING".into()),
        attempt: Set(1),
        round: Set(0),
        max_attempts: Set(5),
        priority: Set("low".into()),
        payload: Set(serde_json::json!({"readings": []})),
        result: Set(None),
        last_error: Set(None),
        idempotency_key: Set(None),
        subject: Set(None),
        workflow_run_id: Set(None),
        run_at: Set(None),
        last_event_id: Set("1-0".into()),
        created_at: Set(now()),
        updated_at: Set(now()),
        finished_at: Set(None),
    }
    .insert(db)
    .await
    .expect("job");
    let attempt = || job_attempts::ActiveModel {
        job_id: Set("01JOBA".into()),
        round: Set(0),
        attempt: Set(1),
        worker: Set(Some("w1".into())),
        started_at: Set(now()),
        ended_at: Set(None),
        outcome: Set(None),
        error: Set(None),
        ..Default::default()
    };
    attempt().insert(db).await.expect("attempt");
    assert!(
        attempt().insert(db).await.is_err(),
        "an attempt is recorded once"
    );
    let stored = jobs::Entity::find_by_id("01JOBA".to_string())
        .one(db)
        .await
        .expect("find")
        .expect("job row");
    assert_eq!(
        stored.payload,
        serde_json::json!({"readings": []}),
        "JSON round-trips"
    );
}

/// Every table's columns (name, type, nullability, default) and indexes, as the database
/// reports them, in a stable order: the snapshot shows any schema change for review, beside the
/// GraphQL SDL's.
async fn describe_schema(db: &DatabaseConnection) -> String {
    let backend = db.get_database_backend();
    let rows = |sql: String| async move {
        db.query_all_raw(Statement::from_string(backend, sql))
            .await
            .expect("schema query")
    };
    let text = |row: &sea_orm::QueryResult, column: &str| {
        row.try_get::<Option<String>>("", column)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let mut out = String::new();
    for table in table_names(db).await {
        if table == "seaql_migrations" || table.starts_with("sqlite_") {
            continue;
        }
        out.push_str(&format!("table {table}\n"));
        let (columns, indexes) = match backend {
            DbBackend::Sqlite => (
                format!(
                    "SELECT name, type AS data_type, CASE WHEN \"notnull\" = 1 THEN 'not null' ELSE 'null' END AS nullable, dflt_value AS dflt FROM pragma_table_info('{table}') ORDER BY cid"
                ),
                format!(
                    "SELECT name, sql AS def FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' AND sql IS NOT NULL ORDER BY name"
                ),
            ),
            _ => (
                format!(
                    "SELECT column_name AS name, data_type, CASE WHEN is_nullable = 'NO' THEN 'not null' ELSE 'null' END AS nullable, column_default AS dflt FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
                ),
                format!(
                    "SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = 'public' AND tablename = '{table}' ORDER BY indexname"
                ),
            ),
        };
        for row in rows(columns).await {
            let default = text(&row, "dflt");
            out.push_str(&format!(
                "  {} {} {}{}\n",
                text(&row, "name"),
                text(&row, "data_type"),
                text(&row, "nullable"),
                if default.is_empty() {
                    String::new()
                } else {
                    format!(" default {default}")
                }
            ));
        }
        for row in rows(indexes).await {
            out.push_str(&format!(
                "  index {}: {}\n",
                text(&row, "name"),
                text(&row, "def")
            ));
        }
    }
    out
}

async fn the_schema_is_what_the_code_expects(sql: Sql) {
    let fresh = sql.fresh().await;
    let db = fresh.db();
    Migrator::up(db, None).await.expect("up");
    let schema = describe_schema(db).await;
    match db.get_database_backend() {
        DbBackend::Sqlite => insta::assert_snapshot!("schema_sqlite", schema),
        _ => insta::assert_snapshot!("schema_postgres", schema),
    }
}

on_both_databases!(
    migrations_apply_roll_back_and_apply_again,
    natural_keys_are_enforced,
    the_schema_is_what_the_code_expects
);

#[tokio::test]
async fn sqlite_runs_in_wal_mode_and_concurrent_writers_never_see_busy() {
    let t = TestDb::sqlite().await;
    let db = t.db();
    Migrator::up(db, None).await.expect("up");
    let mode = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .expect("pragma")
        .and_then(|row| row.try_get_by_index::<String>(0).ok());
    assert_eq!(mode.as_deref(), Some("wal"));
    let sensor = new_sensor(db, "busy").await;
    let writers = (0..8).map(|w| {
        let db = db.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                reading(sensor.id, &format!("seq:{w}-{i}"))
                    .insert(&db)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        })
    });
    for writer in writers {
        writer
            .await
            .expect("task")
            .expect("no SQLITE_BUSY with one writer connection");
    }
    let count = readings::Entity::find()
        .all(db)
        .await
        .expect("readings")
        .len();
    assert_eq!(count, 400);
}
