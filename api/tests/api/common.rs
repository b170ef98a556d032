#![allow(dead_code)]

use std::time::Duration;

use api::{ApiConfig, Running};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use queue::Engine;
use serde_json::{Value, json};
pub use testkit::{Pools, Sql, TestApp, eventually};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

pub const JWT_SECRET: &str = "test-secret-of-at-least-thirty-two-bytes!";
pub const PASSWORD: &str = "correct horse battery staple";

/// One deployment: the test kit's [`TestApp`] (a migrated database, a Redis prefix and a
/// receiver of the test's own, with its end-of-test dead-job check) and API processes (in this
/// test process, each with its own engine, hub and port) serving them.
pub struct Deployment {
    pub app: TestApp,
    pub redis_url: String,
}

impl std::ops::Deref for Deployment {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Deployment {
    pub async fn new(sql: Sql, tag: &str) -> Self {
        Self::at(sql, tag, &queue::testing::redis_url()).await
    }

    /// Against the Redis at `redis_url` (a test's own server).
    pub async fn at(sql: Sql, tag: &str, redis_url: &str) -> Self {
        Self {
            app: TestApp::at(sql, tag, redis_url).await,
            redis_url: redis_url.to_owned(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.redis.engine
    }

    /// The configuration of an API process of this deployment; `extra` are more flags.
    pub fn config(&self, extra: &[&str]) -> ApiConfig {
        let mut args = vec![
            "api".to_owned(),
            "--addr=127.0.0.1:0".into(),
            format!("--redis-url={}", self.redis_url),
            format!("--prefix={}", self.redis.prefix),
            format!("--database-url={}", self.db.url()),
            format!("--jwt-secret={JWT_SECRET}"),
            "--redis-timeout-ms=1000".into(),
            "--queue-stats-ms=200".into(),
            "--static-dir=/nonexistent".into(),
            // The tests' webhook receivers listen on loopback.
            "--webhook-allow-networks=127.0.0.0/8".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        // try_: a bad flag panics (and cleans up) instead of exiting the test process.
        ApiConfig::try_parse_from(args).expect("api flags")
    }

    pub async fn api(&self, extra: &[&str]) -> Api {
        let config = self.config(extra);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let running = api::start(config, listener).await.expect("api starts");
        Api {
            url: running.url(),
            running: Some(running),
            http: http(),
        }
    }

    /// Worker pools for every queue in the test process (20-60 ms backoff; breakers that stay
    /// closed through the few failures these tests script).
    pub fn pools(&self) -> Pools {
        self.app.start_pools_with(50, |config| {
            config.worker_id = "api-test".into();
            config.backoff = Some((Duration::from_millis(20), Duration::from_millis(60)));
        })
    }
}

/// An HTTP client (rustls needs its crypto provider chosen once per process).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// `GET url`.
pub async fn get(url: String) -> reqwest::Response {
    http().get(url).send().await.expect("get")
}

/// An API process and an HTTP client for it.
pub struct Api {
    pub url: String,
    pub running: Option<Running>,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// POSTs a GraphQL operation; answers the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.url))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("graphql request");
        response.json().await.expect("graphql answers JSON")
    }

    /// Like [`Api::gql`], failing the test if the answer has errors; answers `data`.
    pub async fn ok(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let body = self.gql(token, query, variables).await;
        assert!(
            body.get("errors").is_none_or(Value::is_null),
            "{query} failed: {body}"
        );
        body["data"].clone()
    }

    /// Registers `email` and answers its access token, refresh token and user id.
    pub async fn register(&self, email: &str) -> Session {
        let data = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken refreshToken user { id role } } }",
                json!({ "e": email, "p": PASSWORD }),
            )
            .await;
        Session::from(&data["register"])
    }

    /// An account created by `admin` with `role`, signed in.
    pub async fn create_user(&self, admin: &Session, email: &str, role: &str) -> Session {
        self.ok(
            Some(&admin.access),
            "mutation($e: String!, $p: String!, $r: Role!) { createUser(email: $e, password: $p, role: $r) { id } }",
            json!({ "e": email, "p": PASSWORD, "r": role }),
        )
        .await;
        self.login(email).await
    }

    /// An admin (the first account) and a user of each other role, created by the admin.
    pub async fn team(&self) -> Team {
        let admin = self.register("admin@example.com").await;
        let viewer = self
            .create_user(&admin, "viewer@example.com", "VIEWER")
            .await;
        let operator = self
            .create_user(&admin, "operator@example.com", "OPERATOR")
            .await;
        Team {
            admin,
            operator,
            viewer,
        }
    }

