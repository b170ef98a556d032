//! The `steadfast` command line, run as a process against the real Redis and both databases:
//! what it reads, what it changes (audited), its JSON for scripts, and its exit codes.

use chrono::Utc;
use entities::{audit_log, devices, users};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};
use testkit::{fixtures, on_both_databases};
use workflows::{BackgroundJob, jobs::evaluate::Evaluate};

use super::common::{Sql, TestApp};

/// Runs `steadfast args...` against `app`; answers the exit code, stdout and stderr.
async fn steadfast(app: &TestApp, args: &[&str]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_steadfast"));
    command
        .args(args)
        .env("REDIS_URL", &app.redis.url)
        .env("STEADFAST_PREFIX", &app.redis.prefix)
        .env("DATABASE_URL", app.db.url())
        .env_remove("RUST_LOG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("task")
        .expect("the steadfast binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `steadfast --json args...`, which must succeed; answers its JSON.
async fn json(app: &TestApp, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = steadfast(app, &all).await;
    assert_eq!(code, 0, "steadfast {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("steadfast {args:?} printed {out:?}: {e}"))
}

fn queue_row<'a>(queues: &'a Value, name: &str) -> &'a Value {
    queues
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["queue"] == name))
        .unwrap_or_else(|| panic!("no {name} in {queues}"))
}

async fn push_evaluate(app: &TestApp, sensor: &str) -> String {
    let job = Evaluate {
        sensor: sensor.into(),
    }
    .to_push()
    .expect("job");
    app.engine.push(job).await.expect("push").id
}

