//! The JSON REST surface for clients that do not speak GraphQL: sign-up, sign-in, token
//! refresh, and alerts (list, read, open by hand). Each route runs one fixed GraphQL operation against the same schema,
//! so it shares the resolvers' checks, roles, limits and errors (a GraphQL error's code becomes
//! the HTTP status: `BAD_USER_INPUT` 400, `UNAUTHENTICATED` 401, `FORBIDDEN` 403, `NOT_FOUND`
//! 404, `CONFLICT` 409, `RATE_LIMITED` 429 with `Retry-After`, `UNAVAILABLE` 503). The same
//! table writes the OpenAPI document served at `/api/openapi.json`, so the two cannot disagree.

use std::{collections::HashMap, net::SocketAddr};

use async_graphql::{Request, Variables};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{ConnectInfo, Path, Query, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use serde_json::{Map, Value, json};

use crate::{
    error::{ApiError, ApiResult, Code},
    graphql::ClientAddress,
    server::{AppState, caller},
};

/// How a value arrives and what type it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Integer,
}

/// One input of a route: a JSON body field, a query parameter or a path segment, and the
/// operation variable it fills (`filter.state` fills `state` inside the variable `filter`).
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub variable: &'static str,
    pub kind: Kind,
    pub required: bool,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// One REST route: its GraphQL operation and what of the answer it returns.
#[derive(Debug)]
pub struct Operation {
    pub id: &'static str,
    pub method: Method,
    /// In axum's and OpenAPI's syntax alike (`/api/alerts/{id}`).
    pub path: &'static str,
    pub summary: &'static str,
    /// Whether it needs `Authorization: Bearer <access token>`.
    pub signed_in: bool,
    pub document: &'static str,
    /// The field of `data` answered.
    pub field: &'static str,
    pub success: StatusCode,
    /// Answered with `NOT_FOUND` when the field is null.
    pub not_found: Option<&'static str>,
    pub body: &'static [Param],
    pub query: &'static [Param],
    pub path_params: &'static [Param],
    /// An example of the answer, for the document.
    pub example: &'static str,
}

/// What a sign-in answers, in every auth route's selection.
macro_rules! session_fields {
    () => {
        "accessToken refreshToken expiresIn user { id email role createdAt }"
    };
}

/// An alert's fields, in every alert route's selection.
macro_rules! alert_fields {
    () => {
        "id ruleId sensor state count workflowRunId openedAt updatedAt resolvedAt acknowledgedBy acknowledgedAt lastNotifiedAt"
    };
}

const CREDENTIALS: &[Param] = &[
    Param {
        name: "email",
        variable: "email",
        kind: Kind::String,
        required: true,
        doc: "The account's email address.",
    },
    Param {
        name: "password",
        variable: "password",
        kind: Kind::String,
        required: true,
        doc: "At least 12 characters.",
    },
];

const SESSION_EXAMPLE: &str = r#"{"accessToken": "eyJ...", "refreshToken": "sfr_...", "expiresIn": 900, "user": {"id": "1", "email": "ops@example.com", "role": "ADMIN", "createdAt": "2026-12-03T08:00:00Z"}}"#;
const ALERT_EXAMPLE: &str = r#"{"id": "7", "ruleId": "3", "sensor": "boiler-1", "state": "OPEN", "count": 4, "workflowRunId": "01J...", "openedAt": "2026-12-03T08:00:00Z", "updatedAt": "2026-12-03T08:01:00Z", "resolvedAt": null, "acknowledgedBy": null, "acknowledgedAt": null, "lastNotifiedAt": "2026-12-03T08:00:00Z"}"#;

