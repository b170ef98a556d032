use entities::alerts;
use queue::EventStream;
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use testkit::fixtures as testing;
use workflows::{
    HandlerError,
    jobs::{
        alert::{self, Alert, Change},
        ingest,
    },
};

use super::env::{Sql, TestEnv, on_both_databases};

/// A sensor with one ABOVE rule (throttle `throttle` s) notifying two channels; readings 1..=n.
async fn setup(env: &TestEnv, throttle: i32, n: usize) -> i64 {
    let sensor = testing::sensor(env.db(), "boiler").await;
    let rule = testing::rule(env.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, throttle).await;
    testing::channel_for(env.db(), rule.id, "ops-webhook", "WEBHOOK").await;
    testing::channel_for(env.db(), rule.id, "in-app", "IN_APP").await;
    let readings: Vec<_> = (1..=n)
        .map(|i| json!({"sensor": "boiler", "ts": format!("2026-11-21T08:{i:02}:00Z"), "value": 90, "seq": i}))
        .collect();
    let batch: ingest::Ingest =
        workflows::decode_payload(json!({ "readings": readings })).expect("payload");
    ingest::run(env.db(), &env.engine, "01RUN", &batch)
        .await
        .expect("ingest");
    rule.id
}

/// Records the signal, as its evaluation does, and runs its alert job.
async fn apply(
    env: &TestEnv,
    rule: i64,
    reading: i64,
    breach: bool,
) -> Result<alert::Applied, HandlerError> {
    alert::record_signals(env.db(), &[(rule, reading, breach)])
        .await
        .expect("record");
    alert::run(env.db(), &env.engine, &signal(rule, reading, breach)).await
}

/// Distinct `notify` jobs the queue has accepted (a push under a key it holds is not counted).
async fn notify_jobs_pushed(env: &TestEnv) -> u64 {
    env.engine
        .stats("notify")
        .await
        .expect("stats")
        .pushed_total
}

fn signal(rule: i64, reading: i64, breach: bool) -> Alert {
    Alert {
        rule,
        sensor: "boiler".into(),
        reading,
        breach,
    }
}

async fn one_open_alert_per_episode_notified_once_and_idempotent(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = setup(&env, 300, 5).await;
    let opened = apply(&env, rule, 1, true).await.expect("open");
    assert_eq!(opened.change, Change::Opened);
    assert_eq!(
        opened.notifications.len(),
        2,
        "one notify per channel of the rule"
    );
    assert!(opened.notifications.iter().all(|n| !n.duplicate));
    let notify = env
        .engine
        .job(&opened.notifications[0].id)
        .await
        .expect("job")
        .expect("live");
    assert_eq!(
        notify.workflow_id.as_deref(),
        Some("01RUN"),
        "the run of the reading that raised it"
    );

    // The same job again (a retry after a crash): nothing changes, the same notify jobs answer.
    let retried = apply(&env, rule, 1, true).await.expect("retry");
    assert_eq!(retried.change, Change::Unchanged);
    assert!(retried.notifications.iter().all(|n| n.duplicate));
    assert_eq!(
        retried
            .notifications
            .iter()
            .map(|n| &n.id)
            .collect::<Vec<_>>(),
        opened
            .notifications
            .iter()
            .map(|n| &n.id)
            .collect::<Vec<_>>()
    );

    // A further breach inside the throttle window raises the count and notifies nobody.
    let raised = apply(&env, rule, 2, true).await.expect("raise");
    assert_eq!(
        (raised.change, raised.notifications.len()),
        (Change::Raised, 0)
    );
    // A clear resolves; a later breach opens a new alert of its own.
    let resolved = apply(&env, rule, 3, false).await.expect("clear");
    assert_eq!(resolved.change, Change::Resolved);
    let again = apply(&env, rule, 4, true).await.expect("reopen");
    assert_eq!(again.change, Change::Opened);
    assert_ne!(again.alert_id, opened.alert_id);
    assert_eq!(again.notifications.len(), 2);

    let all = alerts::Entity::find().all(env.db()).await.expect("alerts");
    assert_eq!(all.len(), 2);
    let first = all
        .iter()
        .find(|a| Some(a.id) == opened.alert_id)
        .expect("first alert");
    assert_eq!(
        (first.state.as_str(), first.count, first.open_key.as_deref()),
        ("RESOLVED", 2, None)
    );
    assert_eq!(notify_jobs_pushed(&env).await, 4);
    let events: Vec<String> = env
        .engine
        .read_stream(EventStream::App, "0-0", 100)
        .await
        .expect("app events")
        .into_iter()
        .filter_map(|e| e.fields.get("type").cloned())
        .collect();
    assert_eq!(
        events,
        [
            "alert_opened",
            "alert_updated",
            "alert_resolved",
            "alert_opened"
        ]
    );
}

async fn with_no_throttle_every_breach_notifies(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = setup(&env, 0, 3).await;
    let mut sent = 0;
    for reading in 1..=3 {
        sent += apply(&env, rule, reading, true)
            .await
            .expect("breach")
            .notifications
            .len();
    }
    assert_eq!(sent, 6);
    assert_eq!(
        alerts::Entity::find().count(env.db()).await.expect("count"),
        1
    );
}

