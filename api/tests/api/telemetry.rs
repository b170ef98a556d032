//! Traces and metrics as operators see them: the real `api` and `workers` binaries export
//! spans over OTLP/HTTP to a receiver inside this test. One ingest, submitted with a
//! `traceparent`, yields one trace with spans from both processes and all four steps; the
//! workers' JSON logs carry the trace id and the job's fields; `/metrics` of both processes
//! parses and counts what happened.

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::any_value::Value as AnyValue,
};
use prost::Message as _;
use serde_json::{Value, json};
use testkit::Receiver;

use super::common::{
    Api, Deployment, Reaped, SUBMIT, Sql, WsClient, eventually, http, readings, sibling_bin,
    workers_bin,
};

/// One span as the collector got it.
#[derive(Debug, Clone)]
struct SpanSeen {
    service: String,
    name: String,
    trace_id: String,
    trace_state: String,
    attributes: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<SpanSeen>>>;

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// `POST /v1/traces` as an OTLP/HTTP collector answers it (protobuf in, protobuf out).
async fn collect(State(spans): State<Spans>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut seen = spans.lock().expect("spans");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            seen.push(SpanSeen {
                service: service.clone(),
                name: span.name,
                trace_id: hex::encode(&span.trace_id),
                trace_state: span.trace_state,
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                    .collect(),
            });
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn start_collector() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// Prometheus text: every sample as (name, labels, value).
fn parse_prometheus(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("value of {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .strip_suffix('}')
                        .expect("labels close")
                        .split(',')
                        .filter(|l| !l.is_empty())
                        .map(|l| {
                            let (k, v) = l.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), HashMap::new()),
            };
            (name, labels, value)
        })
        .collect()
}