/// Every REST route backed by an operation, in the order the document lists them.
pub static OPERATIONS: [Operation; 6] = [
    Operation {
        id: "register",
        method: Method::Post,
        path: "/api/auth/register",
        summary: "Create an account and sign in (the first account is the admin; later ones only while sign-up is open).",
        signed_in: false,
        document: concat!(
            "mutation($email: String!, $password: String!, $bootstrapToken: String) { register(email: $email, password: $password, bootstrapToken: $bootstrapToken) { ",
            session_fields!(),
            " } }"
        ),
        field: "register",
        success: StatusCode::CREATED,
        not_found: None,
        body: &[
            CREDENTIALS[0],
            CREDENTIALS[1],
            Param {
                name: "bootstrapToken",
                variable: "bootstrapToken",
                kind: Kind::String,
                required: false,
                doc: "In production, the first account needs BOOTSTRAP_ADMIN_TOKEN.",
            },
        ],
        query: &[],
        path_params: &[],
        example: SESSION_EXAMPLE,
    },
    Operation {
        id: "login",
        method: Method::Post,
        path: "/api/auth/login",
        summary: "Sign in: an access token (15 minutes) and a single-use refresh token.",
        signed_in: false,
        document: concat!(
            "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { ",
            session_fields!(),
            " } }"
        ),
        field: "login",
        success: StatusCode::OK,
        not_found: None,
        body: CREDENTIALS,
        query: &[],
        path_params: &[],
        example: SESSION_EXAMPLE,
    },
    Operation {
        id: "refreshToken",
        method: Method::Post,
        path: "/api/auth/token/refresh",
        summary: "Trade a refresh token for a new pair; a token used twice revokes its whole family.",
        signed_in: false,
        document: concat!(
            "mutation($refreshToken: String!) { refreshToken(refreshToken: $refreshToken) { ",
            session_fields!(),
            " } }"
        ),
        field: "refreshToken",
        success: StatusCode::OK,
        not_found: None,
        body: &[Param {
            name: "refreshToken",
            variable: "refreshToken",
            kind: Kind::String,
            required: true,
            doc: "The refresh token of the last sign-in or refresh.",
        }],
        query: &[],
        path_params: &[],
        example: SESSION_EXAMPLE,
    },
    Operation {
        id: "listAlerts",
        method: Method::Get,
        path: "/api/alerts",
        summary: "Alerts, newest first, filtered and paged (viewer).",
        signed_in: true,
        document: concat!(
            "query($filter: AlertsFilter, $first: Int, $after: String) { alerts(filter: $filter, first: $first, after: $after) { ",
            "nodes { ",
            alert_fields!(),
            " } ",
            "pageInfo { hasNextPage endCursor } eventCursor } }"
        ),
        field: "alerts",
        success: StatusCode::OK,
        not_found: None,
        body: &[],
        query: &[
            Param {
                name: "state",
                variable: "filter.state",
                kind: Kind::String,
                required: false,
                doc: "OPEN or RESOLVED.",
            },
            Param {
                name: "sensor",
                variable: "filter.sensor",
                kind: Kind::String,
                required: false,
                doc: "A sensor's key.",
            },
            Param {
                name: "first",
                variable: "first",
                kind: Kind::Integer,
                required: false,
                doc: "Page size, 1 to 100 (default 20).",
            },
            Param {
                name: "after",
                variable: "after",
                kind: Kind::String,
                required: false,
                doc: "The endCursor of the previous page.",
            },
        ],
        path_params: &[],
        example: r#"{"nodes": [], "pageInfo": {"hasNextPage": false, "endCursor": null}, "eventCursor": "1733212800000-0"}"#,
    },
    Operation {
        id: "getAlert",
        method: Method::Get,
        path: "/api/alerts/{id}",
        summary: "One alert (viewer).",
        signed_in: true,
        document: concat!(
            "query($id: ID!) { alert(id: $id) { ",
            alert_fields!(),
            " } }"
        ),
        field: "alert",
        success: StatusCode::OK,
        not_found: Some("no alert has this id"),
        body: &[],
        query: &[],
        path_params: &[Param {
            name: "id",
            variable: "id",
            kind: Kind::String,
            required: true,
            doc: "The alert's id.",
        }],
        example: ALERT_EXAMPLE,
    },
    Operation {
        id: "createAlert",
        method: Method::Post,
        path: "/api/alerts",
        summary: "Open an alert for a rule by hand (operator), notifying its channels like a raised one.",
        signed_in: true,
        document: concat!(
            "mutation($input: CreateAlertInput!) { createAlert(input: $input) { ",
            alert_fields!(),
            " } }"
        ),
        field: "createAlert",
        success: StatusCode::CREATED,
        not_found: None,
        body: &[
            Param {
                name: "ruleId",
                variable: "input.ruleId",
                kind: Kind::String,
                required: true,
                doc: "The rule the alert belongs to.",
            },
            Param {
                name: "note",
                variable: "input.note",
                kind: Kind::String,
                required: false,
                doc: "Why, for the audit log (up to 500 characters).",
            },
        ],
        query: &[],
        path_params: &[],
        example: ALERT_EXAMPLE,
    },
];

/// The routes, for the server's router.
pub fn routes() -> Router<AppState> {
    OPERATIONS.iter().fold(Router::new(), |router, op| {
        router.route(op.path, method_router(op))
    })
}

