//! Redis stopped under a running API: submissions answer UNAVAILABLE in bounded time, SQL-only
//! queries keep working, and everything recovers when Redis is back.

use std::time::{Duration, Instant};

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

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

/// What one Redis crash cost a stream of submissions.
#[derive(Debug)]
struct CrashReport {
    appendfsync: &'static str,
    accepted: usize,
    lost: usize,
    refused: usize,
    recovered_in: Duration,
}

/// Redis is SIGKILLed while four clients submit jobs through the API, then restarted on its
/// AOF. With `appendfsync always` no job the API answered with an id is lost; with `everysec`
/// the loss is measured and printed (the window `docs/reliability.md` states).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_loses_no_accepted_job_with_appendfsync_always() {
    for appendfsync in ["always", "everysec"] {
        let report = kill_redis_mid_stream(appendfsync).await;
        println!(
            "redis SIGKILL, appendfsync {}: {} jobs accepted, {} lost, {} submissions refused during the outage, submissions accepted again {:?} after the restart",
            report.appendfsync, report.accepted, report.lost, report.refused, report.recovered_in
        );
        assert!(report.accepted > 100, "{report:?}");
        assert!(report.refused > 0, "the kill landed mid-stream: {report:?}");
        if appendfsync == "always" {
            assert_eq!(report.lost, 0, "{report:?}");
        }
    }
}

async fn kill_redis_mid_stream(appendfsync: &'static str) -> CrashReport {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("steadfast-api-crash-{port}"));
    let mut redis = OwnRedis::start_with(dir, port, appendfsync);
    let deployment =
        Deployment::at(Sql::Sqlite, &format!("crash-{appendfsync}"), &redis.url()).await;
    let api = deployment.api(&["--redis-timeout-ms=300"]).await;
    let token = api.team().await.operator.access;
    let stop = Arc::new(AtomicBool::new(false));
    let submit = |http: reqwest::Client, url: String, token: String| async move {
        // Scheduled an hour ahead: they wait in Redis, where the count is taken.
        let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let inputs: Vec<_> = (0..20)
            .map(|_| json!({ "kind": "EVALUATE", "payload": { "sensor": "s" }, "runAt": run_at }))
            .collect();
        let body: serde_json::Value = http
            .post(format!("{url}/graphql"))
            .bearer_auth(token)
            .json(&json!({ "query": "mutation($i: [SubmitJobInput!]!) { submitJobs(inputs: $i) { job { id } } }", "variables": { "i": inputs } }))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        body["data"]["submitJobs"].as_array().map(|results| {
            results
                .iter()
                .filter_map(|r| r["job"]["id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
    };
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, token, stop) = (
                api.http.clone(),
                api.url.clone(),
                token.clone(),
                stop.clone(),
            );
            tokio::spawn(async move {
                let (mut accepted, mut refused) = (Vec::new(), 0);
                while !stop.load(Ordering::Relaxed) {
                    match submit(http.clone(), url.clone(), token.clone()).await {
                        Some(ids) => accepted.extend(ids),
                        None => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut accepted, mut refused) = (Vec::new(), 0);
    for client in clients {
        let (ids, failures) = client.await.expect("client");
        accepted.extend(ids);
        refused += failures;
    }

    redis.spawn();
    let restarted = Instant::now();
    eventually(
        Duration::from_secs(15),
        "submissions accepted again",
        || {
            let (http, url, token) = (api.http.clone(), api.url.clone(), token.clone());
            async move {
                submit(http, url, token)
                    .await
                    .ok_or_else(|| "refused".to_owned())
            }
        },
    )
    .await;
    let recovered_in = restarted.elapsed();
    let engine = deployment.engine();
    let mut lost = 0;
    for id in &accepted {
        // The test's own connection broke with the crash too; it reconnects on a retry.
        let found = eventually(Duration::from_secs(5), "a job read", || async {
            engine
                .job(id)
                .await
                .map(|job| job.is_some())
                .map_err(|e| e.to_string())
        })
        .await;
        if !found {
            lost += 1;
        }
    }
    api.stop().await;
    CrashReport {
        appendfsync,
        accepted: accepted.len(),
        lost,
        refused,
        recovered_in,
    }
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
