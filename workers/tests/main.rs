//! The pools run the pipeline: an ingest job pushed to Redis ends as an open alert in SQL and a
//! notify job per channel, through real apalis workers, on SQLite.

use std::time::Duration;

use chrono::Utc;
use entities::{alerts, channels, rule_channels, rules, sensors};
use migration::testing::TestDb;
use queue::{Engine, EngineConfig, JobState, NewJob};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use workers::{Context, PoolConfig};

/// Deletes the test's Redis prefix when dropped, even when the test failed.
struct PrefixGuard(String);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let url =
                    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
                if let Ok(engine) = Engine::connect(&url, EngineConfig::with_prefix(&prefix)).await
                {
                    let _ = engine.destroy_all_data().await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn an_ingest_job_flows_to_an_alert_and_its_notifications() {
    let db = TestDb::migrated_sqlite().await;
    let prefix = format!(
        "test-workers-{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let _guard = PrefixGuard(prefix.clone());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let engine = Engine::connect(&url, EngineConfig::with_prefix(&prefix))
        .await
        .expect("redis");

    let sensor = sensors::ActiveModel {
        key: Set("boiler".into()),
        name: Set("boiler".into()),
        unit: Set("°C".into()),
        device_id: Set(None),
        eval_cursor: Set(0),
        last_reading_at: Set(None),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db.db())
    .await
    .expect("sensor");
    let rule = rules::ActiveModel {
        sensor_id: Set(sensor.id),
        kind: Set("ABOVE".into()),
        threshold: Set(Some(80.0)),
        clear_threshold: Set(Some(75.0)),
        for_readings: Set(2),
        silence_seconds: Set(None),
        throttle_seconds: Set(300),
        enabled: Set(true),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(db.db())
    .await
    .expect("rule");
    for name in ["ops", "app"] {
        let channel = channels::ActiveModel {
            name: Set(name.into()),
            kind: Set("IN_APP".into()),
            url: Set(None),
            secret: Set(None),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(db.db())
        .await
        .expect("channel");
        rule_channels::ActiveModel {
            rule_id: Set(rule.id),
            channel_id: Set(channel.id),
        }
        .insert(db.db())
        .await
        .expect("link");
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let pools = tokio::spawn(workers::run_pools(
        Context {
            db: db.db().clone(),
            engine: engine.clone(),
        },
        PoolConfig {
            queues: workers::QUEUES.iter().map(|q| (*q).to_owned()).collect(),
            concurrency: 4,
            shutdown_grace: Duration::from_millis(500),
            worker_id: "test".into(),
        },
        async move {
            let _ = stopped.await;
            Ok(())
        },
    ));

    let ingest = NewJob::new(
        "ingest",
        &serde_json::json!({"readings": [
            {"sensor": "boiler", "ts": "2026-11-21T08:00:00Z", "value": 81.0, "seq": 1},
            {"sensor": "boiler", "ts": "2026-11-21T08:01:00Z", "value": 85.0, "seq": 2},
            {"sensor": "boiler", "ts": "2026-11-21T08:02:00Z", "value": 90.0, "seq": 3}
        ]}),
    )
    .expect("job");
    let pushed = engine.push(ingest).await.expect("push");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let (alert, notify_ready) = loop {
        let alert = alerts::Entity::find()
            .all(db.db())
            .await
            .expect("alerts")
            .into_iter()
            .next();
        let notify_ready = engine.stats("notify").await.expect("stats").ready;
        let alert_stats = engine.stats("alert").await.expect("stats");
        if alert.as_ref().is_some_and(|a| a.count == 2)
            && notify_ready == 2
            && alert_stats.succeeded_total == 2
        {
            break (alert, notify_ready);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pipeline did not finish: {alert:?}, notify ready {notify_ready}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    pools.await.expect("join").expect("pools stop cleanly");

    let alert = alert.expect("alert");
    assert_eq!(alert.state, "OPEN");
    assert_eq!(alert.workflow_run_id.as_deref(), Some(pushed.id.as_str()));
    assert_eq!(notify_ready, 2, "one notify job per channel, once");
    let ingest_job = engine.job(&pushed.id).await.expect("job").expect("live");
    assert_eq!(ingest_job.state, JobState::Succeeded);
    for queue in ["ingest", "evaluate", "alert"] {
        let stats = engine.stats(queue).await.expect("stats");
        assert_eq!(
            (stats.ready, stats.running, stats.dead),
            (0, 0, 0),
            "{queue} drained cleanly"
        );
    }
}