/// Signals of one rule whose jobs run in any order (evaluations of one rule racing, or jobs of
/// an older build, which pushed one per signal): whichever runs first applies every pending
/// signal of the rule up to its own, in reading order.
async fn signals_applied_out_of_order_keep_episodes_and_counts(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = setup(&env, 300, 4).await;
    let missing = alert::run(env.db(), &env.engine, &signal(rule, 1, true)).await;
    assert!(
        matches!(&missing, Err(HandlerError::Retryable(m)) if m.contains("not recorded yet")),
        "{missing:?}"
    );
    let evaluation = [
        (rule, 1, true),
        (rule, 2, true),
        (rule, 3, false),
        (rule, 4, true),
    ];
    alert::record_signals(env.db(), &evaluation)
        .await
        .expect("record");
    let clear_first = alert::run(env.db(), &env.engine, &signal(rule, 3, false))
        .await
        .expect("clear");
    assert_eq!(clear_first.change, Change::Resolved);
    assert_eq!(
        clear_first.notifications.len(),
        2,
        "the opening breach notified"
    );
    for (reading, breach) in [(1, true), (2, true)] {
        let late = alert::run(env.db(), &env.engine, &signal(rule, reading, breach))
            .await
            .expect("late");
        assert_eq!(late.change, Change::Unchanged);
        assert!(late.notifications.iter().all(|n| n.duplicate));
    }
    let next = alert::run(env.db(), &env.engine, &signal(rule, 4, true))
        .await
        .expect("next");
    assert_eq!(next.change, Change::Opened);
    let all = alerts::Entity::find().all(env.db()).await.expect("alerts");
    let counts: Vec<_> = all.iter().map(|a| (a.state.as_str(), a.count)).collect();
    assert_eq!(counts, [("RESOLVED", 2), ("OPEN", 1)]);
}

/// Many of one rule's alert jobs at once (as concurrent alert workers run them): one alert,
/// counting every breach.
async fn concurrent_breaches_of_one_rule_open_one_alert_and_count_all(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = setup(&env, 300, 12).await;
    let evaluation: Vec<_> = (1..=12).map(|r| (rule, r, true)).collect();
    alert::record_signals(env.db(), &evaluation)
        .await
        .expect("record");
    let runs = (1..=12).map(|r| {
        let env = &env;
        async move {
            alert::run(env.db(), &env.engine, &signal(rule, r, true))
                .await
                .expect("applied")
                .change
        }
    });
    let changes = futures::future::join_all(runs).await;
    let all = alerts::Entity::find().all(env.db()).await.expect("alerts");
    assert_eq!(all.len(), 1, "{changes:?}");
    assert_eq!(all[0].count, 12);
    assert_eq!(all[0].opened_reading_id, 1);
}

/// One evaluation's signals applied by one job (evaluate pushes a job per rule, for its last
/// signal). The job commits, then crashes before its `notify` jobs reach Redis: the retry
/// pushes them, although the signal that notified is not the job's own.
async fn a_retry_after_a_crash_before_the_enqueue_sends_the_batch_notifications(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let rule = setup(&env, 300, 3).await;
    let evaluation = [(rule, 1, true), (rule, 2, true), (rule, 3, true)];
    alert::record_signals(env.db(), &evaluation)
        .await
        .expect("record");
    // The first attempt's pushes go to a Redis prefix that is then thrown away: as if the
    // process died between its commit and its enqueue.
    let lost = queue::testing::TestPrefix::new("wf-lost").await;
    let first = alert::run(env.db(), &lost.engine, &signal(rule, 3, true))
        .await
        .expect("first attempt");
    assert_eq!(
        first.change,
        Change::Raised,
        "reading 1 opened it, 3 raised it"
    );
    assert_eq!(first.notifications.len(), 2, "the opening notified");
    drop(lost);

    let retried = alert::run(env.db(), &env.engine, &signal(rule, 3, true))
        .await
        .expect("retry");
    assert_eq!(retried.change, Change::Unchanged);
    assert_eq!(retried.notifications.len(), 2, "one notify per channel");
    assert!(
        retried.notifications.iter().all(|n| !n.duplicate),
        "the lost notifications reach the queue now"
    );
    let alert_id = first.alert_id.expect("the alert");
    let mut keys = Vec::new();
    for pushed in &retried.notifications {
        let job = env
            .engine
            .job(&pushed.id)
            .await
            .expect("job")
            .expect("live");
        keys.push(job.idempotency_key.expect("keyed"));
    }
    keys.sort();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("notify:{alert_id}:")) && k.ends_with(":1")),
        "the keys the lost attempt used (alert, channel, the reading that opened it): {keys:?}"
    );
    // Another job whose signal that batch applied answers with the same jobs, pushing nothing.
    let late = alert::run(env.db(), &env.engine, &signal(rule, 1, true))
        .await
        .expect("late");
    assert!(late.notifications.iter().all(|n| n.duplicate), "{late:?}");
    assert_eq!(notify_jobs_pushed(&env).await, 2);
    let all = alerts::Entity::find().all(env.db()).await.expect("alerts");
    assert_eq!((all.len(), all[0].count), (1, 3));
}

on_both_databases!(
    a_retry_after_a_crash_before_the_enqueue_sends_the_batch_notifications,
    one_open_alert_per_episode_notified_once_and_idempotent,
    with_no_throttle_every_breach_notifies,
    signals_applied_out_of_order_keep_episodes_and_counts,
    concurrent_breaches_of_one_rule_open_one_alert_and_count_all,
);

#[tokio::test]
async fn unknown_rules_and_foreign_readings_are_permanent() {
    let env = TestEnv::new(Sql::Sqlite, "wf").await;
    let rule = setup(&env, 300, 1).await;
    let unknown_rule = alert::run(env.db(), &env.engine, &signal(rule + 100, 1, true)).await;
    assert!(
        matches!(unknown_rule, Err(HandlerError::Permanent(_))),
        "{unknown_rule:?}"
    );
    let no_reading = alert::run(env.db(), &env.engine, &signal(rule, 999, true)).await;
    assert!(
        matches!(no_reading, Err(HandlerError::Permanent(_))),
        "{no_reading:?}"
    );
}
