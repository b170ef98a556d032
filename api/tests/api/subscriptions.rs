//! Live updates over graphql-transport-ws: transitions as a worker runs a job, resuming from a
//! cursor, fan-out across API processes, the 4401 close on token expiry.

use std::time::Duration;

use queue::EventStream;
use serde_json::{Value, json};
use testkit::{Receiver, Reply};

use super::common::{Deployment, SUBMIT, Sql, WsClient, WsEvent, readings};

const UPDATES: &str = "subscription($f: JobUpdatesFilter, $after: String) { jobUpdates(filter: $f, after: $after) { cursor event at error nextRunAt workflowRunId job { id kind state attempt } } }";

async fn updates_until(
    client: &mut WsClient,
    done: impl Fn(&Value) -> bool,
    within: Duration,
) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let update = match client.next(left).await {
            Some(WsEvent::Next(data)) => data["jobUpdates"].clone(),
            other => panic!("after {seen:?}: expected an update, got {other:?}"),
        };
        let finished = done(&update);
        seen.push(update);
        if finished {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_subscriber_sees_queued_running_retrying_succeeded() {
    let deployment = Deployment::new(Sql::Sqlite, "sub-states").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(503)]);
    let channel = api
        .ok(
            Some(&team.admin.access),
            "mutation($url: String!) { createChannel(input: {name: \"hook\", kind: WEBHOOK, url: $url, secret: \"k\"}) { id } }",
            json!({ "url": receiver.url() }),
        )
        .await["createChannel"]["id"]
        .as_str()
        .expect("channel")
        .parse::<i64>()
        .expect("numeric id");

    let mut client = WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("connects");
    client
        .subscribe("1", UPDATES, json!({ "f": { "kinds": ["NOTIFY"] } }))
        .await;
    // Let the subscription register before the job exists.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let submitted = api
        .ok(
            Some(&team.operator.access),
            SUBMIT,
            json!({ "input": { "kind": "NOTIFY", "payload": { "channel": channel, "message": "hello" } } }),
        )
        .await;
    let id = submitted["submitJob"]["job"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let pools = deployment.pools();
    let seen = updates_until(
        &mut client,
        |u| u["job"]["state"] == "SUCCEEDED",
        Duration::from_secs(15),
    )
    .await;
    let states: Vec<&str> = seen
        .iter()
        .map(|u| {
            assert_eq!(u["job"]["id"], id.as_str());
            u["job"]["state"].as_str().unwrap_or_default()
        })
        .collect();
    assert_eq!(
        states,
        [
            "QUEUED",
            "RUNNING",
            "RETRYING",
            "QUEUED",
            "RUNNING",
            "SUCCEEDED"
        ],
        "{seen:?}"
    );
    let retry = &seen[2];
    assert_eq!(retry["event"], "retry_scheduled");
    assert!(
        retry["error"].as_str().is_some_and(|e| e.contains("503")),
        "{retry}"
    );
    assert!(retry["nextRunAt"].is_string());
    assert_eq!(seen[4]["job"]["attempt"], 2);
    assert_eq!(receiver.received().len(), 2);
    client.close().await;
    pools.stop().await;
    api.stop().await;
}

