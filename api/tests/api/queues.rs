//! Queue controls through GraphQL: pause holds jobs without losing them, resume runs them,
//! drain cancels what waits; roles, unknown queues and the audit log.

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{Deployment, SUBMIT, Sql, code, eventually, field, readings};

const QUEUES: &str =
    "{ queues { name ready scheduled paused pausedSince oldestReadyAgeMs cancelled } }";

fn queue<'a>(data: &'a Value, name: &str) -> &'a Value {
    data["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or_else(|| panic!("no queue {name} in {data}"))
}

async fn job_state(api: &super::common::Api, token: &str, id: &str) -> String {
    let data = api
        .ok(
            Some(token),
            "query($id: ID!) { job(id: $id) { state } }",
            json!({ "id": id }),
        )
        .await;
    data["job"]["state"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_paused_queue_holds_its_jobs_until_resumed_and_a_drain_cancels_what_waits() {
    let deployment = Deployment::new(Sql::Sqlite, "api-queue-controls").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op, viewer) = (
        team.admin.access.as_str(),
        team.operator.access.as_str(),
        team.viewer.access.as_str(),
    );
    api.sensor_with_device(admin, "boiler").await;
    let pause = "mutation($n: String!) { pauseQueue(name: $n) { name paused pausedSince } }";
    let resume = "mutation($n: String!) { resumeQueue(name: $n) { name paused } }";
    let drain = "mutation($n: String!) { drainQueue(name: $n) }";

    // Viewers cannot pause; nobody can pause a queue that does not exist.
    let body = api.gql(Some(viewer), pause, json!({ "n": "ingest" })).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = api.gql(Some(op), pause, json!({ "n": "nope" })).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "name"),
        "{body}"
    );
    assert!(body.to_string().contains("ingest, evaluate"), "{body}");

    let paused = api.ok(Some(op), pause, json!({ "n": "ingest" })).await;
    assert_eq!(paused["pauseQueue"]["paused"], true);
    assert!(paused["pauseQueue"]["pausedSince"].is_string(), "{paused}");

    let pools = deployment.pools();
    let submitted = api
        .ok(
            Some(op),
            SUBMIT,
            json!({ "input": { "kind": "INGEST", "payload": readings("boiler", 0, &[20.0]) } }),
        )
        .await;
    let held = submitted["submitJob"]["job"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Running pools lease nothing from it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(job_state(&api, op, &held).await, "QUEUED");
    let data = api.ok(Some(viewer), QUEUES, json!({})).await;
    let ingest = queue(&data, "ingest");
    assert_eq!(
        (ingest["paused"].clone(), ingest["ready"].clone()),
        (json!(true), json!(1)),
        "{ingest}"
    );
    assert!(
        ingest["oldestReadyAgeMs"]
            .as_u64()
            .is_some_and(|ms| ms >= 500),
        "{ingest}"
    );
    assert_eq!(queue(&data, "evaluate")["paused"], false);

    let resumed = api.ok(Some(op), resume, json!({ "n": "ingest" })).await;
    assert_eq!(resumed["resumeQueue"]["paused"], false);
    eventually(Duration::from_secs(10), "the held job ran", || async {
        let state = job_state(&api, op, &held).await;
        if state == "SUCCEEDED" {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    pools.stop().await;

    // Drain: admins only; it cancels ready and scheduled jobs, and reports how many.
    api.ok(Some(op), pause, json!({ "n": "ingest" })).await;
    let mut waiting = Vec::new();
    for (i, run_at) in [None, None, Some("2030-01-01T00:00:00Z")]
        .into_iter()
        .enumerate()
    {
        let data = api
            .ok(Some(op), SUBMIT, json!({ "input": { "kind": "INGEST", "payload": readings("boiler", 10 + i as i64, &[21.0]), "runAt": run_at } }))
            .await;
        waiting.push(
            data["submitJob"]["job"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let body = api.gql(Some(op), drain, json!({ "n": "ingest" })).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let drained = api.ok(Some(admin), drain, json!({ "n": "ingest" })).await;
    assert_eq!(drained["drainQueue"], 3);
    for id in &waiting {
        assert_eq!(job_state(&api, op, id).await, "CANCELLED", "{id}");
    }
    let data = api.ok(Some(viewer), QUEUES, json!({})).await;
    let ingest = queue(&data, "ingest");
    assert_eq!(
        (ingest["ready"].clone(), ingest["scheduled"].clone()),
        (json!(0), json!(0)),
        "{ingest}"
    );
    assert_eq!(ingest["oldestReadyAgeMs"], Value::Null);

    let actions = api.audit_actions(admin, "queue.").await;
    for action in ["queue.pause", "queue.resume", "queue.drain"] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    api.stop().await;
}

#[tokio::test]
async fn queue_limits_are_set_read_and_refused_at_the_field_and_a_job_shows_its_controls() {
    let deployment = Deployment::new(Sql::Sqlite, "api-queue-limits").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op, viewer) = (
        team.admin.access.as_str(),
        team.operator.access.as_str(),
        team.viewer.access.as_str(),
    );
    let set = "mutation($n: String!, $l: QueueLimitsInput!) { setQueueLimits(name: $n, limits: $l) { concurrency perKeyConcurrency rate { limit windowMs } perKeyRate { limit windowMs } } }";
    let read = "query($n: String!) { queueLimits(name: $n) { concurrency perKeyConcurrency rate { limit windowMs } perKeyRate { limit windowMs } } }";
    let limits = json!({
        "concurrency": 8,
        "perKeyConcurrency": 1,
        "rate": null,
        "perKeyRate": { "limit": 5, "windowMs": 1000 }
    });

    let body = api
        .gql(Some(viewer), set, json!({ "n": "evaluate", "l": limits }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    for (bad, at) in [
        (
            json!({ "perKeyConcurrency": -1 }),
            "limits.perKeyConcurrency",
        ),
        (json!({ "concurrency": 0 }), "limits.concurrency"),
        (
            json!({ "rate": { "limit": 10, "windowMs": 0 } }),
            "limits.rate.windowMs",
        ),
        (
            json!({ "perKeyRate": { "limit": -3, "windowMs": 100 } }),
            "limits.perKeyRate.limit",
        ),
    ] {
        let body = api
            .gql(Some(op), set, json!({ "n": "evaluate", "l": bad }))
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("BAD_USER_INPUT", at),
            "{body}"
        );
    }
    let body = api
        .gql(Some(op), set, json!({ "n": "nope", "l": limits }))
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "name"),
        "{body}"
    );
    let none = api.ok(Some(viewer), read, json!({ "n": "evaluate" })).await;
    assert_eq!(
        none["queueLimits"]["perKeyConcurrency"],
        Value::Null,
        "nothing stored"
    );

    let stored = api
        .ok(Some(op), set, json!({ "n": "evaluate", "l": limits }))
        .await;
    assert_eq!(stored["setQueueLimits"], limits);
    let back = api.ok(Some(viewer), read, json!({ "n": "evaluate" })).await;
    assert_eq!(back["queueLimits"], limits);
    let actions = api.audit_actions(admin, "queue.limits").await;
    assert_eq!(actions, ["queue.limits"], "one audited change");

    // A job submitted with its own timeout and limit key shows them.
    api.sensor_with_device(admin, "kiln").await;
    let submit = "mutation($input: SubmitJobInput!) { submitJob(input: $input) { job { id controls { timeoutMs limitKey waitingForKey } } } }";
    let input = json!({
        "kind": "INGEST",
        "payload": readings("kiln", 0, &[20.0]),
        "timeoutMs": 5000,
        "limitKey": "kiln"
    });
    let submitted = api.ok(Some(op), submit, json!({ "input": input })).await;
    assert_eq!(
        submitted["submitJob"]["job"]["controls"],
        json!({ "timeoutMs": 5000, "limitKey": "kiln", "waitingForKey": false })
    );
    for (bad, at) in [
        (json!({ "timeoutMs": -5 }), "input.timeoutMs"),
        (json!({ "timeoutMs": 0 }), "input.timeoutMs"),
        (json!({ "limitKey": "" }), "input.limitKey"),
    ] {
        let mut input = json!({ "kind": "INGEST", "payload": readings("kiln", 0, &[20.0]) });
        for (k, v) in bad.as_object().expect("object") {
            input[k] = v.clone();
        }
        let body = api.gql(Some(op), submit, json!({ "input": input })).await;
        assert_eq!(
            (code(&body), field(&body)),
            ("BAD_USER_INPUT", at),
            "{body}"
        );
    }
    api.stop().await;
}
