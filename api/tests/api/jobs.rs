//! Submitting, validating, looking up, listing and cancelling jobs; dead jobs and their
//! triage; the rest of the contract's queries, on both databases.

use std::time::Duration;

use sea_orm::EntityTrait;
use serde_json::{Value, json};

use super::common::{Deployment, SUBMIT, Sql, code, eventually, field, readings};

#[tokio::test]
async fn submit_validates_each_kind_and_queues_nothing_on_bad_input() {
    let deployment = Deployment::new(Sql::Sqlite, "jobs-submit").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let op = Some(team.operator.access.as_str());

    let ok = api
        .ok(
            op,
            SUBMIT,
            json!({ "input": { "kind": "INGEST", "payload": readings("t1", 0, &[1.0]), "maxAttempts": 3 } }),
        )
        .await;
    let job = &ok["submitJob"]["job"];
    assert_eq!(job["kind"], "INGEST");
    assert_eq!(job["state"], "QUEUED");
    assert_eq!(job["maxAttempts"], 3);
    assert_eq!(
        job["workflowRunId"], job["id"],
        "an ingest starts its own run"
    );
    assert_eq!(ok["submitJob"]["duplicate"], false);

    let cases = [
        (
            json!({ "kind": "INGEST", "payload": { "readings": [{ "sensor": "t1", "ts": "yesterday", "value": 1 }] } }),
            "input.payload.readings.0.ts",
        ),
        (
            json!({ "kind": "INGEST", "payload": { "readings": [] } }),
            "input.payload.readings",
        ),
        (
            json!({ "kind": "INGEST", "payload": { "reading": [] } }),
            "input.payload.reading",
        ),
        (
            json!({ "kind": "INGEST", "payload": "not an object" }),
            "input.payload",
        ),
        (
            json!({ "kind": "EVALUATE", "payload": { "sensor": 5 } }),
            "input.payload.sensor",
        ),
        (
            json!({ "kind": "NOTIFY", "payload": { "channel": "one" } }),
            "input.payload.channel",
        ),
        (
            json!({ "kind": "EVALUATE", "payload": { "sensor": "x" }, "maxAttempts": 0 }),
            "input.maxAttempts",
        ),
        (
            json!({ "kind": "EVALUATE", "payload": { "sensor": "x" }, "maxAttempts": 1000 }),
            "input.maxAttempts",
        ),
        (
            json!({ "kind": "EVALUATE", "payload": { "sensor": "x" }, "idempotencyKey": "" }),
            "input.idempotencyKey",
        ),
        (
            json!({ "kind": "SILENCE_CHECK", "payload": {} }),
            "input.kind",
        ),
    ];
    for (input, expected) in cases {
        let body = api.gql(op, SUBMIT, json!({ "input": input })).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{input}: {body}");
        assert_eq!(field(&body), expected, "{input}: {body}");
    }
    // A kind that does not exist fails as a GraphQL input error, also BAD_USER_INPUT.
    let body = api
        .gql(
            op,
            SUBMIT,
            json!({ "input": { "kind": "LAUNCH", "payload": {} } }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");

    let stats = deployment.engine().stats("ingest").await.expect("stats");
    assert_eq!(stats.ready, 1, "only the valid job was queued");
    for q in ["evaluate", "notify"] {
        assert_eq!(deployment.engine().stats(q).await.expect("stats").ready, 0);
    }
    api.stop().await;
}

#[tokio::test]
async fn submit_jobs_is_all_or_nothing_and_bounded() {
    let deployment = Deployment::new(Sql::Sqlite, "jobs-batch").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let op = Some(team.operator.access.as_str());
    let batch = "mutation($inputs: [SubmitJobInput!]!) { submitJobs(inputs: $inputs) { duplicate job { id state } } }";
    let good = |i: i64| json!({ "kind": "INGEST", "payload": readings("t1", i, &[1.0]), "idempotencyKey": format!("k{i}") });

    let mut inputs: Vec<Value> = (0..5).map(good).collect();
    inputs[3] = json!({ "kind": "INGEST", "payload": { "readings": [{ "sensor": "t1", "ts": "soon", "value": 1 }] } });
    let body = api.gql(op, batch, json!({ "inputs": inputs })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(field(&body), "inputs.3.payload.readings.0.ts");
    assert_eq!(
        deployment
            .engine()
            .stats("ingest")
            .await
            .expect("stats")
            .ready,
        0
    );

    let inputs: Vec<Value> = (0..1000).map(good).collect();
    let data = api.ok(op, batch, json!({ "inputs": inputs })).await;
    let results = data["submitJobs"].as_array().expect("results");
    assert_eq!(results.len(), 1000);
    assert!(
        results
            .iter()
            .all(|r| r["duplicate"] == false && r["job"]["state"] == "QUEUED")
    );
    assert_eq!(
        deployment
            .engine()
            .stats("ingest")
            .await
            .expect("stats")
            .ready,
        1000
    );

    // The same keys again: every item answers the first job, nothing new is queued.
    let again: Vec<Value> = (0..3).map(good).collect();
    let data = api.ok(op, batch, json!({ "inputs": again })).await;
    let again = data["submitJobs"].as_array().expect("results");
    for (i, result) in again.iter().enumerate() {
        assert_eq!(result["duplicate"], true);
        assert_eq!(result["job"]["id"], results[i]["job"]["id"]);
    }
    assert_eq!(
        deployment
            .engine()
            .stats("ingest")
            .await
            .expect("stats")
            .ready,
        1000
    );

    let too_many: Vec<Value> = (0..1001).map(good).collect();
    let body = api.gql(op, batch, json!({ "inputs": too_many })).await;
    assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");
    api.stop().await;
}

async fn contract_walk(sql: Sql) {
    let deployment = Deployment::new(sql, "jobs-walk").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = Some(team.admin.access.as_str());
    let op = Some(team.operator.access.as_str());
    let receiver = testkit::Receiver::start().await;

    // Sensors, a channel, a rule that breaches above 50, a device.
    api.ok(admin, "mutation { createSensor(input: {key: \"boiler\", name: \"Boiler\", unit: \"C\"}) { key } }", json!({}))
        .await;
    let channel = api
        .ok(
            admin,
            "mutation($url: String!) { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: $url, secret: \"s3cret\"}) { id kind hasSecret } }",
            json!({ "url": receiver.url() }),
        )
        .await;
    let channel_id = channel["createChannel"]["id"].clone();
    assert_eq!(channel["createChannel"]["hasSecret"], true);
    let rule = api
        .ok(
            admin,
            "mutation($c: ID!) { createRule(input: {sensor: \"boiler\", kind: ABOVE, threshold: 50, clearThreshold: 40, channelIds: [$c]}) { id kind channelIds } }",
            json!({ "c": channel_id }),
        )
        .await;
    assert_eq!(rule["createRule"]["channelIds"][0], channel_id);
    let bad_rule = api
        .gql(
            admin,
            "mutation { createRule(input: {sensor: \"boiler\", kind: ABOVE, threshold: 50, clearThreshold: 60}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(field(&bad_rule), "input.clearThreshold");
    let device = api
        .ok(
            admin,
            "mutation { createDevice(input: {name: \"gw\", sensorKeys: [\"boiler\"]}) { apiKey device { id sensorKeys } } }",
            json!({}),
        )
        .await;
    assert!(
        device["createDevice"]["apiKey"]
            .as_str()
            .is_some_and(|k| k.len() > 40)
    );

    // Readings that breach, through the pipeline, watched through `alertUpdates`.
    let mut watcher = super::common::WsClient::connect(&api, op)
        .await
        .expect("connects");
    watcher
        .subscribe(
            "alerts",
            "subscription { alertUpdates { event alert { id state sensor count } } }",
            json!({}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pools = deployment.pools();
    let submitted = api
        .ok(op, SUBMIT, json!({ "input": { "kind": "INGEST", "payload": readings("boiler", 0, &[20.0, 60.0, 70.0]) } }))
        .await;
    let ingest_id = submitted["submitJob"]["job"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let alert_id = eventually(Duration::from_secs(20), "an alert with a delivery", || async {
        let data = api
            .ok(op, "{ alerts(filter: {state: OPEN, sensor: \"boiler\"}) { eventCursor edges { node { id count sensor deliveries { status idempotencyKey } } } } }", json!({}))
            .await;
        let node = &data["alerts"]["edges"][0]["node"];
        let delivered = node["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["status"] == "DELIVERED"));
        if delivered { Ok(node["id"].as_str().unwrap_or_default().to_owned()) } else { Err(data.to_string()) }
    })
    .await;
    assert!(!receiver.received().is_empty());
    // Two alert jobs publish after their commits, so their events may arrive in either order;
    // each carries the alert as it is now.
    let mut events = Vec::new();
    while !events.contains(&"alert_opened".to_owned()) {
        let update = watcher.next_data(Duration::from_secs(5)).await;
        assert_eq!(update["alertUpdates"]["alert"]["id"], alert_id.as_str());
        assert_eq!(update["alertUpdates"]["alert"]["sensor"], "boiler");
        events.push(
            update["alertUpdates"]["event"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    watcher.close().await;

    let run = eventually(Duration::from_secs(20), "the run to finish", || async {
        let data = api
            .ok(op, "query($id: ID!) { workflowRun(id: $id) { id state stepsTotal steps { kind state job { id state } } } }", json!({ "id": ingest_id }))
            .await;
        if data["workflowRun"]["state"] == "SUCCEEDED" { Ok(data) } else { Err(data.to_string()) }
    })
    .await;
    let kinds: Vec<&str> = run["workflowRun"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["kind"].as_str())
        .collect();
    for kind in ["INGEST", "EVALUATE", "ALERT", "NOTIFY"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }

    let job = api
        .ok(op, "query($id: ID!) { job(id: $id) { id kind state attempt maxAttempts payload result lastError idempotencyKey workflowRunId runAt nextRunAt createdAt updatedAt attempts { attempt startedAt endedAt error } } }", json!({ "id": ingest_id }))
        .await;
    assert_eq!(job["job"]["state"], "SUCCEEDED");
    assert_eq!(job["job"]["payload"]["readings"][1]["value"], 60.0);
    // The handler's own result is stored with the job.
    assert_eq!(job["job"]["result"]["stored"], 3, "{job}");
    assert_eq!(job["job"]["attempts"][0]["attempt"], 1);
    let missing = api
        .ok(op, "{ job(id: \"NOSUCHJOB\") { id } }", json!({}))
        .await;
    assert!(missing["job"].is_null());

    let page1 = api
        .ok(op, "{ jobs(first: 2, filter: {kinds: [INGEST, EVALUATE, ALERT, NOTIFY]}) { eventCursor pageInfo { hasNextPage endCursor } edges { cursor node { id kind } } } }", json!({}))
        .await;
    assert_eq!(page1["jobs"]["edges"].as_array().map(Vec::len), Some(2));
    assert_eq!(page1["jobs"]["pageInfo"]["hasNextPage"], true);
    assert!(
        page1["jobs"]["eventCursor"]
            .as_str()
            .is_some_and(|c| c.contains('-'))
    );
    let after = page1["jobs"]["pageInfo"]["endCursor"].clone();
    let page2 = api
        .ok(op, "query($a: String) { jobs(first: 500, after: $a, filter: {kinds: [INGEST, EVALUATE, ALERT, NOTIFY]}) { edges { node { id } } } }", json!({ "a": after }))
        .await;
    let seen: Vec<&Value> = page1["jobs"]["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(page2["jobs"]["edges"].as_array().into_iter().flatten())
        .collect();
    let mut ids: Vec<&str> = seen
        .iter()
        .filter_map(|e| e["node"]["id"].as_str())
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "pages do not overlap");
    assert!(
        total >= 4,
        "ingest, evaluate, alert and notify at least: {total}"
    );
    let filtered = api
        .ok(op, "query($r: ID) { jobs(filter: {workflowRunId: $r, states: [SUCCEEDED]}) { edges { node { workflowRunId state } } } }", json!({ "r": ingest_id }))
        .await;
    assert!(filtered["jobs"]["edges"].as_array().is_some_and(|e| {
        e.len() >= 4
            && e.iter()
                .all(|e| e["node"]["workflowRunId"] == ingest_id.as_str())
    }));
    let bad_page = api
        .gql(op, "{ jobs(first: 501) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(field(&bad_page), "first");

    let sensor = api
        .ok(op, "{ sensor(key: \"boiler\") { key lastSeenAt openAlerts lastReading { value } readings(last: 10) { value } rules { kind inBreach } } sensors { key } nobody: sensor(key: \"none\") { key } }", json!({}))
        .await;
    assert_eq!(sensor["sensor"]["openAlerts"], 1);
    assert_eq!(sensor["sensor"]["lastReading"]["value"], 70.0);
    assert_eq!(
        sensor["sensor"]["readings"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(sensor["sensor"]["rules"][0]["inBreach"], true);
    assert!(sensor["nobody"].is_null());

    let deliveries = api
        .ok(
            op,
            "query($a: ID!) { deliveries(alertId: $a) { status idempotencyKey jobId } }",
            json!({ "a": alert_id }),
        )
        .await;
    assert_eq!(deliveries["deliveries"][0]["status"], "DELIVERED");
    let acked = api
        .ok(
            op,
            "mutation($a: ID!) { acknowledgeAlert(id: $a) { acknowledgedBy acknowledgedAt } }",
            json!({ "a": alert_id }),
        )
        .await;
    assert_eq!(
        acked["acknowledgeAlert"]["acknowledgedBy"],
        team.operator.user_id.as_str()
    );
    let missing_alert = api
        .gql(
            op,
            "mutation { acknowledgeAlert(id: \"999999\") { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&missing_alert), "NOT_FOUND");

    let overview = api
        .ok(op, "{ queues { name ready scheduled running dead completed failed throughputPerMinute } workers { id queues inFlight } workflowRuns(first: 5) { edges { node { id state } } } }", json!({}))
        .await;
    let ingest_queue = overview["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == "ingest"))
        .cloned()
        .expect("ingest queue");
    assert!(ingest_queue["completed"].as_u64() >= Some(1));
    assert!(
        overview["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
    );
    assert!(
        overview["workflowRuns"]["edges"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );

    // Cancel: a job scheduled far ahead is cancelled at once; a finished one cannot be.
    let later = api
        .ok(op, SUBMIT, json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": "boiler" }, "runAt": "2099-01-01T00:00:00Z" } }))
        .await;
    assert_eq!(later["submitJob"]["job"]["state"], "SCHEDULED");
    let later_id = later["submitJob"]["job"]["id"].clone();
    let cancelled = api
        .ok(
            op,
            "mutation($id: ID!) { cancelJob(id: $id) { state } }",
            json!({ "id": later_id }),
        )
        .await;
    assert_eq!(cancelled["cancelJob"]["state"], "CANCELLED");
    let again = api
        .gql(
            op,
            "mutation($id: ID!) { cancelJob(id: $id) { state } }",
            json!({ "id": ingest_id }),
        )
        .await;
    assert_eq!(code(&again), "BAD_USER_INPUT");
    let nothing = api
        .gql(
            op,
            "mutation { cancelJob(id: \"NOSUCHJOB\") { state } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&nothing), "NOT_FOUND");

    pools.stop().await;
    receiver.stop();
    api.stop().await;
}

#[tokio::test]
async fn the_contract_end_to_end_on_sqlite() {
    contract_walk(Sql::Sqlite).await;
}

#[tokio::test]
async fn the_contract_end_to_end_on_postgres() {
    contract_walk(Sql::Postgres).await;
}

#[tokio::test]
async fn dead_jobs_are_grouped_requeued_and_discarded_by_admins_only() {
    let deployment = Deployment::new(Sql::Sqlite, "jobs-dead").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op) = (
        Some(team.admin.access.as_str()),
        Some(team.operator.access.as_str()),
    );
    let pools = deployment.pools();
    // Evaluating a sensor that does not exist fails permanently: four dead jobs, one group.
    let mut ids = Vec::new();
    for i in 0..4 {
        let data = api
            .ok(op, SUBMIT, json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": format!("ghost-{i}") } } }))
            .await;
        ids.push(
            data["submitJob"]["job"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let groups = eventually(Duration::from_secs(15), "four dead jobs in the ledger", || async {
        let data = api
            .ok(op, "{ deadJobGroups { kind fingerprint count sampleError lastDiedAt } deadJobs(filter: {kinds: [EVALUATE]}) { edges { node { id kind error attempts } } } }", json!({}))
            .await;
        let listed = data["deadJobs"]["edges"].as_array().map_or(0, Vec::len);
        if listed == 4 { Ok(data) } else { Err(data.to_string()) }
    })
    .await;
    let group = &groups["deadJobGroups"][0];
    assert_eq!(group["kind"], "EVALUATE");
    assert_eq!(
        group["count"], 4,
        "the same failure with different sensors is one group: {groups}"
    );
    assert!(
        group["sampleError"]
            .as_str()
            .is_some_and(|e| e.contains("unknown sensor"))
    );
    let fingerprint = group["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_owned();

    let refused = api
        .gql(
            op,
            "mutation($id: ID!) { requeueDeadJob(id: $id) { id } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(code(&refused), "FORBIDDEN");

    // Requeue one (it dies again: the sensor still does not exist), discard one, requeue
    // the rest of the group by fingerprint.
    let requeued = api
        .ok(
            admin,
            "mutation($id: ID!) { requeueDeadJob(id: $id) { id state } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(requeued["requeueDeadJob"]["id"], ids[0].as_str());
    let discarded = api
        .ok(
            admin,
            "mutation($id: ID!) { discardDeadJob(id: $id) }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert_eq!(discarded["discardDeadJob"], true);
    let gone = api
        .gql(
            admin,
            "mutation($id: ID!) { discardDeadJob(id: $id) }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert_eq!(code(&gone), "NOT_FOUND");
    let many = api
        .ok(admin, "mutation($fp: String) { requeueDeadJobs(filter: {kinds: [EVALUATE], fingerprint: $fp}) }", json!({ "fp": fingerprint }))
        .await;
    let count = many["requeueDeadJobs"].as_u64().expect("count");
    assert!(
        (2..=3).contains(&count),
        "ids 2 and 3 (and 0 if it died again already): {count}"
    );
    let by_ids = api
        .ok(
            admin,
            "mutation($ids: [ID!]) { requeueDeadJobs(filter: {ids: $ids}) }",
            json!({ "ids": ["NOSUCHJOB"] }),
        )
        .await;
    assert_eq!(by_ids["requeueDeadJobs"], 0);

    // Discard in one call: the three requeued jobs once they died again; an unknown id is
    // skipped, and a viewer is refused.
    eventually(
        Duration::from_secs(20),
        "the requeued jobs dead again",
        || async {
            let data = api
                .ok(admin, "{ deadJobGroups { count } }", json!({}))
                .await;
            let dead = data["deadJobGroups"][0]["count"].as_u64().unwrap_or(0);
            if dead == 3 {
                Ok(())
            } else {
                Err(data.to_string())
            }
        },
    )
    .await;
    let batch = json!({ "ids": [ids[0], ids[2], ids[3], "NOSUCHJOB"] });
    let discard_many = "mutation($ids: [ID!]!) { discardDeadJobs(ids: $ids) }";
    let refused = api.gql(op, discard_many, batch.clone()).await;
    assert_eq!(code(&refused), "FORBIDDEN");
    let discarded = api.ok(admin, discard_many, batch).await;
    assert_eq!(discarded["discardDeadJobs"], 3);
    eventually(Duration::from_secs(10), "no dead job left", || async {
        let data = api
            .ok(
                admin,
                "{ deadJobGroups { count } deadJobs { edges { node { id } } } }",
                json!({}),
            )
            .await;
        let empty = data["deadJobGroups"] == json!([]) && data["deadJobs"]["edges"] == json!([]);
        if empty { Ok(()) } else { Err(data.to_string()) }
    })
    .await;

    let actions = api.audit_actions(admin.expect("admin"), "dead_job.").await;
    assert_eq!(actions.len(), 5, "{actions:?}");
    assert!(
        [
            "dead_job.requeue",
            "dead_job.discard",
            "dead_job.requeue_many",
            "dead_job.discard_many"
        ]
        .iter()
        .all(|wanted| actions.iter().any(|a| a == wanted)),
        "{actions:?}"
    );
    pools.stop().await;
    api.stop().await;
}

async fn a_submitted_priority_orders_its_queue_and_stays_on_the_job(sql: Sql) {
    let deployment = Deployment::new(sql, "jobs-priority").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op) = (team.admin.access.as_str(), team.operator.access.as_str());
    api.ok(
        Some(admin),
        "mutation { createSensor(input: {key: \"vat\", name: \"Vat\", unit: \"C\"}) { key } }",
        json!({}),
    )
    .await;
    let submit =
        "mutation($input: SubmitJobInput!) { submitJob(input: $input) { job { id priority } } }";
    let mut ids = Vec::new();
    for level in ["LOW", "NORMAL", "HIGH"] {
        let input =
            json!({ "kind": "EVALUATE", "payload": { "sensor": "vat" }, "priority": level });
        let data = api.ok(Some(op), submit, json!({ "input": input })).await;
        assert_eq!(data["submitJob"]["job"]["priority"], level);
        ids.push(
            data["submitJob"]["job"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let bad = json!({ "kind": "EVALUATE", "payload": { "sensor": "vat" }, "priority": "URGENT" });
    let body = api.gql(Some(op), submit, json!({ "input": bad })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");

    // Waiting, they are in lease order: high, normal, low.
    let waiting = deployment
        .engine
        .waiting("evaluate", 10)
        .await
        .expect("waiting");
    let order: Vec<&str> = waiting.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(order, [&ids[2], &ids[1], &ids[0]]);

    // After they ran, the ledger keeps each job's priority.
    let pools = deployment.pools();
    let low = ids[0].clone();
    eventually(
        Duration::from_secs(20),
        "the low job recorded as run",
        || async {
            match entities::jobs::Entity::find_by_id(low.clone())
                .one(deployment.db())
                .await
            {
                Ok(Some(row)) if row.state == "SUCCEEDED" => Ok(row),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let row = entities::jobs::Entity::find_by_id(low.clone())
        .one(deployment.db())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.priority, "low");
    pools.stop().await;
    api.stop().await;
}

testkit::on_both_databases!(a_submitted_priority_orders_its_queue_and_stays_on_the_job);

#[tokio::test]
async fn jobs_are_found_by_subject_and_idempotency_key() {
    let deployment = Deployment::new(Sql::Postgres, "api-job-search").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let op = Some(team.operator.access.as_str());
    for sensor in ["kiln-a", "kiln-b"] {
        api.sensor_with_device(&team.admin.access, sensor).await;
    }
    let pools = deployment.pools();
    for (sensor, key) in [("kiln-a", "k1"), ("kiln-b", "k2"), ("kiln-a", "k3")] {
        api.ok(
            op,
            SUBMIT,
            json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": sensor }, "idempotencyKey": key } }),
        )
        .await;
    }
    let search = "query($f: JobsFilter) { jobs(filter: $f) { edges { node { id kind idempotencyKey payload } } } }";
    let found = |filter: Value| {
        let api = &api;
        async move {
            let data = api.ok(op, search, json!({ "f": filter })).await;
            data["jobs"]["edges"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    };
    let of_a = eventually(
        Duration::from_secs(15),
        "kiln-a's jobs in the ledger",
        || async {
            let rows = found(json!({ "subject": "kiln-a" })).await;
            if rows.len() == 2 {
                Ok(rows)
            } else {
                Err(format!("{rows:?}"))
            }
        },
    )
    .await;
    assert!(
        of_a.iter()
            .all(|e| e["node"]["payload"]["sensor"] == "kiln-a"),
        "{of_a:?}"
    );
    // The ledger follows each partition's stream on its own: kiln-b's job, pushed between
    // kiln-a's two, may be recorded after them where the deployment has several.
    let by_key = eventually(
        Duration::from_secs(15),
        "the job under key k2 in the ledger",
        || async {
            let rows = found(json!({ "idempotencyKey": "api:k2" })).await;
            if rows.is_empty() {
                Err("not yet".to_owned())
            } else {
                Ok(rows)
            }
        },
    )
    .await;
    assert_eq!(by_key.len(), 1, "{by_key:?}");
    assert_eq!(by_key[0]["node"]["payload"]["sensor"], "kiln-b");
    let both = found(json!({ "subject": "kiln-a", "kinds": ["INGEST"] })).await;
    assert!(both.is_empty(), "filters combine: {both:?}");
    pools.stop().await;
    api.stop().await;
}