#[tokio::test]
async fn resuming_from_a_cursor_misses_nothing_and_repeats_nothing() {
    let deployment = Deployment::new(Sql::Sqlite, "sub-resume").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let op = Some(team.operator.access.as_str());
    let later = |i: usize| json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": format!("s{i}") }, "runAt": "2099-01-01T00:00:00Z" } });

    // A list loaded at some point, its eventCursor the place to subscribe from.
    let listed = api.ok(op, "{ jobs { eventCursor } }", json!({})).await;
    let start = listed["jobs"]["eventCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    for i in 0..3 {
        api.ok(op, SUBMIT, later(i)).await;
    }
    let mut client = WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("connects");
    client
        .subscribe("a", UPDATES, json!({ "after": start }))
        .await;
    let mut received: Vec<String> = Vec::new();
    for _ in 0..3 {
        let update = client.next_data(Duration::from_secs(5)).await;
        received.push(
            update["jobUpdates"]["cursor"]
                .as_str()
                .expect("cursor")
                .to_owned(),
        );
    }
    // Live from here: two more, then the connection drops.
    for i in 3..5 {
        api.ok(op, SUBMIT, later(i)).await;
    }
    for _ in 0..2 {
        let update = client.next_data(Duration::from_secs(5)).await;
        received.push(
            update["jobUpdates"]["cursor"]
                .as_str()
                .expect("cursor")
                .to_owned(),
        );
    }
    client.close().await;
    // While disconnected, more happens.
    for i in 5..9 {
        api.ok(op, SUBMIT, later(i)).await;
    }
    let last = received.last().cloned().expect("some");
    let mut client = WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("connects");
    client
        .subscribe("b", UPDATES, json!({ "after": last }))
        .await;
    for _ in 0..4 {
        let update = client.next_data(Duration::from_secs(5)).await;
        received.push(
            update["jobUpdates"]["cursor"]
                .as_str()
                .expect("cursor")
                .to_owned(),
        );
    }
    api.ok(op, SUBMIT, later(9)).await;
    let update = client.next_data(Duration::from_secs(5)).await;
    received.push(
        update["jobUpdates"]["cursor"]
            .as_str()
            .expect("cursor")
            .to_owned(),
    );
    assert!(
        client.next(Duration::from_millis(300)).await.is_none(),
        "nothing more than the stream holds"
    );

    // Exactly what the stream holds after the list's cursor: in order where there is one
    // partition; over several, each entry once (order holds per partition, so per job).
    let entries = deployment
        .engine()
        .read_stream(EventStream::Jobs, &start, 1000)
        .await
        .expect("stream");
    assert_eq!(received.len(), 10);
    assert_eq!(entries.len(), 10);
    let partitions = deployment.engine().partitions();
    if partitions == 1 {
        let stream: Vec<String> = entries.into_iter().map(|e| e.cursor).collect();
        assert_eq!(received, stream);
    } else {
        let last = queue::EventCursor::parse(received.last().expect("some"), partitions)
            .expect("a cursor");
        assert!(
            entries.iter().all(|e| last.covers(e.partition, &e.id)),
            "the last cursor received covers every entry"
        );
    }

    // Trimmed past the list's cursor (no resume window): CURSOR_EXPIRED, so the client reloads.
    let mut config = queue::testing::config(&deployment.redis.prefix);
    config.resume_window = Duration::ZERO;
    let trimmer = queue::Engine::connect(&deployment.redis_url, config)
        .await
        .expect("engine");
    assert!(trimmer.trim_job_events().await.expect("trim") > 0);
    let mut client = WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("connects");
    client
        .subscribe("c", UPDATES, json!({ "after": start }))
        .await;
    match client.next(Duration::from_secs(5)).await {
        Some(WsEvent::Error(payload)) => {
            assert!(payload.to_string().contains("CURSOR_EXPIRED"), "{payload}");
        }
        other => panic!("expected CURSOR_EXPIRED, got {other:?}"),
    }
    client.close().await;
    api.stop().await;
}

