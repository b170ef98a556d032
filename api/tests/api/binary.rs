//! The one-process mode as users run it: the real `api` binary with `--with-workers`, a
//! SQLite file of its own, serving a job from submission to success; SIGTERM stops it cleanly.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

use super::common::{Api, Deployment, Reaped, SUBMIT, Sql, eventually, readings};

#[tokio::test]
async fn api_with_workers_runs_the_whole_pipeline_in_one_process() {
    let deployment = Deployment::new(Sql::Sqlite, "binary").await;
    let port = queue::testing::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            "--with-workers".to_owned(),
            format!("--addr=127.0.0.1:{port}"),
            format!("--redis-url={}", deployment.redis_url),
            format!("--prefix={}", deployment.redis.prefix),
            format!("--database-url={}", deployment.db.url()),
            "--static-dir=/nonexistent".to_owned(),
            "--concurrency=2".to_owned(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("api binary");
    let mut process = Reaped(Some(child));
    let api = Api {
        url: format!("http://127.0.0.1:{port}"),
        running: None,
        http: super::common::http(),
    };
    eventually(Duration::from_secs(20), "the api to answer", || async {
        api.http
            .get(format!("{}/ready", api.url))
            .send()
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    })
    .await;
    let team = api.team().await;
    api.ok(
        Some(&team.admin.access),
        "mutation { createSensor(input: {key: \"k1\", name: \"K1\", unit: \"C\"}) { id } }",
        json!({}),
    )
    .await;
    let submitted = api
        .ok(
            Some(&team.operator.access),
            SUBMIT,
            json!({ "input": { "kind": "INGEST", "payload": readings("k1", 0, &[1.0, 2.0]) } }),
        )
        .await;
    let id = submitted["submitJob"]["job"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually(Duration::from_secs(20), "the ingest and its evaluation to succeed", || async {
        let data = api
            .ok(
                Some(&team.viewer.access),
                "query($r: ID) { jobs(filter: {workflowRunId: $r, states: [SUCCEEDED]}) { edges { node { kind } } } sensor(key: \"k1\") { lastReading { value } } }",
                json!({ "r": id }),
            )
            .await;
        let done = data["jobs"]["edges"].as_array().map_or(0, Vec::len);
        if done >= 2 && data["sensor"]["lastReading"]["value"] == 2.0 {
            Ok(())
        } else {
            Err(data.to_string())
        }
    })
    .await;

    let mut child = process.0.take().expect("running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exited.success(), "a clean exit on SIGTERM: {exited:?}");
}
