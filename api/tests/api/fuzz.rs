//! Bad input at volume: thousands of generated GraphQL and REST requests (malformed JSON,
//! wrong types, odd unicode, negative and huge numbers, deep queries, mangled queries, huge
//! bodies) against a real API process. None may panic it or answer a 5xx other than a
//! deliberate 503, and every GraphQL error must carry a code.

use std::{collections::BTreeMap, time::Instant};

use futures::StreamExt;
use proptest::{
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, TestRunner},
};
use serde_json::{Value, json};

use super::common::{Deployment, Sql};

/// `STEADFAST_FUZZ_CASES` raises it for the long form.
const DEFAULT_CASES: usize = 10_000;
const IN_FLIGHT: usize = 16;
const CODES: [&str; 9] = [
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "NOT_FOUND",
    "UNAVAILABLE",
    "RATE_LIMITED",
    "LIMIT_EXCEEDED",
    "CURSOR_EXPIRED",
    "INTERNAL",
];

#[derive(Debug, Clone)]
enum Case {
    Graphql {
        body: Vec<u8>,
        auth: Auth,
    },
    Readings {
        body: Vec<u8>,
        idempotency_key: Option<String>,
    },
    Status {
        key: String,
    },
}

impl Case {
    fn describe(&self) -> String {
        match self {
            Case::Graphql { body, auth } => {
                format!("POST /graphql ({auth:?}) {}", String::from_utf8_lossy(body))
            }
            Case::Readings {
                body,
                idempotency_key,
            } => {
                format!(
                    "POST /api/sensors/data (key {idempotency_key:?}) {}",
                    String::from_utf8_lossy(body)
                )
            }
            Case::Status { key } => format!("GET /api/sensors/{key:?}/status"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Auth {
    Admin,
    None,
    Garbage,
}

/// Strings a careless parser trips on, and the field names the validators look for.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\PC]{0,40}",
        Just(String::new()),
        Just("\u{0}\u{1}\u{7f}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just(format!("{}@example.com", "k".repeat(5000))),
        Just("\u{202e}gnirts\u{202d}".to_owned()),
        Just("😀".repeat(300)),
        Just("'; DROP TABLE jobs; --".to_owned()),
        Just("a".repeat(70_000)),
        Just("2026-11-21T10:00:00Z".to_owned()),
        Just("9999-99-99T99:99:99Z".to_owned()),
        Just("readings".to_owned()),
        Just("sensor".to_owned()),
        Just("ts".to_owned()),
        Just("value".to_owned()),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(2_147_483_648_i64)),
        Just(json!(-9_223_372_036_854_775_808_i64)),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        number(),
        odd_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(odd_string(), inner, 0..6)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A payload that is almost an ingest, so the validators' deeper paths are reached too.
fn near_payload() -> impl Strategy<Value = Value> {
    let reading = (json_value(), json_value(), json_value(), json_value()).prop_map(|(sensor, ts, value, seq)| {
        json!({ "sensor": sensor, "ts": ts, "value": value, "seq": seq })
    });
    prop_oneof![
        prop::collection::vec(reading, 0..4).prop_map(|r| json!({ "readings": r })),
        (json_value(), json_value()).prop_map(|(channel, message)| json!({ "channel": channel, "message": message })),
        (json_value(), json_value(), json_value(), json_value())
            .prop_map(|(rule, sensor, reading, breach)| json!({ "rule": rule, "sensor": sensor, "reading": reading, "breach": breach })),
        json_value(),
    ]
}

const OPERATIONS: [&str; 20] = [
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
    "mutation($e: String!, $p: String!, $b: String) { register(email: $e, password: $p, bootstrapToken: $b) { accessToken } }",
    "mutation($e: String!, $p: String!, $r: Role!) { createUser(email: $e, password: $p, role: $r) { id } }",
    "mutation($id: ID!, $e: Boolean!) { setChannelEnabled(id: $id, enabled: $e) { id } }",
    "mutation($id: ID!) { deleteChannel(id: $id) }",
    "mutation($t: String!) { logout(refreshToken: $t) }",
    "query($id: ID!) { job(id: $id) { id state attempts { attempt } } }",
    "query($f: JobsFilter, $n: Int, $a: String) { jobs(filter: $f, first: $n, after: $a) { edges { node { id } } } }",
    "query($k: String!, $n: Int!) { sensor(key: $k) { id readings(last: $n) { value } } }",
    "query($n: Int, $a: String, $f: DeadJobsFilter) { deadJobs(filter: $f, first: $n, after: $a) { edges { node { id } } } }",
    "query($n: Int, $p: String) { auditLog(first: $n, actionPrefix: $p) { edges { node { id } } } }",
    "query($f: AlertsFilter, $n: Int) { alerts(filter: $f, first: $n) { edges { node { id } } } }",
    "query($id: ID!) { workflowRun(id: $id) { id steps { jobId } } }",
    "mutation($i: CreateSensorInput!) { createSensor(input: $i) { id } }",
    "mutation($i: CreateRuleInput!) { createRule(input: $i) { id } }",
    "mutation($i: CreateChannelInput!) { createChannel(input: $i) { id } }",
    "mutation($f: RequeueDeadJobsFilter!) { requeueDeadJobs(filter: $f) }",
    "mutation($id: ID!) { cancelJob(id: $id) { id } }",
    "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }",
    "mutation($u: ID!, $r: Role!) { setUserRole(userId: $u, role: $r) { id } }",
];

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![8 => Just(Auth::Admin), 1 => Just(Auth::None), 1 => Just(Auth::Garbage)]
}

fn graphql(body: Value) -> Vec<u8> {
    serde_json::to_vec(&body).unwrap_or_default()
}

fn case() -> impl Strategy<Value = Case> {
    let kind = prop_oneof![
        Just(json!("INGEST")),
        Just(json!("EVALUATE")),
        Just(json!("ALERT")),
        Just(json!("NOTIFY")),
        Just(json!("SILENCE_CHECK")),
        json_value(),
    ];
    let submit = (kind, near_payload(), json_value(), json_value(), json_value(), auth()).prop_map(
        |(kind, payload, max_attempts, run_at, key, auth)| Case::Graphql {
            body: graphql(json!({
                "query": "mutation($input: SubmitJobInput!) { submitJob(input: $input) { job { id } } }",
                "variables": { "input": { "kind": kind, "payload": payload, "maxAttempts": max_attempts, "runAt": run_at, "idempotencyKey": key } }
            })),
            auth,
        },
    );
    let wrong_types = (
        prop::sample::select(OPERATIONS.to_vec()),
        prop::collection::btree_map("[a-z]{1,2}", json_value(), 0..4),
        auth(),
    )
        .prop_map(|(query, variables, auth)| Case::Graphql {
            body: graphql(json!({ "query": query, "variables": variables })),
            auth,
        });
    let mangled = (
        prop::sample::select(OPERATIONS.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..6),
        auth(),
    )
        .prop_map(|(query, edits, auth)| {
            let mut chars: Vec<char> = query.chars().collect();
            for (at, c) in edits {
                let i = at.index(chars.len());
                if c.is_ascii_digit() {
                    chars.remove(i);
                } else {
                    chars[i] = c;
                }
            }
            let query: String = chars.into_iter().collect();
            Case::Graphql {
                body: graphql(json!({ "query": query })),
                auth,
            }
        });
    let deep = (1usize..3000, auth()).prop_map(|(depth, auth)| {
        let query = format!(
            "{{ __schema {{ types {{ fields {{ type {}{{ name }}{} }} }} }} }}",
            "{ ofType ".repeat(depth),
            " }".repeat(depth)
        );
        Case::Graphql {
            body: graphql(json!({ "query": query })),
            auth,
        }
    });
    let braces = (1usize..20_000, auth()).prop_map(|(depth, auth)| Case::Graphql {
        body: graphql(json!({ "query": format!("{}{}", "{".repeat(depth), "}".repeat(depth)) })),
        auth,
    });
    // Aliases of plain lists: each alias counts, so many of them meet the complexity limit.
    let aliases = (
        1usize..400,
        prop::sample::select(vec![
            "sensors { id key rules { id kind } readings(last: 5) { value } }",
            "channels { id url }",
            "devices { id sensorKeys }",
            "users(first: 50) { edges { node { id } } }",
        ]),
        auth(),
    )
        .prop_map(|(n, list, auth)| Case::Graphql {
            body: graphql(json!({
                "query": format!(
                    "{{ {} }}",
                    (0..n).map(|i| format!("a{i}: {list}")).collect::<Vec<_>>().join(" ")
                )
            })),
            auth,
        });
    let raw = (prop::collection::vec(any::<u8>(), 0..512), auth())
        .prop_map(|(body, auth)| Case::Graphql { body, auth });
    let not_an_operation = (json_value(), auth()).prop_map(|(body, auth)| Case::Graphql {
        body: graphql(body),
        auth,
    });
    let readings = (near_payload(), proptest::option::of("[ -~]{0,300}")).prop_map(
        |(body, idempotency_key)| Case::Readings {
            body: graphql(body),
            idempotency_key,
        },
    );
    let raw_readings = prop::collection::vec(any::<u8>(), 0..256).prop_map(|body| Case::Readings {
        body,
        idempotency_key: None,
    });
    // Keys up to 500 characters: longer ones would not fit in a URL a client sends.
    let status = odd_string().prop_map(|key| Case::Status {
        key: key.chars().take(500).collect(),
    });
    prop_oneof![
        4 => submit,
        3 => wrong_types,
        2 => mangled,
        1 => deep,
        1 => braces,
        1 => aliases,
        1 => raw,
        1 => not_an_operation,
        2 => readings,
        1 => raw_readings,
        1 => status,
    ]
}

struct Outcome {
    status: u16,
    problem: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bad_inputs_get_clear_errors_and_never_a_5xx() {
    let cases: usize = std::env::var("STEADFAST_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let deployment = Deployment::new(Sql::Sqlite, "fuzz").await;
    let api = deployment
        .api(&[
            "--login-attempts-per-minute=100000",
            "--device-requests-per-minute=1000000",
        ])
        .await;
    let admin = api.register("admin@example.com").await.access;
    api.ok(
        Some(&admin),
        "mutation { createSensor(input: {key: \"s1\", name: \"s1\", unit: \"C\"}) { id } }",
        json!({}),
    )
    .await;
    let device_key = api
        .ok(
            Some(&admin),
            "mutation { createDevice(input: {name: \"d1\", sensorKeys: [\"s1\"]}) { apiKey } }",
            json!({}),
        )
        .await["createDevice"]["apiKey"]
        .as_str()
        .expect("device key")
        .to_owned();

    // A fixed seed: a failure names its case number, and the same run reproduces it.
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    );
    let strategy = case();
    let generated: Vec<Case> = (0..cases)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect();

    let started = Instant::now();
    let outcomes: Vec<(usize, Outcome)> =
        futures::stream::iter(generated.iter().cloned().enumerate())
            .map(|(n, case)| {
                let (http, url, admin, device_key) = (
                    api.http.clone(),
                    api.url.clone(),
                    admin.clone(),
                    device_key.clone(),
                );
                async move { (n, send(&http, &url, &admin, &device_key, case).await) }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
    let elapsed = started.elapsed();

    // Bodies past the limit, a few times: refused before they are read whole.
    // A fresh client each: the server closes the connection after refusing a body it did not
    // read to the end, and a pooled connection could be reused before its close is seen.
    let huge = vec![b'['; 5 * 1024 * 1024];
    for path in ["/graphql", "/api/sensors/data"] {
        let status = super::common::http()
            .post(format!("{}{path}", api.url))
            .bearer_auth(&device_key)
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .expect("huge body")
            .status();
        assert_eq!(status.as_u16(), 413, "{path} with 5 MiB");
    }

    // Websocket frames past the limit: each socket is closed with 1009, the server stays up.
    for size in [65 * 1024, 256 * 1024, 3 * 1024 * 1024] {
        assert_eq!(
            oversized_frame(&api, size).await,
            Some(1009),
            "a {size}-byte websocket frame"
        );
    }

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, outcome) in &outcomes {
        *by_status.entry(outcome.status).or_default() += 1;
    }
    let problems: Vec<String> = outcomes
        .iter()
        .filter_map(|(n, o)| {
            o.problem
                .as_ref()
                .map(|p| format!("case {n}: {p:.300}\n  {:.600}", generated[*n].describe()))
        })
        .collect();
    println!(
        "fuzz: {} cases in {:.1} s ({:.0}/s), answers by status {by_status:?}",
        outcomes.len(),
        elapsed.as_secs_f64(),
        outcomes.len() as f64 / elapsed.as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(outcomes.len(), cases);

    // Still standing, and still correct. A fresh client: the fuzzing one's pool may hold a
    // connection the server closed after refusing an oversized body, which a reuse would meet.
    let api = super::common::Api {
        http: super::common::http(),
        ..api
    };
    let health = api
        .http
        .get(format!("{}/health", api.url))
        .send()
        .await
        .expect("health");
    assert!(health.status().is_success());
    api.ok(
        Some(&admin),
        "mutation { submitJob(input: {kind: EVALUATE, payload: {sensor: \"s1\"}}) { job { id } } }",
        json!({}),
    )
    .await;
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    device_key: &str,
    case: Case,
) -> Outcome {
    let (request, is_graphql) = match case {
        Case::Graphql { body, auth } => {
            let request = http
                .post(format!("{url}/graphql"))
                .header("content-type", "application/json")
                .body(body);
            let request = match auth {
                Auth::Admin => request.bearer_auth(admin),
                Auth::Garbage => request.bearer_auth("eyJhbGciOiJub25lIn0.e30."),
                Auth::None => request,
            };
            (request, true)
        }
        Case::Readings {
            body,
            idempotency_key,
        } => {
            let mut request = http
                .post(format!("{url}/api/sensors/data"))
                .bearer_auth(device_key)
                .header("content-type", "application/json")
                .body(body);
            if let Some(key) = idempotency_key {
                request = request.header("idempotency-key", key);
            }
            (request, false)
        }
        Case::Status { key } => {
            let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
            (
                http.get(format!("{url}/api/sensors/{encoded}/status"))
                    .bearer_auth(device_key),
                false,
            )
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Outcome {
                status: 0,
                problem: Some(format!("no answer: {e}")),
            };
        }
    };
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let problem = if status >= 500 && status != 503 {
        Some(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    } else if is_graphql {
        graphql_problem(status, parsed.as_ref())
    } else if status == 503
        && parsed.as_ref().and_then(|b| b["code"].as_str()) != Some("UNAVAILABLE")
    {
        Some(format!(
            "a 503 without the UNAVAILABLE code: {}",
            String::from_utf8_lossy(&body)
        ))
    } else {
        None
    };
    Outcome { status, problem }
}

/// Every GraphQL answer is JSON, and each of its errors names a code the API documents.
fn graphql_problem(status: u16, body: Option<&Value>) -> Option<String> {
    let Some(body) = body else {
        return Some(format!("answered {status} without a JSON body"));
    };
    let answers = match body {
        Value::Array(batch) => batch.iter().collect::<Vec<_>>(),
        single => vec![single],
    };
    for answer in answers {
        for error in answer["errors"].as_array().into_iter().flatten() {
            let code = error["extensions"]["code"].as_str().unwrap_or("");
            if !CODES.contains(&code) {
                return Some(format!("an error without a documented code: {error}"));
            }
            if code == "INTERNAL" {
                return Some(format!("an internal error: {error}"));
            }
        }
    }
    None
}

/// Sends one text frame of `size` bytes as `connection_init`; answers the close code.
async fn oversized_frame(api: &super::common::Api, size: usize) -> Option<u16> {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};
    let mut request = api.ws_url().into_client_request().expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("ws connects");
    let frame = json!({ "type": "connection_init", "payload": { "pad": "x".repeat(size) } });
    let _ = socket.send(Message::Text(frame.to_string().into())).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) | Err(_) => return None,
        }
    }
}
