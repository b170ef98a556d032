//! Input and traffic meant to hurt: NUL characters, borrowed idempotency keys, aliases over
//! plain lists, oversized websocket frames, too many operations or sockets, a resume from a
//! cursor far behind, and a Redis that cannot take writes. Each gets a clear error and harms
//! nothing.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use queue::testing::{OwnRedis, free_port};
use serde_json::{Value, json};
use tokio_tungstenite::{
    connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use super::common::{Api, Deployment, SUBMIT, Sql, WsClient, WsEvent, code, field, readings};

async fn queued(deployment: &Deployment) -> u64 {
    let stats = deployment.engine().stats("ingest").await.expect("stats");
    stats.ready + stats.scheduled
}

#[tokio::test]
async fn nul_characters_are_refused_at_the_field_and_nothing_is_queued() {
    let deployment = Deployment::new(Sql::Sqlite, "nul").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let operator = Some(team.operator.access.as_str());

    let mut payload = readings("t1", 0, &[1.0]);
    payload["readings"][0]["sensor"] = json!("t\u{0}1");
    let body = api
        .gql(
            operator,
            SUBMIT,
            json!({ "input": { "kind": "INGEST", "payload": payload } }),
        )
        .await;
    assert_eq!(
        (code(&body), field(&body)),
        ("BAD_USER_INPUT", "input.payload.readings.0.sensor"),
        "{body}"
    );
    let body = api
        .gql(
            operator,
            SUBMIT,
            json!({ "input": { "kind": "NOTIFY", "payload": { "channel": 1, "message": "a\u{0}b" } } }),
        )
        .await;
    assert_eq!(field(&body), "input.payload.message", "{body}");
    let body = api
        .gql(
            operator,
            SUBMIT,
            json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": "x" }, "idempotencyKey": "k\u{0}" } }),
        )
        .await;
    assert_eq!(field(&body), "input.idempotencyKey", "{body}");
    let body = api
        .gql(
            Some(&team.admin.access),
            "mutation($n: String!) { createSensor(input: {key: \"s\", name: $n, unit: \"C\"}) { id } }",
            json!({ "n": "bad\u{0}name" }),
        )
        .await;
    assert_eq!(field(&body), "input.name", "{body}");
    let body = api
        .gql(
            None,
            "mutation($e: String!) { login(email: $e, password: \"whatever it is\") { accessToken } }",
            json!({ "e": "a\u{0}@example.com" }),
        )
        .await;
    assert_eq!(field(&body), "email", "{body}");

    // The device endpoint refuses it the same way.
    let (_, key) = api.sensor_with_device(&team.admin.access, "t1").await;
    let mut payload = readings("t1", 0, &[1.0]);
    payload["readings"][0]["note"] = json!("x\u{0}");
    let response = api
        .http
        .post(format!("{}/api/sensors/data", api.url))
        .bearer_auth(&key)
        .body(payload.to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["field"], "readings.0.note", "{body}");
    assert_eq!(queued(&deployment).await, 0, "nothing was queued");
    api.stop().await;
}

#[tokio::test]
async fn a_submitter_cannot_borrow_a_devices_idempotency_key() {
    let deployment = Deployment::new(Sql::Sqlite, "key-spaces").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let (device_id, key) = api.sensor_with_device(&team.admin.access, "t1").await;
    let posted: Value = api
        .http
        .post(format!("{}/api/sensors/data", api.url))
        .bearer_auth(&key)
        .header("idempotency-key", "batch-1")
        .body(readings("t1", 0, &[1.0]).to_string())
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let device_job = posted["jobId"].as_str().expect("job").to_owned();
    // The device's key as the engine stores it, and the pipeline's own dedupe key.
    for borrowed in [
        format!("device:{device_id}:batch-1"),
        "sensor:t1".to_owned(),
    ] {
        let submitted = api
            .ok(
                Some(&team.operator.access),
                SUBMIT,
                json!({ "input": { "kind": "INGEST", "payload": readings("t1", 5, &[2.0]), "idempotencyKey": borrowed } }),
            )
            .await;
        assert_eq!(submitted["submitJob"]["duplicate"], false, "{borrowed}");
        assert_ne!(submitted["submitJob"]["job"]["id"], device_job.as_str());
        let id = submitted["submitJob"]["job"]["id"].as_str().expect("id");
        let shown = api
            .ok(
                Some(&team.operator.access),
                "query($id: ID!) { job(id: $id) { idempotencyKey } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            shown["job"]["idempotencyKey"], borrowed,
            "the submitter sees its key as given"
        );
    }
    api.stop().await;
}

#[tokio::test]
async fn aliases_over_plain_lists_add_up_to_the_complexity_limit() {
    let deployment = Deployment::new(Sql::Sqlite, "aliases").await;
    let api = deployment.api(&[]).await;
    let admin = api.register("admin@example.com").await;
    let aliased = |n: usize, list: &str| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: {list}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    for list in [
        "sensors { id key name rules { id } }",
        "channels { id name url }",
        "devices { id name sensorKeys }",
    ] {
        let body = api
            .gql(Some(&admin.access), &aliased(200, list), json!({}))
            .await;
        assert_eq!(code(&body), "LIMIT_EXCEEDED", "{list}: {body}");
        // One of each is an ordinary page.
        api.ok(Some(&admin.access), &aliased(1, list), json!({}))
            .await;
    }
    let nested = "{ sensors { readings(last: 1000) { ts value } } }";
    let body = api.gql(Some(&admin.access), nested, json!({})).await;
    assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");
    api.stop().await;
}

/// A websocket to `api` speaking graphql-transport-ws, not yet initialised.
async fn raw_socket(
    api: &Api,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = api.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    connect_async(request).await.expect("ws connects").0
}

/// The close code the server ends `socket` with, reading past anything else.
async fn close_code(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn websockets_refuse_oversized_frames_too_many_operations_and_too_many_sockets() {
    let deployment = Deployment::new(Sql::Sqlite, "ws-limits").await;
    let api = deployment
        .api(&[
            "--ws-max-message-bytes=4096",
            "--ws-max-operations=3",
            "--ws-max-sockets-per-user=2",
        ])
        .await;
    let admin = api.register("admin@example.com").await;

    let mut big = raw_socket(&api).await;
    let frame = json!({ "type": "connection_init", "payload": { "pad": "x".repeat(10_000) } });
    let _ = big.send(Message::Text(frame.to_string().into())).await;
    assert_eq!(close_code(&mut big).await, Some(1009), "message too big");

    let mut socket = WsClient::connect(&api, Some(&admin.access))
        .await
        .expect("socket");
    for i in 0..4 {
        socket
            .subscribe(
                &format!("s{i}"),
                "subscription { queueStats { name } }",
                json!({}),
            )
            .await;
    }
    let closed = socket.next_not_data(Duration::from_secs(5)).await;
    assert!(
        matches!(closed, Some(WsEvent::Closed(Some(4429)))),
        "{closed:?}"
    );

    let first = WsClient::connect(&api, Some(&admin.access))
        .await
        .expect("one socket");
    let second = WsClient::connect(&api, Some(&admin.access))
        .await
        .expect("two sockets");
    assert!(
        WsClient::connect(&api, Some(&admin.access)).await.is_err(),
        "a third socket of the same account is refused"
    );
    first.close().await;
    // Its place comes back once the server has seen it close.
    super::common::eventually(Duration::from_secs(5), "a freed socket place", || async {
        match WsClient::connect(&api, Some(&admin.access)).await {
            Ok(socket) => {
                socket.close().await;
                Ok(())
            }
            Err(code) => Err(format!("{code:?}")),
        }
    })
    .await;
    second.close().await;
    api.stop().await;
}

#[tokio::test]
async fn a_resume_from_far_behind_is_refused_rather_than_replayed() {
    let deployment = Deployment::new(Sql::Sqlite, "replay-bound").await;
    let api = deployment.api(&["--subscription-replay-max=100"]).await;
    let admin = api.register("admin@example.com").await;
    let engine = deployment.engine();
    let start = engine
        .stream_position(queue::EventStream::Jobs)
        .await
        .expect("position");
    let jobs: Vec<queue::NewJob> = (0..1500)
        .map(|i| {
            queue::NewJob::new("evaluate", &json!({ "sensor": format!("s{i}") })).expect("job")
        })
        .collect();
    engine.push_many(jobs).await.expect("push");
    let mut socket = WsClient::connect(&api, Some(&admin.access))
        .await
        .expect("socket");
    socket
        .subscribe(
            "far",
            "subscription($a: String) { jobUpdates(after: $a) { cursor } }",
            json!({ "a": start }),
        )
        .await;
    let answer = socket.next_not_data(Duration::from_secs(5)).await;
    let Some(WsEvent::Error(payload)) = answer else {
        panic!("expected CURSOR_EXPIRED, got {answer:?}");
    };
    assert_eq!(
        payload["errors"][0]["extensions"]["code"], "CURSOR_EXPIRED",
        "{payload}"
    );
    api.stop().await;
}

#[tokio::test]
async fn a_read_only_redis_answers_unavailable_with_a_retry_hint() {
    let dir = std::env::temp_dir().join(format!("steadfast-api-readonly-{}", ulid::Ulid::new()));
    let primary = OwnRedis::start_with(dir.join("primary"), free_port(), "no");
    let replica = OwnRedis::start_with(dir.join("replica"), free_port(), "no");
    let deployment = Deployment::at(Sql::Sqlite, "readonly", &replica.url()).await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let mut conn = redis::Client::open(replica.url())
        .and_then(|c| c.get_connection())
        .expect("replica");
    // A failover turned this primary into a replica of another.
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query(&mut conn)
        .expect("replicaof");
    let body = api
        .gql(
            Some(&team.operator.access),
            SUBMIT,
            json!({ "input": { "kind": "EVALUATE", "payload": { "sensor": "x" } } }),
        )
        .await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfterSeconds"].as_u64() >= Some(1),
        "{body}"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")),
        "{body}"
    );
    api.stop().await;
    drop(deployment);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let config = <api::ApiConfig as clap::Parser>::try_parse_from([
        "api",
        "--redis-url=redis://default:redis-pass-123@cache:6379",
        "--database-url=postgres://app:db-pass-456@db/steadfast",
        "--jwt-secret=jwt-secret-789-of-at-least-32-bytes!!",
        "--bootstrap-admin-token=bootstrap-000-aaaaaaaa",
    ])
    .expect("flags");
    let shown = format!("{config:?}");
    for secret in [
        "redis-pass-123",
        "db-pass-456",
        "jwt-secret-789",
        "bootstrap-000",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("cache:6379"),
        "the rest stays readable: {shown}"
    );
}

/// A job pushed around the API with a NUL in its payload (the API would refuse it) reaches a
/// ledger on PostgreSQL: its events are quarantined, shown to admins only, and the pipeline's
/// other jobs are recorded as ever.
#[tokio::test]
async fn quarantined_ledger_entries_are_shown_to_admins_and_the_ledger_goes_on() {
    use entities::jobs;
    use sea_orm::EntityTrait;
    let deployment = Deployment::new(Sql::Postgres, "quarantine").await;
    let api = deployment.api(&[]).await;
    let team = api.team().await;
    let pools = deployment.pools();
    let engine = deployment.engine();
    engine
        .push(queue::NewJob::raw(
            "ingest",
            "ingest",
            r#"{"readings":[],"note":"a\u0000b"}"#.into(),
        ))
        .await
        .expect("push");
    let good = engine
        .push(queue::NewJob::raw(
            "evaluate",
            "evaluate",
            r#"{"sensor":"nobody"}"#.into(),
        ))
        .await
        .expect("push")
        .id;
    let list = "{ quarantinedEvents(first: 10) { nodes { streamId event error } } }";
    let shown =
        super::common::eventually(Duration::from_secs(20), "a quarantined event", || async {
            let data = api.ok(Some(&team.admin.access), list, json!({})).await;
            match data["quarantinedEvents"]["nodes"].as_array() {
                Some(nodes) if !nodes.is_empty() => Ok(nodes.clone()),
                _ => Err(data.to_string()),
            }
        })
        .await;
    assert!(
        shown[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Unicode")),
        "{shown:?}"
    );
    assert_eq!(
        code(&api.gql(Some(&team.viewer.access), list, json!({})).await),
        "FORBIDDEN"
    );
    super::common::eventually(Duration::from_secs(20), "the good job recorded", || async {
        match jobs::Entity::find_by_id(good.clone())
            .one(deployment.db.db())
            .await
        {
            Ok(Some(row)) => Ok(row),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    // Both jobs die by design: a payload that does not decode, a sensor that does not exist.
    super::common::eventually(Duration::from_secs(20), "both jobs dead", || async {
        match deployment.dead_jobs().await {
            2 => Ok(()),
            n => Err(format!("{n} dead")),
        }
    })
    .await;
    deployment.expect_dead(2);
    pools.stop().await;
    api.stop().await;
}
