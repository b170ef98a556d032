use std::time::Duration;

use entities::deliveries;
use queue::{BreakerPolicy, EventStream};
use sea_orm::{EntityTrait, PaginatorTrait};
use serde_json::json;
use testkit::{Receiver, Reply, fixtures as testing};
use workflows::{
    HandlerError,
    jobs::{
        alert::{self, Alert},
        ingest,
        notify::{self, DestinationPolicy, Notifier, Notify, NotifyConfig, Sent},
    },
};

use super::env::{Sql, TestEnv, on_both_databases};

fn notifier() -> Notifier {
    Notifier::new(NotifyConfig {
        timeout: Duration::from_millis(300),
        breaker: BreakerPolicy {
            failure_threshold: 2,
            cool_down: Duration::from_millis(150),
            probe_timeout: Duration::from_millis(500),
        },
        destinations: DestinationPolicy::allowing_loopback(),
        snooze_limit: 4,
    })
    .expect("notifier")
}

/// An open alert on sensor "tank" whose rule notifies a webhook at `url`; returns
/// (alert id, channel id).
async fn open_alert(env: &TestEnv, url: &str) -> (i64, i64) {
    let sensor = testing::sensor(env.db(), "tank").await;
    let rule = testing::rule(env.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, 300).await;
    let channel = testing::webhook_for(env.db(), rule.id, url).await;
    let batch: ingest::Ingest = workflows::decode_payload(json!({
        "readings": [{"sensor": "tank", "ts": "2026-11-21T08:00:00Z", "value": 91.5, "seq": 1}]
    }))
    .expect("payload");
    ingest::run(env.db(), &env.engine, "01RUN", &batch)
        .await
        .expect("ingest");
    let signal = Alert {
        rule: rule.id,
        sensor: "tank".into(),
        reading: 1,
        breach: true,
    };
    alert::record_signals(env.db(), &[(rule.id, 1, true)])
        .await
        .expect("record");
    let applied = alert::run(env.db(), &env.engine, &signal)
        .await
        .expect("alert");
    (applied.alert_id.expect("opened"), channel.id)
}

fn about(alert: i64, channel: i64) -> Notify {
    Notify {
        channel,
        alert: Some(alert),
        message: None,
    }
}

async fn delivery(env: &TestEnv, job_id: &str) -> deliveries::Model {
    use sea_orm::{ColumnTrait, QueryFilter};
    deliveries::Entity::find()
        .filter(deliveries::Column::JobId.eq(job_id))
        .one(env.db())
        .await
        .expect("query")
        .expect("delivery row")
}

async fn a_signed_webhook_is_delivered_once(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    let notifier = notifier();
    let payload = about(alert, channel);
    let sent = notify::run(env.db(), &env.engine, &notifier, "J1", &payload)
        .await
        .expect("delivered");
    assert_eq!(sent, Sent::Delivered { status: 200 });
    // The same job again (a re-run after a crash): nothing is sent twice.
    let again = notify::run(env.db(), &env.engine, &notifier, "J1", &payload)
        .await
        .expect("re-run");
    assert_eq!(again, Sent::AlreadyDelivered);

    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let post = &received[0];
    assert_eq!(post.idempotency_key, notify::delivery_key("J1"));
    assert_eq!(
        post.signature,
        notify::signature(testing::WEBHOOK_SECRET, &post.body),
        "the signature is the HMAC-SHA256 of the exact body"
    );
    assert_ne!(
        post.signature,
        notify::signature("another secret", &post.body)
    );
    let body = post.json();
    assert_eq!(body["type"], "alert");
    assert_eq!(body["alert"]["id"], alert);
    assert_eq!(body["alert"]["state"], "OPEN");
    assert_eq!(body["alert"]["sensor"]["key"], "tank");
    assert_eq!(body["alert"]["lastReading"]["value"], 91.5);
    let row = delivery(&env, "J1").await;
    assert_eq!(
        (row.status.as_str(), row.attempts, row.last_status_code),
        ("DELIVERED", 1, Some(200))
    );
    assert!(row.delivered_at.is_some());
    assert_eq!(
        deliveries::Entity::find()
            .count(env.db())
            .await
            .expect("query"),
        1
    );
}

