//! Schedules through GraphQL: bad definitions answered at the field with nothing stored, roles,
//! a running schedule making its jobs through the embedded pools, pause, edit against a
//! version, delete; all audited.

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{Deployment, Sql, code, eventually, field};

const FIELDS: &str = "id name cron timeZone description kind payload missed enabled nextRunAt lastRunAt lastJobId version";

#[tokio::test]
async fn schedules_are_checked_at_the_field_run_on_the_workers_and_are_paused_edited_and_deleted() {
    let deployment = Deployment::new(Sql::Sqlite, "api-schedules").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (admin, op, viewer) = (
        team.admin.access.as_str(),
        team.operator.access.as_str(),
        team.viewer.access.as_str(),
    );
    api.sensor_with_device(admin, "kiln").await;
    let create = format!(
        "mutation($input: ScheduleInput!) {{ createSchedule(input: $input) {{ {FIELDS} }} }}"
    );
    let input = json!({
        "name": "kiln every second",
        "cron": "* * * * * *",
        "timeZone": "Europe/Berlin",
        "kind": "EVALUATE",
        "payload": { "sensor": "kiln" },
        "missed": "CATCH_UP_ONCE"
    });

    let body = api
        .gql(Some(viewer), &create, json!({ "input": input }))
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "{body}");
    for (key, bad, at) in [
        ("cron", json!("61 * * * *"), "input.cron"),
        ("cron", json!("every morning"), "input.cron"),
        ("timeZone", json!("Mars/Olympus"), "input.timeZone"),
        ("payload", json!({ "sensor": "" }), "input.payload.sensor"),
        ("name", json!(""), "input.name"),
    ] {
        let mut wrong = input.clone();
        wrong[key] = bad;
        let body = api.gql(Some(op), &create, json!({ "input": wrong })).await;
        assert_eq!(
            (code(&body), field(&body)),
            ("BAD_USER_INPUT", at),
            "{body}"
        );
    }
    let listed = api
        .ok(Some(viewer), "{ schedules { id } }", json!({}))
        .await;
    assert_eq!(listed["schedules"], json!([]), "nothing stored");

    let pools = deployment.pools();
    let created = api.ok(Some(op), &create, json!({ "input": input })).await;
    let schedule = created["createSchedule"].clone();
    assert_eq!(schedule["enabled"], true);
    assert_eq!(schedule["missed"], "CATCH_UP_ONCE");
    assert!(schedule["nextRunAt"].is_string(), "{schedule}");
    assert!(
        !schedule["description"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let id = schedule["id"].as_str().expect("id").to_owned();

    // The embedded workers make its jobs, and the job it made last is on it.
    let list = format!("{{ schedules {{ {FIELDS} }} }}");
    let job_id: String = eventually(Duration::from_secs(10), "a scheduled job", || async {
        let data = api.ok(Some(viewer), &list, json!({})).await;
        data["schedules"][0]["lastJobId"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| data.to_string())
    })
    .await;
    let job = api
        .ok(
            Some(viewer),
            "query($id: ID!) { job(id: $id) { kind } }",
            json!({ "id": job_id }),
        )
        .await;
    assert_eq!(job["job"]["kind"], "EVALUATE");

    let pause = format!(
        "mutation($id: ID!, $v: Int) {{ setScheduleEnabled(id: $id, enabled: false, expectedVersion: $v) {{ {FIELDS} }} }}"
    );
    let paused = api
        .ok(
            Some(op),
            &pause,
            json!({ "id": id, "v": schedule["version"] }),
        )
        .await;
    assert_eq!(paused["setScheduleEnabled"]["enabled"], false);
    assert_eq!(paused["setScheduleEnabled"]["nextRunAt"], Value::Null);
    let version = paused["setScheduleEnabled"]["version"].clone();

    let update = format!(
        "mutation($id: ID!, $v: Int!, $input: ScheduleInput!) {{ updateSchedule(id: $id, expectedVersion: $v, input: $input) {{ {FIELDS} }} }}"
    );
    let mut daily = input.clone();
    daily["cron"] = json!("0 6 * * *");
    let body = api
        .gql(
            Some(op),
            &update,
            json!({ "id": id, "v": 1, "input": daily }),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    let edited = api
        .ok(
            Some(op),
            &update,
            json!({ "id": id, "v": version, "input": daily }),
        )
        .await;
    assert_eq!(edited["updateSchedule"]["cron"], "0 6 * * *");
    assert_eq!(
        edited["updateSchedule"]["enabled"], false,
        "an edit keeps it paused"
    );
    pools.stop().await;

    let deleted = api
        .ok(
            Some(op),
            "mutation($id: ID!) { deleteSchedule(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(deleted["deleteSchedule"], id);
    let actions = api.audit_actions(admin, "schedule.").await;
    for action in [
        "schedule.create",
        "schedule.pause",
        "schedule.update",
        "schedule.delete",
    ] {
        assert!(
            actions.iter().any(|a| a == action),
            "{action} missing from {actions:?}"
        );
    }
    api.stop().await;
}