async fn the_command_line_reads_and_changes_what_the_servers_hold(sql: Sql) {
    let app = TestApp::new(sql, "cli").await;
    fixtures::sensor(app.db(), "boiler").await;
    // Two jobs that die at once: their sensors do not exist.
    let ghost = push_evaluate(&app, "ghost-a").await;
    push_evaluate(&app, "ghost-b").await;
    let drained = app.drain().await;
    assert_eq!(drained.count("evaluate", "dead"), 2);

    let queues = json(&app, &["queues"]).await;
    assert_eq!(queue_row(&queues, "evaluate")["dead"], 2);
    assert_eq!(queue_row(&queues, "evaluate")["paused"], false);
    let (code, table, _) = steadfast(&app, &["queues"]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains("queue") && table.contains("evaluate"),
        "{table}"
    );

    let groups = json(&app, &["dead", "--queue", "evaluate"]).await;
    let total: u64 = groups
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["count"].as_u64())
        .sum();
    assert_eq!(total, 2, "{groups}");

    // A dry run counts and changes nothing; a requeue by id puts the job back in the queue.
    let dry = json(&app, &["requeue", "--queue", "evaluate", "--dry-run"]).await;
    assert_eq!(dry["wouldChange"], 2);
    assert_eq!(app.dead_jobs().await, 2);
    let requeued = json(&app, &["requeue", &ghost]).await;
    assert_eq!(requeued["changed"], 1);
    let job = json(&app, &["job", &ghost]).await;
    assert_eq!(
        (job["state"].clone(), job["source"].clone()),
        ("QUEUED".into(), "redis".into())
    );
    assert_eq!(
        app.drain().await.count("evaluate", "dead"),
        1,
        "it dies again"
    );
    let (code, _, err) = steadfast(&app, &["requeue"]).await;
    assert_eq!(code, 4, "neither ids nor a queue: {err}");
    let (code, _, err) = steadfast(&app, &["job", "01NOSUCHJOB"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no job has id"), "{err}");

    // Pause and resume, as the API does it.
    let paused = json(&app, &["pause", "evaluate"]).await;
    assert_eq!(
        (paused["state"].clone(), paused["changed"].clone()),
        ("paused".into(), true.into())
    );
    assert!(
        app.engine
            .stats("evaluate")
            .await
            .expect("stats")
            .paused_since_ms
            .is_some()
    );
    assert_eq!(json(&app, &["pause", "evaluate"]).await["changed"], false);
    let (code, _, err) = steadfast(&app, &["pause", "nope"]).await;
    assert_eq!(code, 3, "{err}");
    json(&app, &["resume", "evaluate"]).await;
    assert!(
        app.engine
            .stats("evaluate")
            .await
            .expect("stats")
            .paused_since_ms
            .is_none()
    );

    // A drain needs --yes; --dry-run counts.
    push_evaluate(&app, "boiler").await;
    let (code, _, err) = steadfast(&app, &["drain", "evaluate"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(
        json(&app, &["drain", "evaluate", "--dry-run"]).await["wouldCancel"],
        1
    );
    assert_eq!(
        json(&app, &["drain", "evaluate", "--yes"]).await["cancelled"],
        1
    );

    // A bulk requeue by queue reports its progress to people (stderr), its result on stdout.
    let (code, out, err) = steadfast(&app, &["requeue", "--queue", "evaluate"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("requeued 2 of 2"), "{err}");
    assert!(out.contains("2 dead job(s) of evaluate requeued"), "{out}");
    assert_eq!(
        app.drain().await.count("evaluate", "dead"),
        2,
        "both die again"
    );

    let discarded = json(&app, &["discard", "--queue", "evaluate"]).await;
    assert_eq!(discarded["changed"], 2);
    assert_eq!(app.dead_jobs().await, 0);

    // Users and devices.
    users::ActiveModel {
        email: Set("ops@example.com".into()),
        password_hash: Set("x".into()),
        role: Set("ADMIN".into()),
        created_at: Set(Utc::now()),
        disabled_at: Set(None),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .expect("user");
    let listed = json(&app, &["users"]).await;
    assert_eq!(listed[0]["email"], "ops@example.com");
    let (code, _, err) = steadfast(&app, &["users", "disable", "ops@example.com"]).await;
    assert_eq!(code, 4, "the last admin stays enabled: {err}");
    let (code, _, err) = steadfast(&app, &["users", "role", "ops@example.com", "VIEWER"]).await;
    assert_eq!(code, 4, "the last admin keeps the role: {err}");
    assert!(err.contains("last admin"), "{err}");
    let (code, _, _) = steadfast(&app, &["users", "role", "nobody@example.com", "VIEWER"]).await;
    assert_eq!(code, 3);
    let (code, _, _) = steadfast(&app, &["users", "role", "ops@example.com", "KING"]).await;
    assert_eq!(code, 2, "clap refuses an unknown role");
    let promoted = json(&app, &["users", "role", "1", "ADMIN"]).await;
    assert_eq!(promoted["changed"], false);
    users::ActiveModel {
        email: Set("second@example.com".into()),
        password_hash: Set("x".into()),
        role: Set("VIEWER".into()),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .expect("user");
    let second = json(&app, &["users", "role", "second@example.com", "OPERATOR"]).await;
    assert_eq!(
        (
            &second["user"]["role"],
            &second["user"]["version"],
            &second["changed"]
        ),
        (&json!("OPERATOR"), &json!(2), &json!(true))
    );
    let off = json(&app, &["users", "disable", "second@example.com"]).await;
    assert_eq!(off["user"]["disabled"], true);
    let on = json(&app, &["users", "enable", "second@example.com"]).await;
    assert_eq!(
        (&on["user"]["disabled"], &on["user"]["version"]),
        (&json!(false), &json!(4))
    );
    let device = devices::ActiveModel {
        name: Set("gateway".into()),
        api_key_hash: Set("hash".into()),
        created_at: Set(Utc::now()),
        revoked_at: Set(None),
        ..Default::default()
    }
    .insert(app.db())
    .await
    .expect("device");
    let id = device.id.to_string();
    assert_eq!(json(&app, &["devices", "list"]).await[0]["revoked"], false);
    assert_eq!(
        json(&app, &["devices", "revoke", &id]).await["changed"],
        true
    );
    assert_eq!(
        json(&app, &["devices", "revoke", &id]).await["changed"],
        false
    );
    let stored = devices::Entity::find_by_id(device.id)
        .one(app.db())
        .await
        .expect("read")
        .expect("device");
    assert!(stored.revoked_at.is_some());
    let (code, _, _) = steadfast(&app, &["devices", "revoke", "999999"]).await;
    assert_eq!(code, 3);

    // The ledger listing (empty here: no recorder ran) and its filters.
    assert!(json(&app, &["jobs", "--kind", "evaluate"]).await.is_array());
    let nobody = json(
        &app,
        &[
            "jobs",
            "--subject",
            "nobody",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    assert_eq!(nobody, json!([]));
    let (code, _, err) = steadfast(&app, &["jobs", "--since", "yesterday"]).await;
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = steadfast(&app, &["jobs", "--state", "NOPE"]).await;
    assert_eq!(code, 4, "{err}");

    // Limits: shown, set (and then enforced by the engine), refused when out of range, cleared.
    let none = json(&app, &["limits", "evaluate"]).await;
    assert_eq!(none["concurrency"], Value::Null, "{none}");
    let set = json(
        &app,
        &[
            "limits",
            "evaluate",
            "--per-key-concurrency",
            "1",
            "--per-key-rate",
            "5/1s",
        ],
    )
    .await;
    assert_eq!(set["per_key_concurrency"], 1);
    assert_eq!(
        set["per_key_rate"],
        json!({ "limit": 5, "window_ms": 1000 })
    );
    let stored = app.engine.queue_limits("evaluate").await.expect("limits");
    assert_eq!(stored.per_key_concurrency, Some(1));
    let (code, table, _) = steadfast(&app, &["limits", "evaluate"]).await;
    assert_eq!(code, 0);
    assert!(table.contains("at most 1 running per key"), "{table}");
    let (code, _, err) = steadfast(&app, &["limits", "evaluate", "--rate", "ten/1s"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a whole number"), "{err}");
    let (code, _, err) = steadfast(&app, &["limits", "evaluate", "--rate", "10/0s"]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("rate: window"), "{err}");
    let (code, _, err) = steadfast(&app, &["limits", "evaluate", "--concurrency", "-1"]).await;
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        app.engine
            .queue_limits("evaluate")
            .await
            .expect("limits")
            .per_key_concurrency,
        Some(1),
        "a refused change stores nothing"
    );
    json(&app, &["limits", "evaluate", "--clear"]).await;
    assert!(
        app.engine
            .queue_limits("evaluate")
            .await
            .expect("limits")
            .is_empty()
    );

    // Schedules: created (a bad cron refused, nothing stored), listed, paused, resumed, deleted.
    let (code, _, err) = steadfast(
        &app,
        &[
            "schedules",
            "create",
            "nightly",
            "--cron",
            "0 25 * * *",
            "--kind",
            "evaluate",
            "--payload",
            r#"{"sensor":"boiler"}"#,
        ],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cron"), "{err}");
    let (code, _, err) = steadfast(
        &app,
        &[
            "schedules",
            "create",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--time-zone",
            "Nowhere/City",
            "--kind",
            "evaluate",
            "--payload",
            r#"{"sensor":"boiler"}"#,
        ],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("timeZone"), "{err}");
    assert_eq!(
        json(&app, &["schedules"]).await,
        json!([]),
        "nothing stored"
    );
    let created = json(
        &app,
        &[
            "schedules",
            "create",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--time-zone",
            "Europe/Berlin",
            "--kind",
            "evaluate",
            "--payload",
            r#"{"sensor":"boiler"}"#,
            "--missed",
            "catch_up_once",
        ],
    )
    .await;
    let schedule_id = created["id"].as_i64().expect("id").to_string();
    assert_eq!(created["missed"], "catch_up_once");
    let listed = json(&app, &["schedules", "list"]).await;
    assert_eq!(listed[0]["name"], "nightly");
    let (code, _, err) = steadfast(
        &app,
        &["schedules", "edit", &schedule_id, "--cron", "0 2 * *"],
    )
    .await;
    assert_eq!(code, 4, "{err}");
    let edited = json(
        &app,
        &["schedules", "edit", &schedule_id, "--cron", "30 3 * * *"],
    )
    .await;
    assert_eq!(
        (edited["cron"].clone(), edited["version"].clone()),
        (json!("30 3 * * *"), json!(2))
    );
    let paused = json(&app, &["schedules", "pause", &schedule_id]).await;
    assert_eq!(
        (paused["enabled"].clone(), paused["nextRunAt"].clone()),
        (json!(false), Value::Null)
    );
    let resumed = json(&app, &["schedules", "resume", &schedule_id]).await;
    assert!(resumed["nextRunAt"].is_string(), "{resumed}");
    json(&app, &["schedules", "delete", &schedule_id]).await;
    let (code, _, _) = steadfast(&app, &["schedules", "delete", &schedule_id]).await;
    assert_eq!(code, 3, "an unknown schedule");

    // Every change is audited, as done from the command line.
    let log = audit_log::Entity::find()
        .all(app.db())
        .await
        .expect("audit");
    for action in [
        "dead_job.requeue_many",
        "queue.pause",
        "queue.resume",
        "queue.drain",
        "dead_job.discard_many",
        "device.revoke",
        "user.set_role",
        "user.disable",
        "user.enable",
        "queue.limits",
        "schedule.create",
        "schedule.update",
        "schedule.pause",
        "schedule.resume",
        "schedule.delete",
    ] {
        let entry = log
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action} not audited: {log:?}"));
        assert_eq!(entry.details["via"], "cli", "{entry:?}");
    }

    // A dependency down: exit code 1 and a message that names it, never a password.
    let (code, _, err) = steadfast(
        &app,
        &["queues", "--redis-url", "redis://user:s3cret@127.0.0.1:1"],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach Redis") && !err.contains("s3cret"),
        "{err}"
    );
}

on_both_databases!(the_command_line_reads_and_changes_what_the_servers_hold);

/// `steadfast partitions`: each partition's tag, slot and jobs, as the engine routes them.
#[tokio::test]
async fn partitions_show_each_partitions_tag_slot_and_jobs() {
    let app = TestApp::new(Sql::Sqlite, "cli-partitions").await;
    for n in 0..30 {
        push_evaluate(&app, &format!("sensor-{n}")).await;
    }
    let rows = json(&app, &["partitions"]).await;
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), usize::from(app.engine.partitions()));
    let tags: Vec<&str> = rows.iter().filter_map(|r| r["tag"].as_str()).collect();
    assert_eq!(tags, app.engine.partition_tags());
    let slots: Vec<u64> = rows.iter().filter_map(|r| r["slot"].as_u64()).collect();
    assert_eq!(
        slots,
        app.engine
            .partition_slots()
            .into_iter()
            .map(u64::from)
            .collect::<Vec<_>>()
    );
    let ready: u64 = rows.iter().filter_map(|r| r["ready"].as_u64()).sum();
    assert_eq!(ready, 30, "{rows:?}");
    let (code, table, _) = steadfast(&app, &["partitions"]).await;
    assert_eq!(code, 0);
    assert!(table.contains(&app.engine.partition_tags()[0]), "{table}");

    // Fencing a slot range fences the partitions in it, shows, and lifts.
    let slot0 = app.engine.partition_slots()[0];
    let fenced = json(&app, &["fence", &format!("{slot0}-{slot0}")]).await;
    assert_eq!(fenced[0]["partition"], 0, "{fenced}");
    let fences = app.engine.fences().await.expect("fences");
    assert!(
        fences[0]
            .as_deref()
            .is_some_and(|note| note.contains("steadfast fence")),
        "{fences:?}"
    );
    let rows = json(&app, &["partitions"]).await;
    assert!(rows[0]["fenced"].is_string(), "{rows}");
    json(&app, &["unfence", "all"]).await;
    assert!(
        app.engine
            .fences()
            .await
            .expect("fences")
            .iter()
            .all(Option::is_none)
    );
    let log = audit_log::Entity::find()
        .all(app.db())
        .await
        .expect("audit log");
    for action in ["partition.fence", "partition.unfence"] {
        let entry = log
            .iter()
            .find(|e| e.action == action)
            .unwrap_or_else(|| panic!("{action} not audited: {log:?}"));
        assert_eq!(entry.details["via"], "cli", "{entry:?}");
    }
    let (code, _, err) = steadfast(&app, &["fence", "9-3"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the first slot is after the last"), "{err}");
}
