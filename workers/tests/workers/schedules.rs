//! Three real `workers` processes making one schedule's jobs: one of them SIGKILLed and
//! started again midway, or one whose wall clock jumps an hour ahead and back (libfaketime).
//! Either way every tick gets exactly one job and none is missed.

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
    scheduler_command(app, name)
        .spawn()
        .expect("spawn the workers binary")
}

fn scheduler_command(app: &TestApp, name: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_workers"));
    command
        .args(["--redis-url", &app.redis.url])
        .args(["--prefix", &app.redis.prefix])
        .args(["--database-url", app.db.url()])
        .args(["--worker-id", name])
        .args(["--queues", "alert"])
        .args(["--schedules-every-ms", "100"])
        // A short lease renews, and so beats, every few hundred milliseconds: the clock-jump
        // test reads the process's clock off its heartbeat.
        .args(["--lease-ms", "900"])
        .args(["--no-ledger"])
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command
}

async fn tick_keys(app: &TestApp, schedule: i64) -> BTreeSet<i64> {
    let pattern = format!("idem:evaluate:schedule:{schedule}:*");
    queue::testing::keys_in_every_partition(&app.engine, &app.redis.url, &pattern)
        .iter()
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
        &every_second("every second"),
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
    let paused_at = pause_and_stop(&app, schedule.id, &mut processes).await;

    assert_one_job_per_tick(&app, schedule.id, first, paused_at).await;
}

/// Every tick from `first` to the last one made has its one job, and none came after the pause.
async fn assert_one_job_per_tick(app: &TestApp, schedule: i64, first: i64, paused_at: i64) {
    let made = tick_keys(app, schedule).await;
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
    assert!(
        last >= paused_at - 2500,
        "ticks stopped {} ms before the pause",
        paused_at - last
    );
    let stats = app.engine.stats("evaluate").await.expect("stats");
    assert_eq!(
        stats.pushed_total,
        made.len() as u64,
        "one job per tick, no second one"
    );
    let row = manage::find(app.db(), schedule).await.expect("row");
    assert_eq!(row.pending, None, "no claim left unfinished");
}

/// Pauses the schedule (no new ticks), lets a claim in flight finish, then kills every
/// process; answers when the pause took effect (ms).
async fn pause_and_stop(app: &TestApp, schedule: i64, processes: &mut [Child]) -> i64 {
    manage::set_enabled(
        app.db(),
        &Actor::Cli {
            os_user: "test".into(),
        },
        schedule,
        false,
        None,
    )
    .await
    .expect("pause");
    let paused_at = chrono::Utc::now().timestamp_millis();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for p in processes.iter_mut() {
        let _ = p.start_kill();
        let _ = p.wait().await;
    }
    paused_at
}

fn every_second(name: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: "* * * * * *".into(),
        time_zone: "UTC".into(),
        kind: "evaluate".into(),
        payload: json!({ "sensor": "boiler" }),
        missed: Missed::Skip,
    }
}

/// libfaketime's preload library, which the test command installs (Debian's `faketime`).
fn libfaketime() -> std::path::PathBuf {
    let candidates = std::env::var_os("STEADFAST_LIBFAKETIME")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            std::fs::read_dir("/usr/lib")
                .into_iter()
                .flatten()
                .flatten()
                .map(|dir| dir.path().join("faketime/libfaketimeMT.so.1")),
        );
    candidates.into_iter().find(|p| p.exists()).expect(
        "libfaketime is needed for the clock-jump test: apt-get install faketime \
         (scripts/test installs it), or set STEADFAST_LIBFAKETIME",
    )
}

/// The offset of a worker process's wall clock from ours, read off its latest heartbeat.
async fn clock_offset_ms(app: &TestApp, worker: &str) -> Option<i64> {
    let now = chrono::Utc::now().timestamp_millis();
    app.engine
        .workers()
        .await
        .expect("workers")
        .into_iter()
        .find(|w| w.id.starts_with(worker))
        .map(|w| w.last_beat_ms as i64 - now)
}

/// Waits until `worker`'s heartbeat shows its clock about `offset_ms` from ours.
async fn wait_for_clock(app: &TestApp, worker: &str, offset_ms: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = clock_offset_ms(app, worker).await;
        if seen.is_some_and(|o| (o - offset_ms).abs() < 30_000) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{worker}'s clock never showed {offset_ms} ms off ours (last seen: {seen:?} ms)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One host's clock steps an hour ahead (as a bad NTP step would) and later back, while two
/// others keep true time. Schedulers read the database's clock, so the jumping host makes no
/// tick early, skips none for the others, and every tick still gets exactly one job.
#[tokio::test]
async fn a_worker_whose_clock_jumps_an_hour_neither_skips_nor_repeats_ticks() {
    let app = TestApp::new(Sql::Postgres, "sched-clock").await;
    fixtures::sensor(app.db(), "boiler").await;
    let clock_file = std::env::temp_dir().join(format!("steadfast-clock-{}", app.redis.prefix));
    std::fs::write(&clock_file, "+0\n").expect("clock file");

    let mut jumper = scheduler_command(&app, "sched-jumper");
    jumper
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME_TIMESTAMP_FILE", &clock_file)
        // Only the wall clock steps, as it does on a real host; timers keep the monotonic one.
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("FAKETIME_CACHE_DURATION", "0");
    let mut processes = vec![
        spawn_scheduler(&app, "sched-a"),
        spawn_scheduler(&app, "sched-b"),
        jumper.spawn().expect("spawn the workers binary"),
    ];
    wait_for_clock(&app, "sched-jumper", 0).await;
    let schedule = manage::create(
        app.db(),
        &Actor::Cli {
            os_user: "test".into(),
        },
        &every_second("clock jump"),
    )
    .await
    .expect("schedule");
    let first = schedule.next_run_at.expect("next").timestamp_millis();
    tokio::time::sleep(Duration::from_millis(2000)).await;

    std::fs::write(&clock_file, "+1h\n").expect("jump ahead");
    wait_for_clock(&app, "sched-jumper", 3_600_000).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;

    std::fs::write(&clock_file, "+0\n").expect("jump back");
    wait_for_clock(&app, "sched-jumper", 0).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;

    let paused_at = pause_and_stop(&app, schedule.id, &mut processes).await;
    let _ = std::fs::remove_file(&clock_file);
    // About seven seconds of ticks, among them the three while one host was an hour ahead: a
    // scheduler trusting its own clock would have claimed (and, skipping, dropped) an hour of
    // them, leaving a gap up to the pause.
    assert_one_job_per_tick(&app, schedule.id, first, paused_at).await;
}