fn method_router(op: &'static Operation) -> MethodRouter<AppState> {
    let handler = move |state: State<AppState>,
                        peer: ConnectInfo<SocketAddr>,
                        headers: HeaderMap,
                        path: Option<Path<HashMap<String, String>>>,
                        query: Query<HashMap<String, String>>,
                        body: Result<Bytes, BytesRejection>| async move {
        match run(op, state, peer, headers, path, query, body).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    };
    match op.method {
        Method::Get => get(handler),
        Method::Post => post(handler),
    }
}

/// Sets `variables[a][b]` for the path `a.b`.
fn set(variables: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        Some((head, rest)) => {
            let inner = variables
                .entry(head)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = inner {
                set(inner, rest, value);
            }
        }
        None => {
            variables.insert(path.to_owned(), value);
        }
    }
}

/// A query or path value as its declared type.
fn typed(param: &Param, raw: &str) -> ApiResult<Value> {
    match param.kind {
        Kind::String => Ok(json!(raw)),
        Kind::Integer => raw.parse::<i64>().map(|n| json!(n)).map_err(|_| {
            ApiError::bad_input(param.name, format!("{} must be an integer", param.name))
        }),
    }
}

/// The operation's variables from the request's path, query and JSON body; unknown inputs
/// and missing required ones are refused by name.
fn variables(
    op: &Operation,
    path: &HashMap<String, String>,
    query: &HashMap<String, String>,
    body: &Bytes,
) -> ApiResult<Map<String, Value>> {
    let mut variables = Map::new();
    for param in op.path_params {
        let raw = path
            .get(param.name)
            .ok_or_else(|| ApiError::bad_input(param.name, "missing from the path"))?;
        set(&mut variables, param.variable, typed(param, raw)?);
    }
    if let Some(unknown) = query
        .keys()
        .find(|k| !op.query.iter().any(|p| p.name == k.as_str()))
    {
        return Err(ApiError::bad_input(
            unknown.clone(),
            format!(
                "unknown query parameter; this route takes {}",
                names(op.query)
            ),
        ));
    }
    for param in op.query {
        if let Some(raw) = query.get(param.name) {
            set(&mut variables, param.variable, typed(param, raw)?);
        }
    }
    if op.body.is_empty() {
        return Ok(variables);
    }
    let fields: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_input(
            "body",
            format!("expected a JSON object with {}: {e}", names(op.body)),
        )
    })?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !op.body.iter().any(|p| p.name == k.as_str()))
    {
        return Err(ApiError::bad_input(
            unknown.clone(),
            format!("unknown field; this route takes {}", names(op.body)),
        ));
    }
    for param in op.body {
        match fields.get(param.name) {
            Some(Value::Null) | None if param.required => {
                return Err(ApiError::bad_input(param.name, "required"));
            }
            Some(value) => set(&mut variables, param.variable, value.clone()),
            None => {}
        }
    }
    Ok(variables)
}

fn names(params: &[Param]) -> String {
    let names: Vec<&str> = params.iter().map(|p| p.name).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

async fn run(
    op: &'static Operation,
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    path: Option<Path<HashMap<String, String>>>,
    Query(query): Query<HashMap<String, String>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::limit(format!(
                "the request body is larger than {} bytes",
                state.shared.config.body_limit_bytes
            ))
        } else {
            ApiError::bad_input("body", e.body_text())
        }
    })?;
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let variables = variables(op, &path, &query, &body)?;
    let request = Request::new(op.document)
        .variables(Variables::from_json(Value::Object(variables)))
        .data(caller(&state, &headers))
        .data(ClientAddress(
            crate::forwarded::client_address(
                peer.ip(),
                &headers,
                &state.shared.config.trusted_proxies,
            )
            .to_string(),
        ));
    let response = state.schema.execute(request).await;
    if let Some(error) = response.errors.first() {
        return Err(ApiError::from_graphql(error));
    }
    let data = response
        .data
        .into_json()
        .map_err(|e| ApiError::internal(format!("{}: answer not JSON: {e}", op.id)))?;
    let answer = data.get(op.field).cloned().unwrap_or(Value::Null);
    if answer.is_null()
        && let Some(message) = op.not_found
    {
        return Err(ApiError::not_found(message));
    }
    Ok((op.success, Json(answer)).into_response())
}

fn schema_of(kind: Kind) -> Value {
    match kind {
        Kind::String => json!({ "type": "string" }),
        Kind::Integer => json!({ "type": "integer" }),
    }
}

