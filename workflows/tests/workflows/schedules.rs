//! Schedules: bad definitions refused at the field with nothing stored; one job per tick with
//! three schedulers racing (their clocks skewed); a scheduler dying between claim and clear;
//! clocks jumping forward (each missed-tick policy) and back; pause and resume.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};
use entities::{
    manage::{Actor, ManageError},
    schedules,
};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use serde_json::json;
use testkit::fixtures;
use workflows::schedules::{
    Missed, Scheduler, SchedulerConfig,
    manage::{self, ScheduleSpec},
};

use super::env::{Sql, TestEnv, on_both_databases};

fn actor() -> Actor {
    Actor::Cli {
        os_user: "schedule-test".into(),
    }
}

fn every_second(name: &str, missed: Missed) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: "* * * * * *".into(),
        time_zone: "UTC".into(),
        kind: "evaluate".into(),
        payload: json!({ "sensor": "boiler" }),
        missed,
    }
}

fn scheduler(env: &TestEnv) -> Scheduler {
    Scheduler::new(
        env.db().clone(),
        env.engine.clone(),
        SchedulerConfig {
            every: Duration::from_millis(10),
            late_after: Duration::from_secs(5),
            max_ticks_per_claim: 100,
        },
    )
}

/// The idempotency keys of this schedule's ticks that exist in Redis: one per job it made.
async fn ticks_made(env: &TestEnv, schedule: i64) -> BTreeSet<i64> {
    let pattern = format!("idem:evaluate:schedule:{schedule}:*");
    queue::testing::keys_in_every_partition(&env.engine, &env.redis.url, &pattern)
        .iter()
        .filter_map(|k| k.rsplit(':').next()?.parse().ok())
        .collect()
}

async fn pushed(env: &TestEnv) -> u64 {
    env.engine
        .stats("evaluate")
        .await
        .expect("stats")
        .pushed_total
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("time")
}

async fn bad_definitions_are_refused_at_the_field_and_nothing_is_stored(sql: Sql) {
    let env = TestEnv::new(sql, "sched-bad").await;
    let good = every_second("good", Missed::Skip);
    for (spec, field) in [
        (
            ScheduleSpec {
                cron: "61 * * * *".into(),
                ..good.clone()
            },
            "cron",
        ),
        (
            ScheduleSpec {
                cron: "* * *".into(),
                ..good.clone()
            },
            "cron",
        ),
        (
            ScheduleSpec {
                time_zone: "Atlantis/Capital".into(),
                ..good.clone()
            },
            "timeZone",
        ),
        (
            ScheduleSpec {
                kind: "silence_check".into(),
                ..good.clone()
            },
            "kind",
        ),
        (
            ScheduleSpec {
                payload: json!({ "sensor": "" }),
                ..good.clone()
            },
            "payload.sensor",
        ),
        (
            ScheduleSpec {
                name: " ".into(),
                ..good.clone()
            },
            "name",
        ),
    ] {
        match manage::create(env.db(), &actor(), &spec).await {
            Err(ManageError::Refused { field: got, .. }) => assert_eq!(got, field, "{spec:?}"),
            other => panic!("{spec:?} was not refused at {field}: {other:?}"),
        }
    }
    let stored = schedules::Entity::find()
        .count(env.db())
        .await
        .expect("count");
    assert_eq!(stored, 0);
    let created = manage::create(env.db(), &actor(), &good)
        .await
        .expect("good");
    assert!(created.next_run_at.is_some());
    match manage::create(env.db(), &actor(), &good).await {
        Err(ManageError::Refused { field, .. }) => assert_eq!(field, "name"),
        other => panic!("a second schedule of one name: {other:?}"),
    }
}

async fn three_skewed_schedulers_make_exactly_one_job_per_tick(sql: Sql) {
    let env = TestEnv::new(sql, "sched-race").await;
    fixtures::sensor(env.db(), "boiler").await;
    let schedule = manage::create(
        env.db(),
        &actor(),
        &every_second("race", Missed::CatchUpOnce),
    )
    .await
    .expect("create");
    let first = schedule.next_run_at.expect("next").timestamp_millis();
    let schedulers = [scheduler(&env), scheduler(&env), scheduler(&env)];
    // Twelve seconds of simulated time in 250 ms steps; each scheduler's clock is off by its
    // own skew (one 300 ms behind, one 200 ms ahead), and all three pass at once.
    let skews = [-300i64, 0, 200];
    let mut lost = 0;
    let end = first + 12_000;
    let mut now = first - 500;
    while now <= end {
        let passes = schedulers
            .iter()
            .zip(skews)
            .map(|(s, skew)| s.tick_at(at(now + skew)));
        for report in futures::future::join_all(passes).await {
            lost += report.expect("pass").lost;
        }
        now += 250;
    }
    // Every whole second from the first tick to the last any clock reached has one job.
    let last_reached = end + 200;
    let expected: BTreeSet<i64> = (0..)
        .map(|k| first + k * 1000)
        .take_while(|t| *t <= last_reached)
        .collect();
    let made = ticks_made(&env, schedule.id).await;
    assert_eq!(made, expected, "one key per tick, none missing");
    assert_eq!(
        pushed(&env).await,
        expected.len() as u64,
        "one job per tick"
    );
    assert!(lost > 0, "the schedulers really raced");
    let row = manage::find(env.db(), schedule.id).await.expect("row");
    assert_eq!(row.pending, None);
    assert_eq!(
        row.last_run_at.map(|t| t.timestamp_millis()),
        expected.last().copied()
    );
    assert!(row.last_job_id.is_some());
}