#[tokio::test]
async fn a_subscriber_on_one_api_process_sees_jobs_submitted_through_another() {
    let deployment = Deployment::new(Sql::Postgres, "sub-two").await;
    let first = deployment.api(&[]).await;
    let second = deployment.api(&[]).await;
    let team = first.team().await;
    let mut client = WsClient::connect(&first, Some(&team.viewer.access))
        .await
        .expect("connects");
    let submitted = second
        .ok(Some(&team.operator.access), SUBMIT, json!({ "input": { "kind": "INGEST", "payload": readings("t", 0, &[1.0]), "runAt": "2099-01-01T00:00:00Z" } }))
        .await;
    let id = submitted["submitJob"]["job"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    client
        .subscribe("1", UPDATES, json!({ "f": { "workflowRunId": id } }))
        .await;
    // Subscribed after the push, so cancelled through the second process to make a live event.
    tokio::time::sleep(Duration::from_millis(200)).await;
    second
        .ok(
            Some(&team.operator.access),
            "mutation($id: ID!) { cancelJob(id: $id) { state } }",
            json!({ "id": id }),
        )
        .await;
    let update = client.next_data(Duration::from_secs(5)).await;
    assert_eq!(update["jobUpdates"]["job"]["id"], id.as_str());
    assert_eq!(update["jobUpdates"]["job"]["state"], "CANCELLED");
    assert_eq!(update["jobUpdates"]["workflowRunId"], id.as_str());
    client.close().await;
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn an_expired_token_closes_the_socket_with_4401_and_a_bad_one_is_refused() {
    let deployment = Deployment::new(Sql::Sqlite, "sub-expiry").await;
    let api = deployment.api(&["--access-token-ttl-secs=2"]).await;
    let admin = api.register("admin@example.com").await;
    let mut client = WsClient::connect(&api, Some(&admin.access))
        .await
        .expect("connects");
    client.subscribe("1", UPDATES, json!({})).await;
    client
        .subscribe("2", "subscription { queueStats { name ready } }", json!({}))
        .await;
    let stats = client.next_data(Duration::from_secs(3)).await;
    assert!(
        stats["queueStats"].as_array().is_some_and(|q| q.len() == 5),
        "{stats}"
    );
    let closed = client.next_not_data(Duration::from_secs(5)).await;
    assert!(
        matches!(closed, Some(WsEvent::Closed(Some(4401)))),
        "{closed:?}"
    );

    // Connecting with the expired token: accepted, then closed 4401 at once.
    let mut again = WsClient::connect(&api, Some(&admin.access)).await;
    if let Ok(client) = again.as_mut() {
        let closed = client.next(Duration::from_secs(3)).await;
        assert!(
            matches!(closed, Some(WsEvent::Closed(Some(4401)))),
            "{closed:?}"
        );
    } else {
        assert_eq!(again.err(), Some(Some(4401)));
    }
    // A forged token never gets an ack.
    let refused = WsClient::connect(&api, Some("not.a.token")).await;
    assert!(refused.is_err(), "a bad token is refused at init");
    // No token: connected, but every subscription needs one.
    let mut anonymous = WsClient::connect(&api, None).await.expect("connects");
    anonymous.subscribe("1", UPDATES, json!({})).await;
    match anonymous.next(Duration::from_secs(3)).await {
        Some(WsEvent::Error(payload)) => {
            assert!(payload.to_string().contains("UNAUTHENTICATED"), "{payload}")
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    api.stop().await;
}

#[tokio::test]
async fn a_running_job_s_progress_shows_on_the_job_and_in_its_updates() {
    let deployment = Deployment::new(Sql::Sqlite, "sub-progress").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let viewer = team.viewer.access.as_str();
    let start = deployment
        .engine
        .stream_position(queue::EventStream::Jobs)
        .await
        .expect("position");
    let id = deployment
        .engine
        .push(queue::NewJob::raw("notify", "notify", "{}".into()))
        .await
        .expect("push")
        .id;
    let leased = deployment
        .engine
        .fetch(&queue::FetchRequest {
            queue: "notify",
            worker_id: "test",
            max_jobs: 1,
            lease: Duration::from_secs(60),
            backoff_base: Duration::ZERO,
            backoff_cap: Duration::ZERO,
            timeout: None,
            timeout_grace: Duration::ZERO,
        })
        .await
        .expect("fetch")
        .jobs;
    assert!(
        deployment
            .engine
            .report_progress(&id, &leased[0].token, 60, "3 of 5 channels")
            .await
            .expect("report")
    );

    let job = api
        .ok(
            Some(viewer),
            "query($id: ID!) { job(id: $id) { state progress { percent message } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        job["job"],
        json!({ "state": "RUNNING", "progress": { "percent": 60, "message": "3 of 5 channels" } })
    );
    let mut client = WsClient::connect(&api, Some(viewer))
        .await
        .expect("connects");
    client
        .subscribe(
            "p",
            "subscription($f: JobUpdatesFilter, $after: String) { jobUpdates(filter: $f, after: $after) { event progress { percent message } job { state } } }",
            json!({ "f": { "ids": [id] }, "after": start }),
        )
        .await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(client.next_data(Duration::from_secs(5)).await["jobUpdates"].clone());
    }
    assert_eq!(
        events,
        [
            json!({ "event": "enqueued", "progress": null, "job": { "state": "QUEUED" } }),
            json!({ "event": "started", "progress": null, "job": { "state": "RUNNING" } }),
            json!({ "event": "progress", "progress": { "percent": 60, "message": "3 of 5 channels" }, "job": { "state": "RUNNING" } }),
        ]
    );
    client.close().await;
    api.stop().await;
}
