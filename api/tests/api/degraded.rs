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