fn sample(
    samples: &[(String, HashMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

async fn scrape(url: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    let response = http().get(url).send().await.expect("scrape");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    parse_prometheus(&response.text().await.expect("metrics text"))
}

#[tokio::test]
async fn one_ingest_is_one_trace_across_both_processes_and_metrics_count_it() {
    let (collector, spans) = start_collector().await;
    let receiver = Receiver::start().await;
    let deployment = Deployment::new(Sql::Sqlite, "telemetry").await;
    let dir = TempDir::new();
    let common = |service: &str| {
        vec![
            format!("--redis-url={}", deployment.redis_url),
            format!("--prefix={}", deployment.redis.prefix),
            format!("--database-url={}", deployment.db.url()),
            format!("--otlp-endpoint={collector}"),
            format!("--service-name={service}"),
            "--log-format=json".to_owned(),
        ]
    };
    let api_port = queue::testing::free_port();
    let mut api_args = common("steadfast-api");
    api_args.extend([
        format!("--addr=127.0.0.1:{api_port}"),
        "--static-dir=/nonexistent".to_owned(),
    ]);
    let _api = Reaped(Some(
        Command::new(env!("CARGO_BIN_EXE_api"))
            .args(api_args)
            .env("RUST_LOG", "warn")
            .env("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(Stdio::null())
            .spawn()
            .expect("api binary"),
    ));
    let metrics_port = queue::testing::free_port();
    let mut worker_args = common("steadfast-workers");
    worker_args.extend([
        format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        "--concurrency=4".to_owned(),
        "--worker-id=telemetry".to_owned(),
        // Not silence_check: its ticks start traces of their own.
        "--queues=ingest,evaluate,alert,notify".to_owned(),
    ]);
    let worker_log = dir.0.join("workers.log");
    let _workers = Reaped(Some(
        Command::new(workers_bin())
            .args(worker_args)
            .env("RUST_LOG", "warn,queue=debug")
            .env("WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(File::create(&worker_log).expect("log file"))
            .spawn()
            .expect("workers binary"),
    ));
    let api = Api {
        url: format!("http://127.0.0.1:{api_port}"),
        running: None,
        http: http(),
    };
    let workers_url = format!("http://127.0.0.1:{metrics_port}");
    for url in [format!("{}/ready", api.url), format!("{workers_url}/ready")] {
        eventually(
            Duration::from_secs(20),
            "the process to be ready",
            || async {
                match http().get(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(r.status().to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
    }

    // The containers' health check: 0 for a ready process, 1 for a port that refuses.
    let probe = |url: String| {
        Command::new(sibling_bin("probe"))
            .args([url, "--timeout-ms=2000".to_owned()])
            .stderr(Stdio::null())
            .status()
            .expect("probe binary")
    };
    assert!(probe(format!("{workers_url}/ready")).success());
    assert!(probe(format!("{}/health", api.url)).success());
    let closed = queue::testing::free_port();
    assert_eq!(
        probe(format!("http://127.0.0.1:{closed}/ready")).code(),
        Some(1)
    );
    assert_eq!(
        probe(format!("{}/no-such-page", api.url)).code(),
        Some(1),
        "a 404 is not healthy"
    );

    let team = api.team().await;
    let admin = Some(team.admin.access.as_str());
    api.ok(
        admin,
        "mutation { createSensor(input: {key: \"t1\", name: \"T1\", unit: \"C\"}) { id } }",
        json!({}),
    )
    .await;
    let channel = api
        .ok(
            admin,
            "mutation($url: String!) { createChannel(input: {name: \"ops\", kind: WEBHOOK, url: $url, secret: \"s3cret\"}) { id } }",
            json!({ "url": receiver.url() }),
        )
        .await;
    api.ok(
        admin,
        "mutation($c: ID!) { createRule(input: {sensor: \"t1\", kind: ABOVE, threshold: 50, clearThreshold: 40, throttleSeconds: 3600, channelIds: [$c]}) { id } }",
        json!({ "c": channel["createChannel"]["id"] }),
    )
    .await;
    let subscriber = WsClient::connect(&api, Some(&team.viewer.access))
        .await
        .expect("subscribe");

    // The caller's trace: everything the submission causes must join it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    // A vendor's entries ride along with the trace, through every job.
    let trace_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let submitted: Value = api
        .http
        .post(format!("{}/graphql", api.url))
        .bearer_auth(&team.operator.access)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("tracestate", trace_state)
        .json(&json!({
            "query": SUBMIT,
            "variables": { "input": { "kind": "INGEST", "payload": readings("t1", 0, &[20.0, 75.0]) } },
        }))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    assert!(submitted["errors"].is_null(), "{submitted}");

    let steps = ["ingest", "evaluate", "alert", "notify"];
    let in_trace = eventually(
        Duration::from_secs(30),
        "a span of every step in the caller's trace",
        || async {
            let in_trace: Vec<SpanSeen> = spans
                .lock()
                .expect("spans")
                .iter()
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            let kinds: BTreeSet<&str> = in_trace
                .iter()
                .filter(|s| s.name == "job" && s.service == "steadfast-workers")
                .filter_map(|s| s.attributes.get("job.kind").map(String::as_str))
                .collect();
            // Each process exports on its own schedule: the API's span can arrive last.
            let api_span = in_trace
                .iter()
                .any(|s| s.service == "steadfast-api" && s.name == "request");
            if steps.iter().all(|k| kinds.contains(k))
                && api_span
                && !receiver.received().is_empty()
            {
                Ok(in_trace)
            } else {
                Err(format!("kinds so far: {kinds:?}"))
            }
        },
    )
    .await;
    assert!(
        in_trace
            .iter()
            .any(|s| s.service == "steadfast-api" && s.name == "request"),
        "the API's request span is in the trace: {in_trace:?}"
    );
    let traces: BTreeSet<String> = spans
        .lock()
        .expect("spans")
        .iter()
        .filter(|s| s.name == "job")
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(
        traces,
        BTreeSet::from([trace_id.to_owned()]),
        "every job span belongs to the one trace"
    );
    let states: BTreeSet<&str> = in_trace.iter().map(|s| s.trace_state.as_str()).collect();
    assert_eq!(
        states,
        BTreeSet::from([trace_state]),
        "every span of the trace carries the caller's tracestate"
    );
    let job_span = in_trace
        .iter()
        .find(|s| s.attributes.get("job.kind").is_some_and(|k| k == "ingest"))
        .expect("the ingest span");
    for field in ["job.id", "job.attempt", "job.queue", "worker.id"] {
        assert!(
            job_span.attributes.contains_key(field),
            "{field} in {job_span:?}"
        );
    }

    // JSON logs: each attempt's line carries the trace id and the job's fields.
    let logged = eventually(
        Duration::from_secs(10),
        "the ingest's JSON log line",
        || async {
            let log = std::fs::read_to_string(&worker_log).map_err(|e| e.to_string())?;
            log.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|line| {
                    line["fields"]["message"] == "attempt finished"
                        && line["spans"]
                            .as_array()
                            .is_some_and(|s| s.iter().any(|s| s["job.kind"] == "ingest"))
                })
                .ok_or_else(|| format!("{} lines so far", log.lines().count()))
        },
    )
    .await;
    let span = logged["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "job"))
        .expect("the job span in the log line");
    assert_eq!(span["trace_id"], trace_id, "{logged}");
    assert_eq!(span["job.attempt"], 1, "{logged}");
    assert!(span["job.id"].is_string(), "{logged}");
    assert_eq!(logged["fields"]["outcome"], "succeeded", "{logged}");

    // Metrics: the workers counted each step and sampled the queues; the API counts its
    // open subscription.
    let samples = eventually(Duration::from_secs(15), "the queue gauges", || async {
        let samples = scrape(&format!("{workers_url}/metrics")).await;
        match sample(
            &samples,
            "steadfast_jobs_succeeded_total",
            &[("kind", "notify")],
        ) {
            Some(n) if n >= 1.0 => Ok(samples),
            _ => Err("notify not counted yet".to_owned()),
        }
    })
    .await;
    for kind in steps {
        assert!(
            sample(
                &samples,
                "steadfast_jobs_succeeded_total",
                &[("kind", kind)]
            ) >= Some(1.0),
            "{kind} counted"
        );
        assert!(
            sample(
                &samples,
                "steadfast_job_duration_seconds_count",
                &[("kind", kind), ("outcome", "succeeded")]
            ) >= Some(1.0),
            "{kind}'s latency recorded"
        );
        assert!(
            sample(
                &samples,
                "steadfast_queue_depth",
                &[("queue", kind), ("state", "ready")]
            )
            .is_some(),
            "{kind}'s depth sampled"
        );
        assert!(
            sample(
                &samples,
                "steadfast_queue_oldest_ready_age_seconds",
                &[("queue", kind)]
            )
            .is_some(),
            "{kind}'s oldest ready age sampled"
        );
    }
    assert_eq!(
        sample(&samples, "steadfast_breakers", &[("state", "open")]),
        Some(0.0)
    );
    for gauge in [
        "steadfast_ledger_lag_events",
        "steadfast_ledger_pending_events",
    ] {
        assert!(
            sample(&samples, gauge, &[]).is_some_and(|n| n >= 0.0),
            "{gauge} sampled"
        );
    }
    let api_samples = scrape(&format!("{}/metrics", api.url)).await;
    assert_eq!(
        sample(&api_samples, "steadfast_subscriptions_active", &[]),
        None,
        "a connection without a subscription counts nothing"
    );
    let mut subscriber = subscriber;
    subscriber
        .subscribe(
            "live",
            "subscription { jobUpdates { cursor event } }",
            json!({}),
        )
        .await;
    subscriptions_counted(&api.url, 1.0).await;
    subscriber.close().await;
    subscriptions_counted(&api.url, 0.0).await;
}

/// Waits until the API's `steadfast_subscriptions_active` reads `n`.
async fn subscriptions_counted(api_url: &str, n: f64) {
    eventually(
        Duration::from_secs(10),
        "the subscription count",
        || async {
            let samples = scrape(&format!("{api_url}/metrics")).await;
            match sample(&samples, "steadfast_subscriptions_active", &[]) {
                Some(count) if count == n => Ok(()),
                other => Err(format!("{other:?}, waiting for {n}")),
            }
        },
    )
    .await;
}

/// The workers' log directory, removed however the test ends (a failed test included).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("steadfast-telemetry-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