async fn each_answer_is_classified(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    let notifier = notifier();
    let payload = about(alert, channel);
    receiver.script([
        Reply::Status(503),
        Reply::Status(408),
        Reply::TooManyRequests(7),
        Reply::Stall(Duration::from_millis(800)),
        Reply::Status(200),
    ]);
    let run = || notify::run(env.db(), &env.engine, &notifier, "J2", &payload);
    assert!(matches!(run().await, Err(HandlerError::Retryable(m)) if m.contains("503")));
    assert!(matches!(run().await, Err(HandlerError::Retryable(m)) if m.contains("408")));
    match run().await {
        Err(HandlerError::Snooze { after, .. }) => assert_eq!(after, Duration::from_secs(7)),
        other => panic!("429 with Retry-After must snooze, got {other:?}"),
    }
    assert!(matches!(run().await, Err(HandlerError::Retryable(m)) if m.contains("timed out")));
    assert_eq!(
        run().await.expect("delivered"),
        Sent::Delivered { status: 200 }
    );
    let keys: Vec<_> = receiver
        .received()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 5);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "every resend carries the same key: {keys:?}"
    );
    let row = delivery(&env, "J2").await;
    assert_eq!((row.status.as_str(), row.attempts), ("DELIVERED", 5));

    // A refusal (4xx other than 408/429) is permanent and marks the delivery failed.
    receiver.script([Reply::Status(422)]);
    let refused = notify::run(env.db(), &env.engine, &notifier, "J3", &payload).await;
    assert!(matches!(refused, Err(HandlerError::Permanent(m)) if m.contains("422")));
    let row = delivery(&env, "J3").await;
    assert_eq!(
        (row.status.as_str(), row.last_status_code),
        ("FAILED", Some(422))
    );
}

async fn a_down_receiver_opens_the_breaker_and_jobs_snooze_until_it_returns(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let addr = receiver.addr;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    receiver.stop();
    drop(receiver);
    let notifier = notifier();
    let payload = about(alert, channel);
    let run = |job: &'static str| notify::run(env.db(), &env.engine, &notifier, job, &payload);
    for job in ["J1", "J2"] {
        assert!(
            matches!(run(job).await, Err(HandlerError::Retryable(m)) if m.contains("unreachable"))
        );
    }
    // Two failures in a row: open. The next job is snoozed without a connection attempt.
    match run("J3").await {
        Err(HandlerError::Snooze { after, reason }) => {
            assert!(after <= Duration::from_millis(150), "{after:?}");
            assert!(reason.contains("circuit breaker open"), "{reason}");
        }
        other => panic!("expected a snooze, got {other:?}"),
    }
    let snoozed = delivery(&env, "J3").await;
    assert_eq!(snoozed.attempts, 0, "a snooze sends nothing");
    let open = env.engine.breakers().await.expect("breakers");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].name, addr.to_string());

    let back = Receiver::start_at(addr).await;
    tokio::time::sleep(Duration::from_millis(170)).await;
    // Half-open: the first job through is the probe; it succeeds and closes the breaker.
    assert_eq!(
        run("J3").await.expect("probe"),
        Sent::Delivered { status: 200 }
    );
    assert_eq!(
        run("J1").await.expect("closed"),
        Sent::Delivered { status: 200 }
    );
    assert!(env.engine.breakers().await.expect("breakers").is_empty());
    assert_eq!(back.received().len(), 2);
}

async fn in_app_delivery_is_a_row_and_an_event(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let sensor = testing::sensor(env.db(), "tank").await;
    let rule = testing::rule(env.db(), sensor.id, "ABOVE", 80.0, 75.0, 1, 300).await;
    let channel = testing::channel_for(env.db(), rule.id, "in-app", "IN_APP").await;
    let notifier = notifier();
    let payload = Notify {
        channel: channel.id,
        alert: None,
        message: Some("maintenance at noon".into()),
    };
    for _ in 0..2 {
        notify::run(env.db(), &env.engine, &notifier, "J9", &payload)
            .await
            .expect("in-app");
    }
    let row = delivery(&env, "J9").await;
    assert_eq!((row.status.as_str(), row.attempts), ("DELIVERED", 1));
    let events = env
        .engine
        .read_stream(EventStream::App, "0-0", 100)
        .await
        .expect("app events");
    let notes: Vec<_> = events
        .iter()
        .filter(|e| e.fields.get("type").map(String::as_str) == Some("notification"))
        .collect();
    assert_eq!(notes.len(), 1, "the second run found it delivered");
    let body: serde_json::Value =
        serde_json::from_str(&notes[0].fields["body"]).expect("event body");
    assert_eq!(body["message"], "maintenance at noon");
    assert_eq!(notes[0].fields["key"], notify::delivery_key("J9"));
}

async fn bad_channels_are_permanent_errors(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let notifier = notifier();
    let unknown = Notify {
        channel: 999,
        alert: None,
        message: Some("hi".into()),
    };
    let err = notify::run(env.db(), &env.engine, &notifier, "J1", &unknown).await;
    assert!(matches!(err, Err(HandlerError::Permanent(m)) if m.contains("unknown channel 999")));
    let (alert, channel) = open_alert(&env, "ftp://example.invalid/hook").await;
    let err = notify::run(
        env.db(),
        &env.engine,
        &notifier,
        "J2",
        &about(alert, channel),
    )
    .await;
    assert!(matches!(err, Err(HandlerError::Permanent(m)) if m.contains("http(s)")));
    let missing = Notify {
        channel,
        alert: Some(alert + 100),
        message: None,
    };
    let err = notify::run(env.db(), &env.engine, &notifier, "J3", &missing).await;
    assert!(matches!(err, Err(HandlerError::Permanent(m)) if m.contains("unknown alert")));
}