/// The OpenAPI 3.1 document of the REST surface: these routes, and the device and health
/// routes served beside them.
pub fn openapi() -> Value {
    let error = json!({
        "description": "An error: its code, a message, and the field at fault when there is one.",
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    });
    let mut paths = Map::new();
    for op in &OPERATIONS {
        let mut parameters: Vec<Value> = Vec::new();
        for (place, params) in [("path", op.path_params), ("query", op.query)] {
            for p in params {
                parameters.push(json!({
                    "name": p.name, "in": place, "required": p.required || place == "path",
                    "description": p.doc, "schema": schema_of(p.kind),
                }));
            }
        }
        let mut operation = json!({
            "operationId": op.id,
            "summary": op.summary,
            "responses": {
                op.success.as_u16().to_string(): {
                    "description": "Success.",
                    "content": { "application/json": { "example": serde_json::from_str::<Value>(op.example).unwrap_or(Value::Null) } }
                },
                "default": error.clone(),
            },
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if !op.body.is_empty() {
            let properties: Map<String, Value> = op
                .body
                .iter()
                .map(|p| {
                    let mut schema = schema_of(p.kind);
                    schema["description"] = json!(p.doc);
                    (p.name.to_owned(), schema)
                })
                .collect();
            let required: Vec<&str> = op
                .body
                .iter()
                .filter(|p| p.required)
                .map(|p| p.name)
                .collect();
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": {
                    "type": "object", "additionalProperties": false,
                    "properties": properties, "required": required,
                } } }
            });
        }
        if op.signed_in {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        let method = match op.method {
            Method::Get => "get",
            Method::Post => "post",
        };
        let entry = paths
            .entry(op.path)
            .or_insert_with(|| Value::Object(Map::new()));
        entry[method] = operation;
    }
    paths.insert(
        "/api/sensors/data".into(),
        json!({ "post": {
            "operationId": "postReadings",
            "summary": "A device posts readings of its sensors (device key; `Idempotency-Key` header honoured).",
            "security": [{ "deviceKey": [] }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["readings"],
                "properties": { "readings": { "type": "array", "items": { "type": "object",
                    "required": ["sensor", "ts", "value"],
                    "properties": { "sensor": { "type": "string" }, "ts": { "type": "string", "format": "date-time" },
                        "value": { "type": "number" }, "seq": { "type": "integer" } } } } } } } } },
            "responses": { "202": { "description": "Queued as an ingest job.",
                "content": { "application/json": { "example": { "jobId": "01J...", "duplicate": false } } } },
                "default": error.clone() },
        }}),
    );
    paths.insert(
        "/api/sensors/{key}/status".into(),
        json!({ "get": {
            "operationId": "sensorStatus",
            "summary": "A sensor's last reading and open alerts (its device's key, or a viewer's token).",
            "security": [{ "deviceKey": [] }, { "bearer": [] }],
            "parameters": [{ "name": "key", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": { "200": { "description": "The sensor's status." }, "default": error.clone() },
        }}),
    );
    for (path, id, summary) in [
        ("/health", "health", "Liveness: the process answers."),
        (
            "/ready",
            "ready",
            "Readiness: Redis and SQL reachable, with per-dependency detail (503 when not).",
        ),
    ] {
        paths.insert(
            path.into(),
            json!({ "get": { "operationId": id, "summary": summary, "responses": { "200": { "description": "Up." }, "503": { "description": "Not ready." } } } }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Steadfast REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON routes beside GraphQL (/graphql). Each runs a GraphQL operation, so roles, limits and errors are the same. Errors: {\"error\": {\"code\", \"message\", \"field\"}}.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
                "deviceKey": { "type": "http", "scheme": "bearer", "description": "A device key (sfd_...), also accepted as X-Api-Key." },
            },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": { "type": "string", "enum": Code::ALL.map(Code::as_str) },
                        "message": { "type": "string" },
                        "field": { "type": "string" },
                        "retryAfterSeconds": { "type": "integer" },
                    } } } },
            },
        },
    })
}

/// `GET /api/openapi.json`.
pub async fn openapi_document() -> Json<Value> {
    Json(openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_variables_are_built_from_dotted_paths() {
        let mut v = Map::new();
        set(&mut v, "filter.state", json!("OPEN"));
        set(&mut v, "filter.sensor", json!("a"));
        set(&mut v, "first", json!(5));
        assert_eq!(
            Value::Object(v),
            json!({ "filter": { "state": "OPEN", "sensor": "a" }, "first": 5 })
        );
    }
}
