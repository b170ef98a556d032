//! Three real `workers` processes making one schedule's jobs, one of them SIGKILLed and
//! started again midway: every tick gets exactly one job, none is missed.

use std::{collections::BTreeSet, process::Stdio, time::Duration};

use entities::manage::Actor;
use serde_json::json;
use testkit::fixtures;
use tokio::process::{Child, Command};
use workflows::schedules::{
    Missed,
    manage::{self, ScheduleSpec},
};

use super::common::{Sql, TestApp};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A workers process that runs no queue but `alert` (so the scheduled evaluate jobs stay in
/// their queue, countable) and looks for due schedules every 100 ms.
fn spawn_scheduler(app: &TestApp, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_workers"))
        .args(["--redis-url", &app.redis.url])
        .args(["--prefix", &app.redis.prefix])
        .args(["--database-url", app.db.url()])
        .args(["--worker-id", name])
        .args(["--queues", "alert"])
        .args(["--schedules-every-ms", "100"])
        .args(["--no-ledger"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the workers binary")
}

async fn tick_keys(app: &TestApp, schedule: i64) -> BTreeSet<i64> {
    let mut conn = redis::Client::open(app.redis.url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!(
            "{{{}}}:idem:evaluate:schedule:{schedule}:*",
            app.redis.prefix
        ))
        .query_async(&mut conn)
        .await
        .expect("keys");
    keys.iter()
        .filter_map(|k| k.rsplit(':').next()?.parse().ok())
        .collect()
}

#[tokio::test]
async fn three_worker_processes_and_a_restart_make_one_job_per_tick() {
    let app = TestApp::new(Sql::Postgres, "sched-procs").await;
    fixtures::sensor(app.db(), "boiler").await;
    let mut processes = vec![
        spawn_scheduler(&app, "sched-a"),
        spawn_scheduler(&app, "sched-b"),
        spawn_scheduler(&app, "sched-c"),
    ];
    // Let them start before the schedule exists, so its every tick is theirs to make.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let schedule = manage::create(
        app.db(),
        &Actor::Cli {
            os_user: "test".into(),
        },
        &ScheduleSpec {
            name: "every second".into(),
            cron: "* * * * * *".into(),
            time_zone: "UTC".into(),
            kind: "evaluate".into(),
            payload: json!({ "sensor": "boiler" }),
            missed: Missed::Skip,
        },
    )
    .await
    .expect("schedule");
    let first = schedule.next_run_at.expect("next").timestamp_millis();

    tokio::time::sleep(Duration::from_millis(2500)).await;
    // One dies without warning and a new one takes its place.
    processes[0].start_kill().expect("kill");
    let _ = processes[0].wait().await;
    processes[0] = spawn_scheduler(&app, "sched-a2");
    tokio::time::sleep(Duration::from_millis(3000)).await;

    // Stop making new ticks: pause it, then let any claim in flight finish.
    manage::set_enabled(
        app.db(),
        &Actor::Cli {
            os_user: "test".into(),
        },
        schedule.id,
        false,
        None,
    )
    .await
    .expect("pause");
    let paused_at = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in &mut processes {
        let _ = p.start_kill();
        let _ = p.wait().await;
    }

    let made = tick_keys(&app, schedule.id).await;
    let last = *made.last().expect("ticks were made");
    let expected: BTreeSet<i64> = (0..)
        .map(|k| first + k * 1000)
        .take_while(|t| *t <= last)
        .collect();
    assert_eq!(made, expected, "a tick without its job, or one out of step");
    assert!(
        made.len() >= 5,
        "about seven seconds of ticks, got {}",
        made.len()
    );
    assert!(last <= paused_at, "a tick after the pause");
    let stats = app.engine.stats("evaluate").await.expect("stats");
    assert_eq!(
        stats.pushed_total,
        made.len() as u64,
        "one job per tick, no second one"
    );
    let row = manage::find(app.db(), schedule.id).await.expect("row");
    assert_eq!(row.pending, None, "no claim left unfinished");
}
