//! Webhook delivery through the pools: a receiver that fails, and one that is down.

use std::time::Duration;

use entities::deliveries;
use queue::{JobState, NewJob};
use sea_orm::{DatabaseConnection, EntityTrait};
use testkit::{Receiver, Reply, fixtures as testing};

use super::common::{Sql, TestApp, eventually};

/// A webhook channel at `url` and `n` message notifications to it.
async fn notifications(app: &TestApp, url: &str, n: usize) -> Vec<String> {
    let sensor = testing::sensor(app.db(), "s").await;
    let rule = testing::rule(app.db(), sensor.id, "ABOVE", 1.0, 0.0, 1, 300).await;
    let channel = testing::webhook_for(app.db(), rule.id, url).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let payload = serde_json::json!({"channel": channel.id, "message": format!("note {i}")});
        let job = NewJob::new("notify", &payload)
            .expect("job")
            .with_max_attempts(12);
        ids.push(app.engine.push(job).await.expect("push").id);
    }
    ids
}

async fn delivered(db: &DatabaseConnection) -> Result<Vec<deliveries::Model>, String> {
    deliveries::Entity::find()
        .all(db)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_same_delivery_three_times_and_it_is_recorded_once() {
    let app = TestApp::new(Sql::Postgres, "deliver-retry").await;
    app.receiver
        .script([Reply::Status(500), Reply::Status(502)]);
    let ids = notifications(&app, &app.receiver.url(), 1).await;
    let pools = app.start_pools(|c| c.queues = vec!["notify".into()]);
    let db = app.db().clone();
    let rows = eventually(Duration::from_secs(15), "the delivery", || {
        let db = db.clone();
        async move {
            let rows = delivered(&db).await?;
            match rows.first() {
                Some(row) if row.status == "DELIVERED" => Ok(rows),
                _ => Err(format!("{rows:?}")),
            }
        }
    })
    .await;
    pools.stop().await;
    assert_eq!(rows.len(), 1, "one delivery row");
    assert_eq!((rows[0].attempts, rows[0].last_status_code), (3, Some(200)));
    let posts = app.receiver.received();
    assert_eq!(posts.len(), 3);
    assert!(
        posts
            .iter()
            .all(|p| p.idempotency_key == posts[0].idempotency_key)
    );
    let job = app
        .engine
        .job(&ids[0])
        .await
        .expect("query")
        .expect("exists");
    assert_eq!((job.state, job.attempt), (JobState::Succeeded, 3));
    assert_eq!(job.errors.len(), 2, "two failed attempts in the history");
}

#[tokio::test]
async fn a_down_receiver_opens_the_breaker_jobs_snooze_then_deliver_when_it_returns() {
    let app = TestApp::new(Sql::Postgres, "deliver-down").await;
    // A port that refuses connections until the receiver starts on it.
    let down = Receiver::start().await;
    let addr = down.addr;
    let url = down.url();
    drop(down);
    let ids = notifications(&app, &url, 6).await;
    let pools = app.start_pools(|c| {
        c.queues = vec!["notify".into()];
        c.concurrency = 1;
    });
    let engine = app.engine.clone();
    eventually(Duration::from_secs(10), "the breaker to open", || {
        let engine = engine.clone();
        async move {
            let open = engine.breakers().await.map_err(|e| e.to_string())?;
            (!open.is_empty()).then_some(()).ok_or("closed".to_owned())
        }
    })
    .await;
    // While it is open, jobs are snoozed (no attempt spent) rather than retried to death.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut snoozed_attempts = Vec::new();
    for id in &ids {
        let job = app.engine.job(id).await.expect("query").expect("exists");
        assert_ne!(
            job.state,
            JobState::Dead,
            "{id} died while the breaker was open"
        );
        snoozed_attempts.push(job.attempt);
    }
    assert!(
        snoozed_attempts.iter().all(|a| *a <= 4),
        "attempts were spent against an open breaker: {snoozed_attempts:?}"
    );

    let back = Receiver::start_at(addr).await;
    let db = app.db().clone();
    eventually(
        Duration::from_secs(15),
        "every delivery after the return",
        || {
            let db = db.clone();
            async move {
                let rows = delivered(&db).await?;
                let done = rows.iter().filter(|r| r.status == "DELIVERED").count();
                (done == 6)
                    .then_some(())
                    .ok_or(format!("{done} of 6 delivered"))
            }
        },
    )
    .await;
    pools.stop().await;
    let keys: std::collections::HashSet<_> = back
        .received()
        .into_iter()
        .map(|p| p.idempotency_key)
        .collect();
    assert_eq!(keys.len(), 6, "one distinct key per delivery");
    assert!(
        app.engine.breakers().await.expect("query").is_empty(),
        "closed again"
    );
}
