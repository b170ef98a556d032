//! The REST surface beside GraphQL: sign-up, sign-in, refresh and alerts through the same
//! resolvers (same roles, limits and errors, as HTTP statuses), the OpenAPI document that
//! describes them, and CORS with an explicit allow-list.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::common::{Api, Deployment, PASSWORD, SUBMIT, Sql, readings};

/// `method url` with an optional bearer token and JSON body; answers the status and JSON.
async fn call(
    api: &Api,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = api.http.request(method, format!("{}{path}", api.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let json = response.json().await.unwrap_or(Value::Null);
    (status, json)
}

fn error_of(body: &Value) -> (&str, &str) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["field"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn clients_sign_up_sign_in_refresh_and_read_alerts_over_rest() {
    let deployment = Deployment::new(Sql::Sqlite, "rest-surface").await;
    let api = deployment.api(&[]).await;
    let credentials = json!({ "email": "ops@example.com", "password": PASSWORD }).to_string();

    let (status, first) = call(
        &api,
        Method::POST,
        "/api/auth/register",
        None,
        Some(&credentials),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["user"]["role"], "ADMIN");
    assert!(first["accessToken"].is_string() && first["refreshToken"].is_string());
    // Sign-up is closed once an admin exists: the resolver's refusal, as a status.
    let other = json!({ "email": "late@example.com", "password": PASSWORD }).to_string();
    let (status, body) = call(&api, Method::POST, "/api/auth/register", None, Some(&other)).await;
    assert_eq!(
        (status, error_of(&body).0),
        (StatusCode::FORBIDDEN, "FORBIDDEN"),
        "{body}"
    );

    // Bad requests say what is wrong, by field.
    for (body, field) in [
        (r#"{"email": "ops@example.com"}"#, "password"),
        (
            r#"{"email": "ops@example.com", "password": "x", "admin": true}"#,
            "admin",
        ),
        ("not json", "body"),
    ] {
        let (status, answer) = call(&api, Method::POST, "/api/auth/login", None, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(error_of(&answer), ("BAD_USER_INPUT", field), "{answer}");
    }
    let wrong =
        json!({ "email": "ops@example.com", "password": "not the password at all" }).to_string();
    let (status, body) = call(&api, Method::POST, "/api/auth/login", None, Some(&wrong)).await;
    assert_eq!(
        (status, error_of(&body).0),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        "{body}"
    );

    let (status, login) = call(
        &api,
        Method::POST,
        "/api/auth/login",
        None,
        Some(&credentials),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let refresh = json!({ "refreshToken": login["refreshToken"] }).to_string();
    let (status, renewed) = call(
        &api,
        Method::POST,
        "/api/auth/token/refresh",
        None,
        Some(&refresh),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_ne!(renewed["refreshToken"], login["refreshToken"]);
    // A refresh token is single use: the second use is refused (and revokes the family).
    let (status, _) = call(
        &api,
        Method::POST,
        "/api/auth/token/refresh",
        None,
        Some(&refresh),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let token = first["accessToken"].as_str().expect("token").to_owned();
    let (status, body) = call(&api, Method::GET, "/api/alerts", None, None).await;
    assert_eq!(
        (status, error_of(&body).0),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
    );
    let (status, empty) = call(&api, Method::GET, "/api/alerts", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["nodes"], json!([]));

    // An alert raised by the pipeline, read back through both alert routes.
    api.sensor_with_device(&token, "boiler").await;
    api.ok(
        Some(&token),
        "mutation { createRule(input: {sensor: \"boiler\", kind: ABOVE, threshold: 80}) { id } }",
        json!({}),
    )
    .await;
    api.ok(
        Some(&token),
        SUBMIT,
        json!({ "input": { "kind": "INGEST", "payload": readings("boiler", 0, &[90.0]) } }),
    )
    .await;
    deployment.drain().await;
    let (status, open) = call(
        &api,
        Method::GET,
        "/api/alerts?state=OPEN&sensor=boiler&first=5",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{open}");
    let nodes = open["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{open}");
    assert_eq!(
        (nodes[0]["sensor"].clone(), nodes[0]["state"].clone()),
        (json!("boiler"), json!("OPEN"))
    );
    let (_, none) = call(
        &api,
        Method::GET,
        "/api/alerts?state=RESOLVED",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(none["nodes"], json!([]));
    let id = nodes[0]["id"].as_str().expect("id");
    let (status, alert) = call(
        &api,
        Method::GET,
        &format!("/api/alerts/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, alert["id"].clone(), alert["count"].clone()),
        (StatusCode::OK, json!(id), json!(1))
    );

    // Opened by hand over REST: refused while the rule's alert is open, as in GraphQL.
    let rule_id = alert["ruleId"].as_str().expect("rule").to_owned();
    let by_hand = json!({ "ruleId": rule_id, "note": "checked on site" }).to_string();
    let (status, body) = call(
        &api,
        Method::POST,
        "/api/alerts",
        Some(&token),
        Some(&by_hand),
    )
    .await;
    assert_eq!(
        (status, error_of(&body)),
        (StatusCode::BAD_REQUEST, ("BAD_USER_INPUT", "input.ruleId")),
        "{body}"
    );
    api.ok(
        Some(&token),
        "mutation($id: ID!) { resolveAlert(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let (status, created) = call(
        &api,
        Method::POST,
        "/api/alerts",
        Some(&token),
        Some(&by_hand),
    )
    .await;
    assert_eq!(
        (status, created["state"].clone()),
        (StatusCode::CREATED, json!("OPEN")),
        "{created}"
    );
    let (status, _) = call(&api, Method::POST, "/api/alerts", None, Some(&by_hand)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    for (path, status, code, field) in [
        ("/api/alerts/424242", StatusCode::NOT_FOUND, "NOT_FOUND", ""),
        (
            "/api/alerts?first=many",
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "first",
        ),
        (
            "/api/alerts?colour=red",
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "colour",
        ),
        (
            "/api/alerts?state=MAYBE",
            StatusCode::BAD_REQUEST,
            "BAD_USER_INPUT",
            "",
        ),
    ] {
        let (got, body) = call(&api, Method::GET, path, Some(&token), None).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(error_of(&body).0, code, "{path}: {body}");
        if !field.is_empty() {
            assert_eq!(error_of(&body).1, field, "{path}: {body}");
        }
    }
    api.stop().await;
}

/// Checks the document as an OpenAPI 3.1 reader does: it parses into the specification's types
/// (`oas3`), and every operation's parameters, body, responses and their schemas resolve (no
/// dangling `$ref`), with an id and at least one success response.
fn check_openapi(document: &Value) {
    let spec = oas3::from_json(document.to_string()).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1"), "{}", spec.openapi);
    let mut operations = 0;
    for (path, method, op) in spec.operations() {
        operations += 1;
        let at = format!("{method} {path}");
        assert!(op.operation_id.is_some(), "{at}: no operationId");
        op.parameters(&spec)
            .unwrap_or_else(|e| panic!("{at}: parameters: {e}"));
        if let Some(body) = op
            .request_body(&spec)
            .unwrap_or_else(|e| panic!("{at}: body: {e}"))
        {
            for (media, content) in &body.content {
                content
                    .schema(&spec)
                    .unwrap_or_else(|e| panic!("{at}: body {media}: {e}"));
            }
        }
        let declared = op.responses.as_ref().map_or(0, |r| r.len());
        let responses = op.responses(&spec);
        assert_eq!(
            responses.len(),
            declared,
            "{at}: a response does not resolve"
        );
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{at}: no success response"
        );
        for (code, response) in &responses {
            for (media, content) in &response.content {
                content
                    .schema(&spec)
                    .unwrap_or_else(|e| panic!("{at}: {code} {media}: {e}"));
            }
        }
    }
    assert!(operations >= api::rest_operations::OPERATIONS.len());
}

#[tokio::test]
async fn the_openapi_document_describes_every_rest_route() {
    let deployment = Deployment::new(Sql::Sqlite, "rest-openapi").await;
    let api = deployment.api(&[]).await;
    let (status, document) = call(&api, Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    for op in &api::rest_operations::OPERATIONS {
        let method = format!("{:?}", op.method).to_lowercase();
        assert_eq!(
            document["paths"][op.path][&method]["operationId"], op.id,
            "{} {} is not in the document",
            method, op.path
        );
    }
    check_openapi(&document);
    insta::assert_snapshot!(
        "openapi",
        serde_json::to_string_pretty(&document).expect("json")
    );
    api.stop().await;
}

#[tokio::test]
async fn cors_answers_only_the_origins_allowed() {
    let deployment = Deployment::new(Sql::Sqlite, "rest-cors").await;
    let closed = deployment.api(&[]).await;
    let open = deployment
        .api(&["--cors-allowed-origins=https://ops.example.com"])
        .await;
    let preflight = |api: &Api, origin: &'static str| {
        api.http
            .request(Method::OPTIONS, format!("{}/api/alerts", api.url))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let answer = preflight(&open, "https://ops.example.com")
        .await
        .expect("preflight");
    assert_eq!(allowed(&answer).as_deref(), Some("https://ops.example.com"));
    let answer = preflight(&open, "https://evil.example.com")
        .await
        .expect("preflight");
    assert_eq!(allowed(&answer), None);
    let answer = preflight(&closed, "https://ops.example.com")
        .await
        .expect("preflight");
    assert_eq!(allowed(&answer), None, "no CORS unless origins are named");

    for bad in ["*", "https://ops.example.com/path", "ops.example.com"] {
        let refused = <api::ApiConfig as clap::Parser>::try_parse_from([
            "api".to_owned(),
            format!("--cors-allowed-origins={bad}"),
        ])
        .map(|_| ())
        .expect_err("not an origin");
        assert!(
            refused.to_string().contains("is not an origin"),
            "{bad}: {refused}"
        );
    }
    closed.stop().await;
    open.stop().await;
}