async fn a_claim_cut_short_by_a_crash_is_pushed_once_by_the_next_scheduler(sql: Sql) {
    let env = TestEnv::new(sql, "sched-crash").await;
    fixtures::sensor(env.db(), "boiler").await;
    let schedule = manage::create(env.db(), &actor(), &every_second("crash", Missed::Skip))
        .await
        .expect("create");
    let first = schedule.next_run_at.expect("next").timestamp_millis();
    // A scheduler claimed the first two ticks and died before pushing: the row says so.
    schedules::Entity::update_many()
        .col_expr(
            schedules::Column::Pending,
            Expr::value(Some(format!("[{first},{}]", first + 1000))),
        )
        .col_expr(
            schedules::Column::NextRunAt,
            Expr::value(Some(at(first + 2000))),
        )
        .exec(env.db())
        .await
        .expect("claim");
    let report = scheduler(&env)
        .tick_at(at(first + 1500))
        .await
        .expect("pass");
    assert_eq!(report.pushed, 2);
    assert_eq!(pushed(&env).await, 2);
    // Another died after pushing, before clearing: the next pass pushes again, and the keys
    // answer with the jobs already made.
    schedules::Entity::update_many()
        .col_expr(
            schedules::Column::Pending,
            Expr::value(Some(format!("[{first}]"))),
        )
        .exec(env.db())
        .await
        .expect("claim again");
    scheduler(&env)
        .tick_at(at(first + 1600))
        .await
        .expect("pass");
    assert_eq!(pushed(&env).await, 2, "no second job for a tick");
    let row = manage::find(env.db(), schedule.id).await.expect("row");
    assert_eq!(row.pending, None);
}

async fn a_clock_jump_forward_follows_the_policy_and_one_back_repeats_nothing(sql: Sql) {
    let env = TestEnv::new(sql, "sched-jump").await;
    fixtures::sensor(env.db(), "boiler").await;
    let skip = manage::create(env.db(), &actor(), &every_second("skip", Missed::Skip))
        .await
        .expect("create");
    let catch_up = manage::create(
        env.db(),
        &actor(),
        &every_second("catch-up", Missed::CatchUpOnce),
    )
    .await
    .expect("create");
    let first = skip.next_run_at.expect("next").timestamp_millis();
    let s = scheduler(&env);
    s.tick_at(at(first + 100)).await.expect("on time");
    let after_first = pushed(&env).await;
    assert!(after_first >= 2, "both fired their first tick");

    // An hour later (the clock jumped, or everything was down): `skip` makes nothing for the
    // 3600 missed ticks, `catch_up_once` one job; both go on from the next tick.
    let jump = first + 3_600_000;
    let report = s.tick_at(at(jump)).await.expect("after the jump");
    assert!(report.skipped >= 3590, "{report:?}");
    let skip_made = ticks_made(&env, skip.id).await;
    let catch_up_made = ticks_made(&env, catch_up.id).await;
    // Besides the catch-up, each made the on-time ticks of the last `late_after` (5 s).
    let recent = |t: &i64| *t > jump - 6_000;
    assert_eq!(
        skip_made.iter().filter(|t| !recent(t)).count(),
        1,
        "only the first tick"
    );
    assert_eq!(
        catch_up_made.iter().filter(|t| !recent(t)).count(),
        2,
        "the first tick and one job for every missed one"
    );
    for id in [skip.id, catch_up.id] {
        let row = manage::find(env.db(), id).await.expect("row");
        assert!(row.next_run_at.expect("next").timestamp_millis() > jump);
    }

    // The clock jumps back an hour: nothing is due, nothing repeats.
    let before = pushed(&env).await;
    let report = s.tick_at(at(first + 200)).await.expect("back");
    assert_eq!((report.pushed, report.lost), (0, 0));
    assert_eq!(pushed(&env).await, before);
}