    pub async fn login(&self, email: &str) -> Session {
        let data = self
            .ok(
                None,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken user { id role } } }",
                json!({ "e": email, "p": PASSWORD }),
            )
            .await;
        Session::from(&data["login"])
    }

    /// Sensor `key` and a device that writes it, made by `admin`; answers (device id, API key).
    pub async fn sensor_with_device(&self, admin: &str, key: &str) -> (String, String) {
        self.ok(
            Some(admin),
            "mutation($k: String!) { createSensor(input: {key: $k, name: $k, unit: \"C\"}) { id } }",
            json!({ "k": key }),
        )
        .await;
        let device = self
            .ok(
                Some(admin),
                "mutation($k: String!) { createDevice(input: {name: $k, sensorKeys: [$k]}) { apiKey device { id } } }",
                json!({ "k": key }),
            )
            .await;
        let field = |path: &[&str]| {
            path.iter()
                .fold(&device["createDevice"], |v, p| &v[*p])
                .as_str()
                .expect("device field")
                .to_owned()
        };
        (field(&["device", "id"]), field(&["apiKey"]))
    }

    /// The newest audit-log entries (up to 50) whose action starts with `prefix`, as
    /// `{action, target, details}`, read by `token`'s holder.
    pub async fn audit_entries(&self, token: &str, prefix: &str) -> Vec<Value> {
        self.ok(
            Some(token),
            "query($p: String) { auditLog(first: 50, actionPrefix: $p) { edges { node { action target details } } } }",
            json!({ "p": prefix }),
        )
        .await["auditLog"]["edges"]
            .as_array()
            .map(|edges| edges.iter().map(|e| e["node"].clone()).collect())
            .unwrap_or_default()
    }

    /// The actions of [`Api::audit_entries`].
    pub async fn audit_actions(&self, token: &str, prefix: &str) -> Vec<String> {
        self.audit_entries(token, prefix)
            .await
            .iter()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn ws_url(&self) -> String {
        format!("{}/graphql/ws", self.url.replacen("http", "ws", 1))
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    pub role: String,
}

impl From<&Value> for Session {
    fn from(v: &Value) -> Self {
        Self {
            access: v["accessToken"].as_str().expect("access token").to_owned(),
            refresh: v["refreshToken"]
                .as_str()
                .expect("refresh token")
                .to_owned(),
            user_id: v["user"]["id"].as_str().expect("user id").to_owned(),
            role: v["user"]["role"].as_str().expect("role").to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Team {
    pub admin: Session,
    pub operator: Session,
    pub viewer: Session,
}

/// The `extensions.code` of the first error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code, got {body}"))
}

pub fn field(body: &Value) -> &str {
    body["errors"][0]["extensions"]["field"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a field, got {body}"))
}

/// A graphql-transport-ws client.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server said next.
#[derive(Debug)]
pub enum WsEvent {
    Next(Value),
    Error(Value),
    Complete,
    Closed(Option<u16>),
}

impl WsClient {
    /// Connects and initialises, with `token` in the init payload. Answers the ack, or the
    /// close the server answered with.
    pub async fn connect(api: &Api, token: Option<&str>) -> Result<Self, Option<u16>> {
        let mut request = api.ws_url().into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let (socket, _) = connect_async(request).await.expect("ws connects");
        let mut client = Self { socket };
        let payload = match token {
            Some(token) => json!({ "Authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match client.raw_next(Duration::from_secs(5)).await {
                Some(Ok(v)) if v["type"] == "connection_ack" => return Ok(client),
                Some(Ok(_)) => continue,
                Some(Err(code)) => return Err(code),
                None => return Err(None),
            }
        }
    }

    async fn send(&mut self, value: Value) {
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .expect("ws send");
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
    }

    /// The next protocol message (pings answered), `Err(close code)` when closed, `None` on
    /// timeout.
    async fn raw_next(&mut self, within: Duration) -> Option<Result<Value, Option<u16>>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("ws json");
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(Ok(value));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(Err(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Err(None)),
            }
        }
    }

    /// The next event of any subscription, waiting up to `within`.
    pub async fn next(&mut self, within: Duration) -> Option<WsEvent> {
        match self.raw_next(within).await? {
            Ok(v) if v["type"] == "next" => Some(if v["payload"]["errors"].is_array() {
                WsEvent::Error(v["payload"].clone())
            } else {
                WsEvent::Next(v["payload"]["data"].clone())
            }),
            Ok(v) if v["type"] == "error" => Some(WsEvent::Error(v["payload"].clone())),
            Ok(v) if v["type"] == "complete" => Some(WsEvent::Complete),
            Ok(other) => panic!("unexpected ws message {other}"),
            Err(code) => Some(WsEvent::Closed(code)),
        }
    }

    /// The first thing the server says that is not subscription data (an error, a completion,
    /// the close), reading past any data; each wait up to `within`.
    pub async fn next_not_data(&mut self, within: Duration) -> Option<WsEvent> {
        loop {
            match self.next(within).await {
                Some(WsEvent::Next(_)) => continue,
                other => return other,
            }
        }
    }

    /// The next data payload; fails the test on anything else.
    pub async fn next_data(&mut self, within: Duration) -> Value {
        match self.next(within).await {
            Some(WsEvent::Next(data)) => data,
            other => panic!("expected subscription data, got {other:?}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// An ingest payload of one reading per value, one second apart, sequenced from `from`.
pub fn readings(sensor: &str, from: i64, values: &[f64]) -> Value {
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-21T08:00:00Z").expect("time");
    let readings: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let seq = from + i as i64;
            json!({
                "sensor": sensor,
                "ts": (t0 + chrono::Duration::seconds(seq)).to_rfc3339(),
                "value": value,
                "seq": seq,
            })
        })
        .collect();
    json!({ "readings": readings })
}

pub const SUBMIT: &str = "mutation($input: SubmitJobInput!) { submitJob(input: $input) { duplicate job { id kind state maxAttempts workflowRunId } } }";

/// Kills the process if the test ends early, so no server outlives a failed test.
pub struct Reaped(pub Option<std::process::Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn workers_bin() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("STEADFAST_WORKERS_BIN") {
        return path.into();
    }
    sibling_bin("workers")
}

/// A binary of the `workers` package, built beside this package's `api`: cargo builds only
/// this package's binaries for its tests, and `cargo nextest run --workspace` (and
/// scripts/resilience, for `workers`) builds the others into the same directory.
pub fn sibling_bin(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_api")).with_file_name(name);
    assert!(
        path.exists(),
        "no {name} binary at {}: build it with `cargo build -p steadfast-workers` (same profile)",
        path.display()
    );
    path
}
