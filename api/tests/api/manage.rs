//! Editing what the system holds: rules, sensors and channels, each against the version it
//! read (a stale edit is refused with nothing changed), each audited with before and after; a
//! rule's edits keep its alerts consistent. On both databases, jobs performed with the test
//! kit's deterministic drain.

use serde_json::{Value, json};
use testkit::on_both_databases;

use super::common::{Api, Deployment, SUBMIT, Sql, code, field, readings};

const UPDATE_RULE: &str = "mutation($id: ID!, $v: Int!, $input: UpdateRuleInput!) { updateRule(id: $id, expectedVersion: $v, input: $input) { id kind threshold clearThreshold forReadings throttleSeconds channelIds enabled inBreach version updatedAt } }";
const SET_RULE_ENABLED: &str = "mutation($id: ID!, $v: Int!, $on: Boolean!) { setRuleEnabled(id: $id, expectedVersion: $v, enabled: $on) { enabled version inBreach } }";
const ALERTS: &str = "query($s: String!) { alerts(filter: {sensor: $s}, first: 50) { nodes { id ruleId state count } } }";

async fn ingest(api: &Api, token: &str, sensor: &str, seq: i64, values: &[f64]) {
    api.ok(
        Some(token),
        SUBMIT,
        json!({ "input": { "kind": "INGEST", "payload": readings(sensor, seq, values) } }),
    )
    .await;
}