/// Loopback, private, link-local (metadata) addresses are refused by default, as IP literals
/// and as names that resolve to them, and nothing is sent; an allow-listed network passes.
async fn webhooks_to_non_public_addresses_are_refused_unless_allowed(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    let guarded = Notifier::new(NotifyConfig {
        timeout: Duration::from_millis(300),
        ..NotifyConfig::default()
    })
    .expect("notifier");
    let payload = about(alert, channel);
    let refused = notify::run(env.db(), &env.engine, &guarded, "J-literal", &payload).await;
    assert!(
        matches!(&refused, Err(HandlerError::Permanent(m)) if m.contains("loopback")),
        "{refused:?}"
    );
    assert_eq!(delivery(&env, "J-literal").await.status, "FAILED");
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.7/hook",
        "http://[::ffff:127.0.0.1]:1/hook",
    ] {
        set_url(&env, channel, url).await;
        let job = format!("J-{url}");
        let refused = notify::run(env.db(), &env.engine, &guarded, &job, &payload).await;
        assert!(
            matches!(&refused, Err(HandlerError::Permanent(m)) if m.contains("WEBHOOK_ALLOW_NETWORKS")),
            "{url}: {refused:?}"
        );
    }
    // A name is checked on what it resolves to, at send time.
    set_url(
        &env,
        channel,
        &format!("http://localhost:{}/hook", receiver.addr.port()),
    )
    .await;
    let refused = notify::run(env.db(), &env.engine, &guarded, "J-name", &payload).await;
    assert!(
        matches!(&refused, Err(HandlerError::Permanent(m)) if m.contains("resolves only to refused addresses")),
        "{refused:?}"
    );
    assert!(receiver.received().is_empty(), "nothing was sent");
    // The allow-list lets the local receiver through.
    let allowed = notify::run(env.db(), &env.engine, &notifier(), "J-allowed", &payload).await;
    assert_eq!(allowed.expect("delivered"), Sent::Delivered { status: 200 });
    assert_eq!(receiver.received().len(), 1);
}

async fn set_url(env: &TestEnv, channel: i64, url: &str) {
    use sea_orm::{ActiveModelTrait, Set};
    let row = entities::channels::Entity::find_by_id(channel)
        .one(env.db())
        .await
        .expect("query")
        .expect("channel");
    let mut active: entities::channels::ActiveModel = row.into();
    active.url = Set(Some(url.into()));
    active.update(env.db()).await.expect("update");
}

/// A receiver that always answers 429 snoozes a delivery only `snooze_limit` times; after that
/// a 429 spends attempts like a 503.
async fn a_receiver_that_always_answers_429_cannot_snooze_a_job_for_ever(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    let notifier = notifier(); // snooze_limit: 4
    let payload = about(alert, channel);
    receiver.script((0..8).map(|_| Reply::TooManyRequests(1)));
    let mut snoozes = 0;
    let mut retries = 0;
    for _ in 0..6 {
        match notify::run(env.db(), &env.engine, &notifier, "J429", &payload).await {
            Err(HandlerError::Snooze { .. }) => snoozes += 1,
            Err(HandlerError::Retryable(m)) if m.contains("429") => retries += 1,
            other => panic!("expected a snooze or a retry, got {other:?}"),
        }
    }
    assert_eq!((snoozes, retries), (3, 3), "snoozes end at the limit");
    assert_eq!(delivery(&env, "J429").await.attempts, 6);
}

/// A delivery's error never carries the URL: its query may hold a token.
async fn errors_never_carry_the_webhook_url(sql: Sql) {
    let env = TestEnv::new(sql, "wf").await;
    let receiver = Receiver::start().await;
    let (alert, channel) = open_alert(&env, &receiver.url()).await;
    let port = receiver.addr.port();
    receiver.stop();
    tokio::time::sleep(Duration::from_millis(20)).await;
    set_url(
        &env,
        channel,
        &format!("http://user:hunter2@127.0.0.1:{port}/hook?token=s3cr3t-token"),
    )
    .await;
    let err = notify::run(
        env.db(),
        &env.engine,
        &notifier(),
        "J-secret",
        &about(alert, channel),
    )
    .await
    .expect_err("the receiver is down");
    let row = delivery(&env, "J-secret").await;
    let error = row.last_error.unwrap_or_default();
    for text in [format!("{err:?}"), error.clone()] {
        assert!(text.contains("unreachable"), "{text}");
        assert!(
            !text.contains("s3cr3t-token") && !text.contains("hunter2"),
            "no secret in {text}"
        );
    }
}

on_both_databases!(
    webhooks_to_non_public_addresses_are_refused_unless_allowed,
    a_receiver_that_always_answers_429_cannot_snooze_a_job_for_ever,
    errors_never_carry_the_webhook_url,
    a_signed_webhook_is_delivered_once,
    each_answer_is_classified,
    a_down_receiver_opens_the_breaker_and_jobs_snooze_until_it_returns,
    in_app_delivery_is_a_row_and_an_event,
    bad_channels_are_permanent_errors,
);
