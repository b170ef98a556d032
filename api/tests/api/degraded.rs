//! Redis stopped under a running API: submissions answer UNAVAILABLE in bounded time, SQL-only
//! queries keep working, and everything recovers when Redis is back.

use std::time::{Duration, Instant};

use queue::testing::{OwnRedis, free_port};
use serde_json::json;

use super::common::{Deployment, SUBMIT, Sql, code, eventually, readings};

#[tokio::test]
async fn redis_down_means_unavailable_quickly_and_recovery_after() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("steadfast-api-redis-{port}"));
    let mut redis = OwnRedis::start(dir, port);
    let deployment = Deployment::at(Sql::Sqlite, "degraded", &redis.url()).await;
    let api = deployment.api(&["--redis-timeout-ms=500"]).await;
    let team = api.team().await;
    let op = Some(team.operator.access.as_str());
    let input = || json!({ "input": { "kind": "INGEST", "payload": readings("t", 0, &[1.0]) } });
    api.ok(op, SUBMIT, input()).await;

    redis.kill();
    let started = Instant::now();
    let body = api.gql(op, SUBMIT, input()).await;
    let took = started.elapsed();
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    assert!(body["errors"][0]["extensions"]["retryAfterSeconds"].as_u64() >= Some(1));
    assert!(took < Duration::from_secs(5), "answered in {took:?}");

    // SQL-only reads keep working.
    api.ok(op, "{ sensors { key } me { email } }", json!({}))
        .await;
    let ready = super::common::get(format!("{}/ready", api.url)).await;
    assert_eq!(ready.status().as_u16(), 503);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["redis"]["up"], false);
    assert_eq!(ready["database"]["up"], true);

    redis.spawn();
    let id = eventually(
        Duration::from_secs(15),
        "submissions to work again",
        || async {
            let body = api.gql(op, SUBMIT, input()).await;
            body["data"]["submitJob"]["job"]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| body.to_string())
        },
    )
    .await;
    // The AOF (appendfsync always) kept the job accepted before the crash, and the new one is there.
    let engine = deployment.engine();
    eventually(Duration::from_secs(5), "both jobs queued", || async {
        let ready = engine
            .stats("ingest")
            .await
            .map_err(|e| e.to_string())?
            .ready;
        let found = engine.job(&id).await.map_err(|e| e.to_string())?.is_some();
        if ready == 2 && found {
            Ok(())
        } else {
            Err(format!("ready {ready}, found {found}"))
        }
    })
    .await;
    api.stop().await;
}

#[tokio::test]
async fn database_gone_means_ready_says_so_and_requests_fail_fast() {
    let deployment = Deployment::new(Sql::Postgres, "db-gone").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let viewer = Some(team.viewer.access.as_str());
    api.ok(viewer, "{ sensors { key } }", json!({})).await;

    // The database disappears under the running API (its connections are ended too).
    let name = deployment
        .db
        .url()
        .rsplit('/')
        .next()
        .expect("database name")
        .to_owned();
    let admin_url = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = entities::connect(&admin_url)
        .await
        .expect("admin connection");
    sea_orm::ConnectionTrait::execute_unprepared(
        &admin,
        &format!("DROP DATABASE {name} WITH (FORCE)"),
    )
    .await
    .expect("drop");

    let started = Instant::now();
    let body = api.gql(viewer, "{ sensors { key } }", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    let ready = super::common::get(format!("{}/ready", api.url)).await;
    assert_eq!(ready.status().as_u16(), 503);
    let ready: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(ready["database"]["up"], false, "{ready}");
    assert_eq!(ready["redis"]["up"], true);
    // What needs only Redis keeps working.
    api.ok(viewer, "{ queues { name } }", json!({})).await;
    api.stop().await;
}