async fn a_paused_schedule_makes_nothing_and_resumes_from_its_next_tick(sql: Sql) {
    let env = TestEnv::new(sql, "sched-pause").await;
    fixtures::sensor(env.db(), "boiler").await;
    let created = manage::create(
        env.db(),
        &actor(),
        &every_second("pause", Missed::CatchUpOnce),
    )
    .await
    .expect("create");
    let paused = manage::set_enabled(env.db(), &actor(), created.id, false, Some(created.version))
        .await
        .expect("pause");
    assert_eq!((paused.enabled, paused.next_run_at), (false, None));
    let s = scheduler(&env);
    let later = Utc::now() + chrono::Duration::seconds(30);
    assert_eq!(s.tick_at(later).await.expect("pass").pushed, 0);
    match manage::set_enabled(env.db(), &actor(), created.id, true, Some(created.version)).await {
        Err(ManageError::Stale { .. }) => {}
        other => panic!("a resume against an old version: {other:?}"),
    }
    let resumed = manage::set_enabled(env.db(), &actor(), created.id, true, Some(paused.version))
        .await
        .expect("resume");
    let next = resumed.next_run_at.expect("next");
    assert!(next > Utc::now() - chrono::Duration::seconds(1));
    assert_eq!(pushed(&env).await, 0, "nothing made up for the paused time");
    s.tick_at(next).await.expect("pass");
    assert_eq!(pushed(&env).await, 1);

    // An edit applies from the next tick; a stale one changes nothing.
    let edit = ScheduleSpec {
        cron: "0 0 * * *".into(),
        ..every_second("pause", Missed::Skip)
    };
    match manage::update(env.db(), &actor(), created.id, created.version, &edit).await {
        Err(ManageError::Stale { .. }) => {}
        other => panic!("a stale edit: {other:?}"),
    }
    let edited = manage::update(env.db(), &actor(), created.id, resumed.version, &edit)
        .await
        .expect("edit");
    assert_eq!(edited.cron, "0 0 * * *");
    let midnight = edited.next_run_at.expect("next");
    assert_eq!(midnight.timestamp() % 86_400, 0);
    manage::delete(env.db(), &actor(), created.id, Some(edited.version))
        .await
        .expect("delete");
    assert!(manage::list(env.db()).await.expect("list").is_empty());
}

async fn schedulers_read_the_database_clock(sql: Sql) {
    let env = TestEnv::new(sql, "sched-clock").await;
    let before = Utc::now();
    let db_now = workflows::schedules::database_now(env.db())
        .await
        .expect("the database's time");
    let after = Utc::now();
    // Here the database runs on this host, so its clock agrees to within a moment.
    let slack = chrono::Duration::seconds(2);
    assert!(
        db_now >= before - slack && db_now <= after + slack,
        "{before} <= {db_now} <= {after}"
    );
}

on_both_databases!(schedulers_read_the_database_clock);
on_both_databases!(bad_definitions_are_refused_at_the_field_and_nothing_is_stored);
on_both_databases!(three_skewed_schedulers_make_exactly_one_job_per_tick);
on_both_databases!(a_claim_cut_short_by_a_crash_is_pushed_once_by_the_next_scheduler);
on_both_databases!(a_clock_jump_forward_follows_the_policy_and_one_back_repeats_nothing);
on_both_databases!(a_paused_schedule_makes_nothing_and_resumes_from_its_next_tick);

/// Two processes on one SQLite file (the API editing a schedule while a worker's scheduler
/// claims its tick): the edit's transaction reads, the other process commits, then the edit
/// writes. Begun deferred, the edit could not upgrade its stale read and met `SQLITE_BUSY` at
/// once (seen in CI as an INTERNAL error from `setScheduleEnabled`); begun immediate, the other
/// writer waits its turn and both land.
#[tokio::test]
async fn on_sqlite_a_read_then_write_transaction_makes_another_process_wait_instead_of_failing() {
    let test_db = Sql::Sqlite.migrated().await;
    let editor = entities::connect(test_db.url()).await.expect("editor");
    let claimer = entities::connect(test_db.url()).await.expect("claimer");
    let created = manage::create(&editor, &actor(), &every_second("race", Missed::Skip))
        .await
        .expect("create");
    let id = created.id;

    let edit = entities::begin_write(&editor).await.expect("begin");
    let read = schedules::Entity::find_by_id(id)
        .one(&edit)
        .await
        .expect("read")
        .expect("the schedule");
    let claim = tokio::spawn(async move {
        schedules::Entity::update_many()
            .col_expr(
                schedules::Column::Version,
                Expr::col(schedules::Column::Version).add(1),
            )
            .filter(schedules::Column::Id.eq(id))
            .exec(&claimer)
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !claim.is_finished(),
        "the other process's write waits for the open write transaction"
    );
    schedules::Entity::update_many()
        .col_expr(schedules::Column::Version, Expr::value(read.version + 1))
        .filter(schedules::Column::Id.eq(id))
        .exec(&edit)
        .await
        .expect("the edit's write after its read");
    edit.commit().await.expect("commit");
    claim
        .await
        .expect("claim task")
        .expect("the waiting write lands after the edit");
    let after = manage::find(&editor, id).await.expect("find");
    assert_eq!(after.version, created.version + 2, "both writes applied");
}