async fn alerts(api: &Api, token: &str, sensor: &str) -> Vec<Value> {
    api.ok(Some(token), ALERTS, json!({ "s": sensor })).await["alerts"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn open(alerts: &[Value]) -> Vec<&Value> {
    alerts.iter().filter(|a| a["state"] == "OPEN").collect()
}

async fn rules_edited_follow_their_version_and_keep_alerts_consistent(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-rules").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op) = (team.admin.access.as_str(), team.operator.access.as_str());
    api.sensor_with_device(admin, "tank").await;
    let channel = api
        .ok(
            Some(admin),
            "mutation($u: String!) { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: $u, secret: \"k\"}) { id } }",
            json!({ "u": deployment.receiver.url() }),
        )
        .await["createChannel"]["id"]
        .clone();
    let created = api
        .ok(
            Some(admin),
            "mutation($c: [ID!]) { createRule(input: {sensor: \"tank\", kind: ABOVE, threshold: 80, channelIds: $c}) { id version } }",
            json!({ "c": [channel] }),
        )
        .await;
    let rule = created["createRule"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["createRule"]["version"], 1);

    // A breach under the rule as created opens an alert.
    ingest(&api, op, "tank", 0, &[90.0]).await;
    deployment.drain().await;
    let before = alerts(&api, op, "tank").await;
    assert_eq!(open(&before).len(), 1, "{before:?}");

    // Bad edits change nothing: each names its field, and the version stays.
    for (input, bad_field) in [
        (json!({ "clearThreshold": 99 }), "input.clearThreshold"),
        (json!({ "forReadings": 0 }), "input.forReadings"),
        (json!({ "throttleSeconds": -1 }), "input.throttleSeconds"),
        (json!({ "kind": "SILENCE" }), "input.silenceSeconds"),
        (json!({ "channelIds": ["999999"] }), "input.channelIds.0"),
    ] {
        let body = api
            .gql(
                Some(admin),
                UPDATE_RULE,
                json!({ "id": rule, "v": 1, "input": input }),
            )
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("BAD_USER_INPUT", bad_field),
            "{body}"
        );
    }
    let body = api
        .gql(
            Some(admin),
            UPDATE_RULE,
            json!({ "id": "424242", "v": 1, "input": { "threshold": 1 } }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    let body = api
        .gql(
            Some(op),
            UPDATE_RULE,
            json!({ "id": rule, "v": 1, "input": { "threshold": 95 } }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");

    // A new threshold: the open alert is resolved at once, and the rule starts outside a breach.
    let edited = api
        .ok(
            Some(admin),
            UPDATE_RULE,
            json!({ "id": rule, "v": 1, "input": { "threshold": 95 } }),
        )
        .await["updateRule"]
        .clone();
    assert_eq!(
        (
            edited["threshold"].clone(),
            edited["clearThreshold"].clone(),
            edited["version"].clone(),
            edited["inBreach"].clone()
        ),
        (json!(95.0), json!(80.0), json!(2), json!(false)),
        "{edited}"
    );
    assert!(edited["updatedAt"].is_string());
    assert!(open(&alerts(&api, op, "tank").await).is_empty());

    // An edit against the version it replaced is refused, and changes nothing.
    let body = api
        .gql(
            Some(admin),
            UPDATE_RULE,
            json!({ "id": rule, "v": 1, "input": { "threshold": 50 } }),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("CONFLICT", "expectedVersion"),
        "{body}"
    );
    assert!(body.to_string().contains("at 2 now"), "{body}");

    // The next readings are judged by the rule as edited: 90 no longer breaches, 96 does.
    ingest(&api, op, "tank", 1, &[90.0]).await;
    deployment.drain().await;
    assert!(open(&alerts(&api, op, "tank").await).is_empty());
    ingest(&api, op, "tank", 2, &[96.0]).await;
    deployment.drain().await;
    let now = alerts(&api, op, "tank").await;
    let opened = open(&now);
    assert_eq!(opened.len(), 1, "{now:?}");
    assert_eq!(opened[0]["count"], 1);
    assert_eq!(
        now.len(),
        2,
        "the first alert resolved, a second opened: {now:?}"
    );

    // Throttle and channels apply to the open alert: it stays open.
    let edited = api
        .ok(
            Some(admin),
            UPDATE_RULE,
            json!({ "id": rule, "v": 2, "input": { "throttleSeconds": 0, "channelIds": [] } }),
        )
        .await["updateRule"]
        .clone();
    assert_eq!(
        (edited["version"].clone(), edited["channelIds"].clone()),
        (json!(3), json!([]))
    );
    assert_eq!(open(&alerts(&api, op, "tank").await).len(), 1);

    // Switched off: its alert resolves and breaches raise nothing.
    let off = api
        .ok(
            Some(admin),
            SET_RULE_ENABLED,
            json!({ "id": rule, "v": 3, "on": false }),
        )
        .await["setRuleEnabled"]
        .clone();
    assert_eq!(
        (off["enabled"].clone(), off["version"].clone()),
        (json!(false), json!(4))
    );
    assert!(open(&alerts(&api, op, "tank").await).is_empty());
    ingest(&api, op, "tank", 3, &[99.0]).await;
    deployment.drain().await;
    assert!(open(&alerts(&api, op, "tank").await).is_empty());

    // Archived: no longer listed, never evaluated; its alerts keep their history.
    let body = api
        .gql(
            Some(admin),
            "mutation($id: ID!) { archiveRule(id: $id, expectedVersion: 1) }",
            json!({ "id": rule }),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    let archived = api
        .ok(
            Some(admin),
            "mutation($id: ID!) { archiveRule(id: $id, expectedVersion: 4) }",
            json!({ "id": rule }),
        )
        .await;
    assert_eq!(archived["archiveRule"], true);
    let listed = api
        .ok(
            Some(op),
            "{ sensor(key: \"tank\") { rules { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed["sensor"]["rules"], json!([]));
    assert_eq!(alerts(&api, op, "tank").await.len(), 2);
    let body = api
        .gql(
            Some(admin),
            UPDATE_RULE,
            json!({ "id": rule, "v": 5, "input": { "threshold": 1 } }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // Every change is in the audit log with the rule before and after.
    let log = api.audit_entries(admin, "rule.").await;
    let update = log
        .iter()
        .find(|e| e["action"] == "rule.update" && e["details"]["before"]["version"] == 1)
        .unwrap_or_else(|| panic!("no audited threshold edit in {log:?}"));
    assert_eq!(update["details"]["before"]["threshold"], 80.0);
    assert_eq!(update["details"]["after"]["threshold"], 95.0);
    assert_eq!(update["details"]["episodeEnded"], true);
    for action in ["rule.create", "rule.disable", "rule.archive"] {
        assert!(
            log.iter().any(|e| e["action"] == action),
            "{action} missing: {log:?}"
        );
    }
    api.stop().await;
}

async fn of_two_concurrent_edits_of_one_version_exactly_one_lands(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-race").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = team.admin.access.as_str();
    api.sensor_with_device(admin, "vat").await;
    let rule = api
        .ok(
            Some(admin),
            "mutation { createRule(input: {sensor: \"vat\", kind: BELOW, threshold: 5}) { id } }",
            json!({}),
        )
        .await["createRule"]["id"]
        .clone();
    for round in 0..5_i64 {
        let version = round + 1;
        let edit = |threshold: f64| {
            api.gql(
                Some(admin),
                UPDATE_RULE,
                json!({ "id": rule, "v": version, "input": { "threshold": threshold, "clearThreshold": threshold } }),
            )
        };
        let (a, b) = tokio::join!(edit(1.0 + round as f64), edit(100.0 + round as f64));
        let landed: Vec<&Value> = [&a, &b]
            .into_iter()
            .filter(|body| body["errors"].is_null())
            .collect();
        assert_eq!(landed.len(), 1, "round {round}: {a} / {b}");
        let refused = if a["errors"].is_null() { &b } else { &a };
        assert_eq!(code(refused), "CONFLICT", "{refused}");
        let stored = api
            .ok(
                Some(admin),
                "{ sensor(key: \"vat\") { rules { threshold version } } }",
                json!({}),
            )
            .await;
        assert_eq!(stored["sensor"]["rules"][0]["version"], version + 1);
        assert_eq!(
            stored["sensor"]["rules"][0]["threshold"],
            landed[0]["data"]["updateRule"]["threshold"]
        );
    }
    api.stop().await;
}

async fn sensors_and_channels_are_edited_against_their_version(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-sensors").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, viewer) = (team.admin.access.as_str(), team.viewer.access.as_str());
    api.sensor_with_device(admin, "kiln").await;
    let update = "mutation($k: String!, $v: Int!, $input: UpdateSensorInput!) { updateSensor(key: $k, expectedVersion: $v, input: $input) { key name unit version } }";

    let body = api
        .gql(
            Some(viewer),
            update,
            json!({ "k": "kiln", "v": 1, "input": { "name": "x" } }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let body = api
        .gql(
            Some(admin),
            update,
            json!({ "k": "kiln", "v": 1, "input": { "name": "  " } }),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "input.name"),
        "{body}"
    );
    let body = api
        .gql(
            Some(admin),
            update,
            json!({ "k": "nope", "v": 1, "input": { "name": "x" } }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    let edited = api
        .ok(
            Some(admin),
            update,
            json!({ "k": "kiln", "v": 1, "input": { "name": "Kiln 2", "unit": "K" } }),
        )
        .await;
    assert_eq!(
        edited["updateSensor"],
        json!({ "key": "kiln", "name": "Kiln 2", "unit": "K", "version": 2 })
    );
    let body = api
        .gql(
            Some(admin),
            update,
            json!({ "k": "kiln", "v": 1, "input": { "unit": "C" } }),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    let stored = api
        .ok(
            Some(viewer),
            "{ sensor(key: \"kiln\") { unit version } }",
            json!({}),
        )
        .await;
    assert_eq!(stored["sensor"], json!({ "unit": "K", "version": 2 }));

    let channel = api
        .ok(Some(admin), "mutation { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: \"https://hooks.example.com/a?token=1\", secret: \"k1\"}) { id version } }", json!({}))
        .await["createChannel"]
        .clone();
    let id = channel["id"].clone();
    let update = "mutation($id: ID!, $v: Int!, $input: UpdateChannelInput!) { updateChannel(id: $id, expectedVersion: $v, input: $input) { name url version } }";
    for (input, bad_field) in [
        (json!({ "url": "ftp://x" }), "input.url"),
        (json!({ "url": "http://10.0.0.1/hook" }), "input.url"),
        (json!({ "secret": "" }), "input.secret"),
    ] {
        let body = api
            .gql(
                Some(admin),
                update,
                json!({ "id": id, "v": 1, "input": input }),
            )
            .await;
        assert_eq!(
            (code(&body), field(&body)),
            ("BAD_USER_INPUT", bad_field),
            "{body}"
        );
    }
    let edited = api
        .ok(Some(admin), update, json!({ "id": id, "v": 1, "input": { "name": "ops 2", "url": "https://hooks.example.com/b", "secret": "k2" } }))
        .await;
    assert_eq!(
        edited["updateChannel"],
        json!({ "name": "ops 2", "url": "https://hooks.example.com/b", "version": 2 })
    );
    let body = api
        .gql(
            Some(admin),
            update,
            json!({ "id": id, "v": 1, "input": { "name": "late" } }),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    let in_app = api
        .ok(
            Some(admin),
            "mutation { createChannel(input: {name: \"app\", kind: IN_APP}) { id } }",
            json!({}),
        )
        .await["createChannel"]["id"]
        .clone();
    let body = api
        .gql(
            Some(admin),
            update,
            json!({ "id": in_app, "v": 1, "input": { "url": "https://hooks.example.com/c" } }),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "input.url"),
        "{body}"
    );

    let log = api.audit_entries(admin, "").await;
    let sensor = log
        .iter()
        .find(|e| e["action"] == "sensor.update")
        .expect("sensor.update");
    assert_eq!(sensor["details"]["before"]["name"], "kiln");
    assert_eq!(sensor["details"]["after"]["name"], "Kiln 2");
    let channel = log
        .iter()
        .find(|e| e["action"] == "channel.update")
        .expect("channel.update");
    assert_eq!(
        channel["details"]["before"]["url"],
        "https://hooks.example.com/…"
    );
    assert_eq!(channel["details"]["secretRotated"], true);
    assert!(
        !channel.to_string().contains("k2"),
        "the secret is never audited: {channel}"
    );
    api.stop().await;
}

async fn alerts_are_opened_and_resolved_by_hand(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-alerts").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op, viewer) = (
        team.admin.access.as_str(),
        team.operator.access.as_str(),
        team.viewer.access.as_str(),
    );
    api.sensor_with_device(admin, "pump").await;
    let channel = api
        .ok(
            Some(admin),
            "mutation($u: String!) { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: $u, secret: \"k\"}) { id } }",
            json!({ "u": deployment.receiver.url() }),
        )
        .await["createChannel"]["id"]
        .clone();
    let rule = api
        .ok(
            Some(admin),
            "mutation($c: [ID!]) { createRule(input: {sensor: \"pump\", kind: ABOVE, threshold: 50, channelIds: $c}) { id } }",
            json!({ "c": [channel] }),
        )
        .await["createRule"]["id"]
        .clone();
    let create = "mutation($r: ID!, $n: String) { createAlert(input: {ruleId: $r, note: $n}) { id state count ruleId sensor } }";
    let resolve = "mutation($id: ID!) { resolveAlert(id: $id) { id state resolvedAt } }";

    let body = api.gql(Some(op), create, json!({ "r": rule })).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "input.ruleId"),
        "{body}"
    );
    assert!(body.to_string().contains("no reading"), "{body}");
    ingest(&api, op, "pump", 0, &[10.0]).await;
    deployment.drain().await;
    assert!(alerts(&api, op, "pump").await.is_empty());
    let body = api.gql(Some(viewer), create, json!({ "r": rule })).await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let body = api.gql(Some(op), create, json!({ "r": "999999" })).await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "input.ruleId"),
        "{body}"
    );

    // Opened by hand: an open alert of the rule, notifying its channel like a raised one.
    let opened = api
        .ok(
            Some(op),
            create,
            json!({ "r": rule, "n": "smoke seen by the night shift" }),
        )
        .await["createAlert"]
        .clone();
    assert_eq!(
        (
            opened["state"].clone(),
            opened["count"].clone(),
            opened["sensor"].clone()
        ),
        (json!("OPEN"), json!(1), json!("pump"))
    );
    deployment.drain().await;
    assert_eq!(
        deployment.receiver.received().len(),
        1,
        "one signed POST to the channel"
    );
    let body = api.gql(Some(op), create, json!({ "r": rule })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    assert!(
        body.to_string().contains("open for this rule already"),
        "{body}"
    );

    // Resolved by hand, twice: the second changes nothing.
    let id = opened["id"].clone();
    let resolved = api.ok(Some(op), resolve, json!({ "id": id })).await["resolveAlert"].clone();
    assert_eq!(resolved["state"], "RESOLVED");
    let again = api.ok(Some(op), resolve, json!({ "id": id })).await["resolveAlert"].clone();
    assert_eq!(again["resolvedAt"], resolved["resolvedAt"]);
    let body = api.gql(Some(op), resolve, json!({ "id": "424242" })).await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // The pipeline goes on: a breach opens an alert; resolved by hand while the readings still
    // breach, the next breaching reading opens a fresh one.
    ingest(&api, op, "pump", 1, &[60.0]).await;
    deployment.drain().await;
    let now = alerts(&api, op, "pump").await;
    let raised = open(&now);
    assert_eq!((now.len(), raised.len()), (2, 1), "{now:?}");
    let raised = raised[0]["id"].clone();
    api.ok(Some(op), resolve, json!({ "id": raised })).await;
    ingest(&api, op, "pump", 2, &[70.0]).await;
    deployment.drain().await;
    let now = alerts(&api, op, "pump").await;
    assert_eq!((now.len(), open(&now).len()), (3, 1), "{now:?}");

    // Two resolutions changed something; the repeat did not, and is not audited.
    let actions = api.audit_actions(admin, "alert.").await;
    assert_eq!(
        actions.iter().filter(|a| *a == "alert.resolve").count(),
        2,
        "{actions:?}"
    );
    let created = api.audit_entries(admin, "alert.create").await;
    assert_eq!(
        created[0]["details"]["note"],
        "smoke seen by the night shift"
    );
    api.stop().await;
}

async fn a_switched_off_sensor_refuses_readings_and_is_never_silent(sql: Sql) {
    use workflows::{BackgroundJob, jobs::silence_check::SilenceCheck};
    let deployment = Deployment::new(sql, "manage-sensor-off").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op) = (team.admin.access.as_str(), team.operator.access.as_str());
    let (_, key) = api.sensor_with_device(admin, "still").await;
    api.sensor_with_device(admin, "other").await;
    api.ok(Some(admin), "mutation { createRule(input: {sensor: \"still\", kind: SILENCE, silenceSeconds: 1}) { id } }", json!({}))
        .await;
    let set_enabled = "mutation($v: Int!, $on: Boolean!) { setSensorEnabled(key: \"still\", expectedVersion: $v, enabled: $on) { enabled version } }";
    let post = |value: f64| {
        api.http
            .post(format!("{}/api/sensors/data", api.url))
            .bearer_auth(&key)
            .json(&readings("still", value as i64, &[value]))
            .send()
    };
    assert_eq!(post(1.0).await.expect("post").status(), 202);
    deployment.drain().await;

    let body = api
        .gql(Some(op), set_enabled, json!({ "v": 1, "on": false }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    let off = api
        .ok(Some(admin), set_enabled, json!({ "v": 1, "on": false }))
        .await;
    assert_eq!(
        off["setSensorEnabled"],
        json!({ "enabled": false, "version": 2 })
    );
    let body = api
        .gql(Some(admin), set_enabled, json!({ "v": 1, "on": true }))
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");

    // The device is told why; a batch already queued keeps its other sensors' readings.
    let refused = post(2.0).await.expect("post");
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["field"], "readings.0.sensor", "{body}");
    assert!(body.to_string().contains("switched off"), "{body}");
    let mut batch = readings("still", 3, &[3.0]);
    batch["readings"].as_array_mut().expect("readings").extend(
        readings("other", 1, &[5.0])["readings"]
            .as_array()
            .expect("readings")
            .clone(),
    );
    let submitted = api
        .ok(
            Some(op),
            SUBMIT,
            json!({ "input": { "kind": "INGEST", "payload": batch } }),
        )
        .await;
    let job = submitted["submitJob"]["job"]["id"].clone();
    deployment.drain().await;
    let result = api
        .ok(
            Some(op),
            "query($id: ID!) { job(id: $id) { state result } }",
            json!({ "id": job }),
        )
        .await;
    assert_eq!(result["job"]["state"], "SUCCEEDED");
    assert_eq!(
        (
            result["job"]["result"]["stored"].clone(),
            result["job"]["result"]["refused"].clone()
        ),
        (json!(1), json!(1)),
        "{result}"
    );
    let stored = api
        .ok(
            Some(op),
            "{ sensor(key: \"still\") { readings { value } } }",
            json!({}),
        )
        .await;
    assert_eq!(stored["sensor"]["readings"], json!([{ "value": 1.0 }]));

    // Silent for longer than its rule allows, yet switched off: no alert. Switched on: one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let deployment = &deployment;
    let check = |tick_ms: u64| async move {
        deployment
            .engine
            .push(SilenceCheck { tick_ms }.to_push().expect("job"))
            .await
            .expect("push");
        deployment.drain().await;
    };
    check(1).await;
    assert!(alerts(&api, op, "still").await.is_empty());
    api.ok(Some(admin), set_enabled, json!({ "v": 2, "on": true }))
        .await;
    check(2).await;
    assert_eq!(open(&alerts(&api, op, "still").await).len(), 1);
    assert_eq!(post(4.0).await.expect("post").status(), 202);
    api.stop().await;
}

/// The error's code and field (`""` when it names none).
fn code_and_field(body: &Value) -> (&str, &str) {
    let field = body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or("");
    (code(body), field)
}

const UPDATE_DEVICE: &str = "mutation($id: ID!, $v: Int!, $n: String, $s: [String!]) { updateDevice(id: $id, expectedVersion: $v, name: $n, sensorKeys: $s) { id name sensorKeys version } }";

async fn devices_are_edited_against_their_version(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-devices").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op) = (team.admin.access.as_str(), team.operator.access.as_str());
    let (device, key) = api.sensor_with_device(admin, "north").await;
    let (other, _) = api.sensor_with_device(admin, "south").await;
    api.ok(
        Some(admin),
        "mutation { createSensor(input: {key: \"east\", name: \"east\", unit: \"C\"}) { id } }",
        json!({}),
    )
    .await;
    let post = |sensor: &'static str, seq: i64| {
        let request = api
            .http
            .post(format!("{}/api/sensors/data", api.url))
            .bearer_auth(&key)
            .json(&readings(sensor, seq, &[1.0]));
        async move { request.send().await.expect("post").status().as_u16() }
    };
    assert_eq!(post("east", 0).await, 403, "not its sensor yet");

    // Bad edits change nothing and name their field.
    for (vars, expected) in [
        (
            json!({ "id": device, "v": 1, "n": " " }),
            ("BAD_USER_INPUT", "name"),
        ),
        (
            json!({ "id": device, "v": 1, "s": ["nope"] }),
            ("BAD_USER_INPUT", "sensorKeys.0"),
        ),
        (
            json!({ "id": device, "v": 1, "s": ["east", "south"] }),
            ("BAD_USER_INPUT", "sensorKeys.1"),
        ),
        (
            json!({ "id": device, "v": 1, "s": [] }),
            ("BAD_USER_INPUT", "sensorKeys"),
        ),
        (
            json!({ "id": device, "v": 7, "n": "x" }),
            ("CONFLICT", "expectedVersion"),
        ),
        (
            json!({ "id": "999999", "v": 1, "n": "x" }),
            ("NOT_FOUND", ""),
        ),
    ] {
        let body = api.gql(Some(admin), UPDATE_DEVICE, vars.clone()).await;
        assert_eq!(code_and_field(&body), expected, "{vars} -> {body}");
    }
    let body = api
        .gql(
            Some(op),
            UPDATE_DEVICE,
            json!({ "id": device, "v": 1, "n": "x" }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN");
    let unchanged = api
        .ok(
            Some(admin),
            "{ devices { id name sensorKeys version } }",
            json!({}),
        )
        .await;
    assert_eq!(
        unchanged["devices"][0],
        json!({ "id": device, "name": "north", "sensorKeys": ["north"], "version": 1 })
    );

    // Moving the device from `north` to `east`: the key now writes east and no longer north.
    let edited = api
        .ok(
            Some(admin),
            UPDATE_DEVICE,
            json!({ "id": device, "v": 1, "n": "North gate", "s": ["east"] }),
        )
        .await;
    assert_eq!(
        edited["updateDevice"],
        json!({ "id": device, "name": "North gate", "sensorKeys": ["east"], "version": 2 })
    );
    assert_eq!(post("east", 1).await, 202);
    assert_eq!(post("north", 1).await, 403);
    let entry = &api.audit_entries(admin, "device.update").await[0];
    assert_eq!(entry["details"]["before"]["sensors"], json!(["north"]));
    assert_eq!(entry["details"]["after"]["sensors"], json!(["east"]));
    assert_eq!(entry["details"]["after"]["name"], "North gate");

    // Revoking raises the version too: an edit, a rotation or a delete read before it is stale.
    let revoked = api
        .ok(
            Some(admin),
            "mutation($d: ID!) { revokeDevice(id: $d, expectedVersion: 2) { version revokedAt } }",
            json!({ "d": device }),
        )
        .await;
    assert_eq!(revoked["revokeDevice"]["version"], 3);
    for (query, vars) in [
        (UPDATE_DEVICE, json!({ "id": device, "v": 2, "n": "late" })),
        (
            "mutation($d: ID!) { rotateDeviceKey(id: $d, expectedVersion: 2) { apiKey } }",
            json!({ "d": device }),
        ),
        (
            "mutation($d: ID!) { deleteDevice(id: $d, expectedVersion: 2) { id } }",
            json!({ "d": device }),
        ),
    ] {
        let body = api.gql(Some(admin), query, vars).await;
        assert_eq!(code(&body), "CONFLICT", "{query}: {body}");
    }

    // Deleting releases its sensors (east can go to another device) and refuses its key.
    let deleted = api
        .ok(
            Some(admin),
            "mutation($d: ID!) { deleteDevice(id: $d, expectedVersion: 3) { name sensorKeys } }",
            json!({ "d": device }),
        )
        .await;
    assert_eq!(
        deleted["deleteDevice"],
        json!({ "name": "North gate", "sensorKeys": ["east"] })
    );
    assert_eq!(post("east", 2).await, 401);
    let moved = api
        .ok(
            Some(admin),
            UPDATE_DEVICE,
            json!({ "id": other, "v": 1, "s": ["south", "east", "north"] }),
        )
        .await;
    assert_eq!(
        moved["updateDevice"]["sensorKeys"],
        json!(["east", "north", "south"])
    );
    let listed = api.ok(Some(admin), "{ devices { id } }", json!({})).await;
    assert_eq!(listed["devices"], json!([{ "id": other }]));
    assert_eq!(
        api.audit_actions(admin, "device.").await,
        [
            "device.update",
            "device.delete",
            "device.revoke",
            "device.update",
            "device.create",
            "device.create"
        ]
    );
    api.stop().await;
}

async fn two_devices_claiming_one_sensor_at_once_do_not_both_get_it(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-claim").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = team.admin.access.as_str();
    let (first, _) = api.sensor_with_device(admin, "west").await;
    let (second, _) = api.sensor_with_device(admin, "south").await;
    api.ok(
        Some(admin),
        "mutation { createSensor(input: {key: \"shared\", name: \"shared\", unit: \"C\"}) { id } }",
        json!({}),
    )
    .await;
    let versions = || async {
        let devices = api
            .ok(Some(admin), "{ devices { id version } }", json!({}))
            .await;
        let of = |id: &str| {
            devices["devices"]
                .as_array()
                .and_then(|ds| ds.iter().find(|d| d["id"] == json!(id)))
                .map(|d| d["version"].clone())
                .expect("version")
        };
        (of(&first), of(&second))
    };
    for round in 0..5 {
        let (v1, v2) = versions().await;
        let claim = |device: &str, version: Value, own: &str| {
            api.gql(
                Some(admin),
                UPDATE_DEVICE,
                json!({ "id": device, "v": version, "s": [own, "shared"] }),
            )
        };
        let (a, b) = tokio::join!(claim(&first, v1, "west"), claim(&second, v2, "south"));
        let won = [&a, &b].iter().filter(|r| r["errors"].is_null()).count();
        assert_eq!(won, 1, "round {round}: {a} / {b}");
        let lost = if a["errors"].is_null() { &b } else { &a };
        // Refused at the check (`sensorKeys.1`) or, when both passed it at once, at the claim.
        let (code, field) = code_and_field(lost);
        assert!(
            code == "BAD_USER_INPUT" && field.starts_with("sensorKeys"),
            "{lost}"
        );
        let devices = api
            .ok(
                Some(admin),
                "{ devices { id sensorKeys version } }",
                json!({}),
            )
            .await;
        let owners = devices["devices"]
            .as_array()
            .expect("devices")
            .iter()
            .filter(|d| {
                d["sensorKeys"]
                    .as_array()
                    .is_some_and(|k| k.contains(&json!("shared")))
            })
            .count();
        assert_eq!(owners, 1, "one owner: {devices}");
        // Free it again for the next round.
        let (winner, own) = if a["errors"].is_null() {
            (&first, "west")
        } else {
            (&second, "south")
        };
        let v = if winner == &first {
            versions().await.0
        } else {
            versions().await.1
        };
        api.ok(
            Some(admin),
            UPDATE_DEVICE,
            json!({ "id": winner, "v": v, "s": [own] }),
        )
        .await;
    }
    api.stop().await;
}

const SET_ROLE: &str = "mutation($u: ID!, $r: Role!, $v: Int) { setUserRole(userId: $u, role: $r, expectedVersion: $v) { role version } }";
const SET_DISABLED: &str = "mutation($u: ID!, $d: Boolean!, $v: Int) { setUserDisabled(userId: $u, disabled: $d, expectedVersion: $v) { disabledAt version } }";

async fn users_are_changed_against_their_version_and_one_admin_always_stays(sql: Sql) {
    let deployment = Deployment::new(sql, "manage-users").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let admin = team.admin.access.as_str();
    let (me, op) = (team.admin.user_id.clone(), team.operator.user_id.clone());

    let promoted = api
        .ok(
            Some(admin),
            SET_ROLE,
            json!({ "u": op, "r": "ADMIN", "v": 1 }),
        )
        .await;
    assert_eq!(
        promoted["setUserRole"],
        json!({ "role": "ADMIN", "version": 2 })
    );
    for (query, vars, expected) in [
        (
            SET_ROLE,
            json!({ "u": op, "r": "VIEWER", "v": 1 }),
            ("CONFLICT", "expectedVersion"),
        ),
        (
            SET_DISABLED,
            json!({ "u": op, "d": true, "v": 1 }),
            ("CONFLICT", "expectedVersion"),
        ),
        (
            SET_DISABLED,
            json!({ "u": me, "d": true }),
            ("BAD_USER_INPUT", "userId"),
        ),
        (
            SET_ROLE,
            json!({ "u": "999999", "r": "VIEWER" }),
            ("NOT_FOUND", ""),
        ),
    ] {
        let body = api.gql(Some(admin), query, vars.clone()).await;
        assert_eq!(code_and_field(&body), expected, "{vars} -> {body}");
    }
    // With the second admin disabled, the first is the last enabled one: it keeps its role.
    let disabled = api
        .ok(
            Some(admin),
            SET_DISABLED,
            json!({ "u": op, "d": true, "v": 2 }),
        )
        .await;
    assert_eq!(disabled["setUserDisabled"]["version"], 3);
    let body = api
        .gql(Some(admin), SET_ROLE, json!({ "u": me, "r": "VIEWER" }))
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "role"),
        "{body}"
    );
    let entry = &api.audit_entries(admin, "user.disable").await[0];
    assert_eq!(entry["details"]["before"]["disabled"], false);
    assert_eq!(entry["details"]["after"]["disabled"], true);
    assert_eq!(entry["details"]["after"]["role"], "ADMIN");
    let entry = &api.audit_entries(admin, "user.set_role").await[0];
    assert_eq!(entry["details"]["before"]["role"], "OPERATOR");
    assert_eq!(entry["details"]["after"]["role"], "ADMIN");
    api.stop().await;
}

on_both_databases!(
    a_switched_off_sensor_refuses_readings_and_is_never_silent,
    alerts_are_opened_and_resolved_by_hand,
    devices_are_edited_against_their_version,
    two_devices_claiming_one_sensor_at_once_do_not_both_get_it,
    users_are_changed_against_their_version_and_one_admin_always_stays,
    rules_edited_follow_their_version_and_keep_alerts_consistent,
    of_two_concurrent_edits_of_one_version_exactly_one_lands,
    sensors_and_channels_are_edited_against_their_version,
);
