//! Limits and malformed requests: each refused with its code, nothing else harmed.

use serde_json::{Value, json};

use super::common::{Deployment, Sql, code};

async fn post_raw(url: &str, body: String) -> (u16, Value) {
    let response = super::common::http()
        .post(format!("{url}/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn depth_complexity_size_and_batch_limits_answer_limit_exceeded() {
    let deployment = Deployment::new(Sql::Sqlite, "limits").await;
    let api = deployment.api(&["--body-limit-bytes=65536"]).await;
    let admin = api.register("admin@example.com").await;
    let token = Some(admin.access.as_str());

    // GraphiQL's introspection nests `ofType` deep: it must pass.
    let introspection = format!(
        "{{ __schema {{ types {{ name fields {{ name type {{ {} }} }} }} }} }}",
        "name ofType { ".repeat(7) + "name" + &" }".repeat(7)
    );
    api.ok(token, &introspection, json!({})).await;
    let too_deep = format!(
        "{{ __schema {{ types {{ fields {{ type {{ {} }} }} }} }} }}",
        "ofType { ".repeat(16) + "name" + &" }".repeat(16)
    );
    let body = api.gql(token, &too_deep, json!({})).await;
    assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");

    let field = "edges { node { id kind state attempt maxAttempts payload result lastError createdAt updatedAt } }";
    let complex = format!(
        "{{ {} }}",
        (0..6)
            .map(|i| format!("a{i}: jobs(first: 500) {{ {field} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let body = api.gql(token, &complex, json!({})).await;
    assert_eq!(code(&body), "LIMIT_EXCEEDED", "{body}");

    let batch: Vec<Value> = (0..11)
        .map(|_| json!({ "query": "{ me { id } }" }))
        .collect();
    let (status, body) = post_raw(&api.url, Value::Array(batch).to_string()).await;
    assert_eq!((status, code(&body)), (413, "LIMIT_EXCEEDED"), "{body}");
    let batch: Vec<Value> = (0..2)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let (status, body) = post_raw(&api.url, Value::Array(batch).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(
        body.as_array().map(Vec::len),
        Some(2),
        "a batch answers a list"
    );

    let huge = json!({ "query": "{ __typename }", "variables": { "x": "y".repeat(70_000) } });
    let (status, body) = post_raw(&api.url, huge.to_string()).await;
    assert_eq!((status, code(&body)), (413, "LIMIT_EXCEEDED"), "{body}");
    api.stop().await;
}

#[tokio::test]
async fn malformed_requests_answer_bad_user_input() {
    let deployment = Deployment::new(Sql::Sqlite, "malformed").await;
    let api = deployment.api(&[]).await;
    let admin = api.register("admin@example.com").await;
    let token = Some(admin.access.as_str());

    let (status, body) = post_raw(&api.url, "{\"query\": ".into()).await;
    assert_eq!((status, code(&body)), (400, "BAD_USER_INPUT"), "{body}");
    let (_, body) = post_raw(&api.url, json!({ "query": "{ me { id " }).to_string()).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "a syntax error: {body}");
    let body = api.gql(token, "{ nosuchfield }", json!({})).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let body = api
        .gql(
            token,
            "query($n: Int) { jobs(first: $n) { eventCursor } }",
            json!({ "n": "ten" }),
        )
        .await;
    assert_eq!(
        code(&body),
        "BAD_USER_INPUT",
        "a variable of the wrong type: {body}"
    );
    let body = api
        .gql(
            token,
            "query($n: Int) { jobs(first: $n) { eventCursor } }",
            json!({ "n": 1e12 }),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "an Int out of range: {body}");
    let body = api
        .gql(token, "{ jobs(first: -1) { eventCursor } }", json!({}))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let body = api
        .gql(
            token,
            "{ jobs(filter: {since: \"last tuesday\"}) { eventCursor } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let body = api
        .gql(
            token,
            "mutation { createSensor(input: {key: \"💥 nope\", name: \"x\", unit: \"\"}) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let body = api
        .gql(
            token,
            "{ jobs(after: \"\\u0000\") { eventCursor } }",
            json!({}),
        )
        .await;
    assert!(
        body["errors"].is_null(),
        "an unknown cursor is just an empty page: {body}"
    );
    api.stop().await;
}
